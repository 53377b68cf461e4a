"""Slice-wise 2-D image metrics with piq, with an explicit availability status (docs/evaluation.md §1).

Volumes are cut into 2-D slices along the degraded (through-plane) axis; slices whose mask fraction exceeds a
threshold are scored and the mean over slices is returned (then averaged over subjects downstream). Metrics come
from `piq <https://github.com/photosynthesis-team/piq>`_ 0.8 when it is installed (an optional dependency: it
imports torchvision, so it is imported lazily here). Without piq, ``psnr`` and ``ssim`` fall back to NumPy /
scikit-image (backend ``"skimage"``) and every other metric is reported with ``status="unavailable"`` and no
value — never NaN. Metrics whose constraints the slices do not meet (e.g. MS-SSIM needs H, W ≥ 161) are reported
as ``"not_applicable"``; weight-dependent metrics (DISTS, LPIPS) run only when their weights are already cached
(``TORCH_HOME``) and are ``"unavailable"`` otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["PIQ_METRICS", "piq_available", "slicewise_metrics"]

_LOG = logging.getLogger(__name__)

#: Supported piq metrics: name → (minimum H and W, needs downloadable weights).
PIQ_METRICS: dict[str, tuple[int, bool]] = {
    "psnr": (1, False),
    "ssim": (11, False),
    "ms_ssim": (161, False),
    "vif_p": (41, False),
    "fsim": (16, False),
    "vsi": (16, False),
    "haarpsi": (16, False),
    "gmsd": (16, False),
    "ms_gmsd": (32, False),
    "mdsi": (16, False),
    "srsim": (16, False),
    "dss": (16, False),
    "iw_ssim": (161, False),
    "dists": (32, True),
    "lpips": (32, True),
}


def piq_available() -> bool:
    """Whether piq (and torchvision, which it imports) can be imported."""
    return importlib.util.find_spec("piq") is not None and importlib.util.find_spec("torchvision") is not None


def _piq_function(name: str) -> Callable[[Any, Any], Any]:
    """The piq callable for ``name``, returning one value per slice (``reduction="none"``)."""
    import piq  # optional dependency, imported only here

    functions: dict[str, Callable[[Any, Any], Any]] = {
        "psnr": lambda x, y: piq.psnr(x, y, data_range=1.0, reduction="none"),
        "ssim": lambda x, y: piq.ssim(x, y, data_range=1.0, reduction="none"),
        "ms_ssim": lambda x, y: piq.multi_scale_ssim(x, y, data_range=1.0, reduction="none"),
        "vif_p": lambda x, y: piq.vif_p(x, y, data_range=1.0, reduction="none"),
        "fsim": lambda x, y: piq.fsim(x, y, data_range=1.0, reduction="none", chromatic=False),
        "vsi": lambda x, y: piq.vsi(x, y, data_range=1.0, reduction="none"),
        "haarpsi": lambda x, y: piq.haarpsi(x, y, data_range=1.0, reduction="none"),
        "gmsd": lambda x, y: piq.gmsd(x, y, data_range=1.0, reduction="none"),
        "ms_gmsd": lambda x, y: piq.multi_scale_gmsd(x, y, data_range=1.0, reduction="none"),
        "mdsi": lambda x, y: piq.mdsi(x, y, data_range=1.0, reduction="none"),
        "srsim": lambda x, y: piq.srsim(x, y, data_range=1.0, reduction="none"),
        "dss": lambda x, y: piq.dss(x, y, data_range=1.0, reduction="none"),
        "iw_ssim": lambda x, y: piq.information_weighted_ssim(x, y, data_range=1.0, reduction="none"),
        "dists": lambda x, y: piq.DISTS(reduction="none")(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)),
        "lpips": lambda x, y: piq.LPIPS(reduction="none")(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)),
    }
    return functions[name]


def _select_slices(shape: tuple[int, ...], axis: int, mask: np.ndarray | None, min_mask_fraction: float) -> np.ndarray:
    if mask is None:
        return np.arange(shape[axis])
    m = np.asarray(mask) > 0.5
    other = tuple(d for d in range(3) if d != axis)
    fraction = m.mean(axis=other)
    return np.flatnonzero(fraction > min_mask_fraction)


def _numpy_metric(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-slice PSNR (dB) or mean SSIM (Gaussian σ = 1.5, population covariances) of stacks ``(N, H, W)``."""
    if name == "psnr":
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2))
        return np.where(mse > 0, 10.0 * np.log10(1.0 / np.maximum(mse, 1e-300)), np.inf)
    from skimage.metrics import structural_similarity

    return np.array(
        [
            structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
            for x, y in zip(a.astype(np.float64), b.astype(np.float64), strict=True)
        ]
    )


def slicewise_metrics(
    x: np.ndarray,
    reference: np.ndarray,
    axis: int,
    metrics: Sequence[str] = ("psnr", "ssim"),
    mask: np.ndarray | None = None,
    min_mask_fraction: float = 0.1,
    backend: str = "auto",
) -> list[dict[str, Any]]:
    """Mean over slices of 2-D metrics between two volumes on one grid, intensities in [0, 1].

    Args:
        x: Test volume ``(X, Y, Z)`` already normalised to [0, 1] (values are clipped).
        reference: Reference volume, same shape and normalisation.
        axis: Slicing axis (the degraded orientation).
        metrics: Names from :data:`PIQ_METRICS`.
        mask: Optional foreground mask; only slices whose mask fraction exceeds ``min_mask_fraction`` count.
        min_mask_fraction: Slice selection threshold.
        backend: ``auto`` (piq when installed, else the NumPy/scikit-image fallback for PSNR/SSIM), ``piq`` or
            ``skimage``.

    Returns:
        One record per metric: ``metric``, ``value`` (float, or ``None`` when not computed), ``status``
        (``ok``, ``unavailable``, ``not_applicable``, ``no_slices``, ``failed``), ``backend``, ``n_slices`` and
        ``reason``.
    """
    a = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    b = np.clip(np.asarray(reference, dtype=np.float32), 0.0, 1.0)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"volumes must be 3-D and of one shape, got {a.shape} and {b.shape}")
    unknown = set(metrics) - set(PIQ_METRICS)
    if unknown:
        raise ValueError(f"unknown slice-wise metrics {sorted(unknown)}; choose from {sorted(PIQ_METRICS)}")
    if backend not in ("auto", "piq", "skimage"):
        raise ValueError(f"backend must be 'auto', 'piq' or 'skimage', got {backend!r}")
    use_piq = backend == "piq" or (backend == "auto" and piq_available())
    if backend == "piq" and not piq_available():
        use_piq = False
    slices = _select_slices(a.shape, axis, mask, min_mask_fraction)
    stack_a = np.moveaxis(a, axis, 0)[slices]
    stack_b = np.moveaxis(b, axis, 0)[slices]
    height, width = stack_a.shape[1:] if stack_a.ndim == 3 else (0, 0)
    out: list[dict[str, Any]] = []
    for name in metrics:
        record: dict[str, Any] = {"metric": name, "value": None, "n_slices": int(slices.size), "reason": ""}
        min_size, needs_weights = PIQ_METRICS[name]
        if slices.size == 0:
            out.append({**record, "status": "no_slices", "backend": "none", "reason": "no slice passes the mask"})
            continue
        if min(height, width) < min_size:
            reason = f"slices of {height}×{width} are smaller than the {min_size} pixels {name} needs"
            out.append({**record, "status": "not_applicable", "backend": "none", "reason": reason})
            continue
        if not use_piq:
            if name in ("psnr", "ssim") and backend != "piq":
                values = _numpy_metric(name, stack_a, stack_b)
                out.append({**record, "value": float(np.mean(values)), "status": "ok", "backend": "skimage"})
            else:
                reason = "piq (and torchvision) not installed: `pip install piq`"
                out.append({**record, "status": "unavailable", "backend": "piq", "reason": reason})
            continue
        try:
            import torch

            fn = _piq_function(name)
            ta = torch.from_numpy(np.ascontiguousarray(stack_a))[:, None]
            tb = torch.from_numpy(np.ascontiguousarray(stack_b))[:, None]
            with torch.no_grad():
                values = np.asarray(fn(ta, tb).detach().cpu().numpy(), dtype=np.float64).reshape(-1)
            value = float(np.mean(values))
            if not math.isfinite(value) and name != "psnr":
                raise ValueError(f"{name} returned {value}")
            out.append({**record, "value": value, "status": "ok", "backend": "piq"})
        except Exception as exc:  # weights missing (offline), piq assertion on inputs, ...
            status = "unavailable" if needs_weights else "failed"
            _LOG.warning("slice-wise %s: %s (%s)", name, status, exc)
            out.append({**record, "status": status, "backend": "piq", "reason": f"{type(exc).__name__}: {exc}"})
    return out
