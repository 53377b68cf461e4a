"""PRETTIER patch metrics: full-reference 2-D image quality of SR patches against HR (docs/evaluation.md §1).

Giraldo et al. (2024, Table 2) score 96 × 96 pseudo-RGB patches (3 contiguous slices as channels, rows along the
thick-slice axis) with piq: PSNR, SSIM, VIF-p, FSIM, VSI and HaarPSI (plus the learned DISTS, whose weights piq
downloads and which is therefore not offered here). :func:`patch_metrics` computes these per patch on
``(N, C, H, W)`` stacks in [0, 1]; :func:`volume_patches` cuts whole SR and HR volumes into such stacks, so the
same numbers can be computed on test volumes.

`piq <https://github.com/photosynthesis-team/piq>`_ 0.8 is an optional dependency (it imports torchvision) and is
imported lazily. Inputs are clipped to [0, 1] (piq asserts that range; data range 1). piq's PSNR adds 1e-8 to the
MSE, so identical patches score 80 dB instead of infinity — the same value as :func:`mrisr.eval.slicewise
.slicewise_metrics` with piq.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from mrisr.core.errors import MrisrInputError

__all__ = ["PATCH_METRICS", "PATCH_METRIC_MIN_SIZE", "check_metrics", "patch_metrics", "require_piq", "volume_patches"]

#: The offline PRETTIER Table 2 metrics, in the paper's order.
PATCH_METRICS: tuple[str, ...] = ("psnr", "ssim", "vif_p", "fsim", "vsi", "haarpsi")
#: Smallest patch side (pixels) each metric accepts with piq's default settings.
PATCH_METRIC_MIN_SIZE: dict[str, int] = {"psnr": 1, "ssim": 11, "vif_p": 41, "fsim": 16, "vsi": 16, "haarpsi": 16}


def require_piq() -> Any:
    """Import and return piq.

    Raises:
        MrisrInputError: piq (or torchvision, which it imports) is not installed.
    """
    if importlib.util.find_spec("piq") is None or importlib.util.find_spec("torchvision") is None:
        raise MrisrInputError(
            None,
            "patch metrics need piq and torchvision, which are not installed",
            "`pip install piq==0.8.0` or remove the patch_metrics callback",
        )
    import piq  # optional dependency

    return piq


def _functions(piq: Any, channels: int) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    # piq converts 3-channel input to luminance for VIF-p and HaarPSI and uses colour for FSIM and VSI, as the paper's
    # pseudo-RGB patches were scored; FSIM's chromatic term asserts on 1-channel input, so it is off there.
    return {
        "psnr": lambda x, y: piq.psnr(x, y, data_range=1.0, reduction="none"),
        "ssim": lambda x, y: piq.ssim(x, y, data_range=1.0, reduction="none"),
        "vif_p": lambda x, y: piq.vif_p(x, y, data_range=1.0, reduction="none"),
        "fsim": lambda x, y: piq.fsim(x, y, data_range=1.0, reduction="none", chromatic=channels == 3),
        "vsi": lambda x, y: piq.vsi(x, y, data_range=1.0, reduction="none"),
        "haarpsi": lambda x, y: piq.haarpsi(x, y, data_range=1.0, reduction="none"),
    }


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """Validated metric names (members of :data:`PATCH_METRICS`), in the given order.

    Raises:
        ValueError: for an unknown name.
    """
    unknown = sorted(set(metrics) - set(PATCH_METRICS))
    if unknown:
        raise ValueError(f"unknown patch metrics {unknown}; choose from {list(PATCH_METRICS)}")
    return tuple(metrics)


@torch.no_grad()
def patch_metrics(
    sr: torch.Tensor, hr: torch.Tensor, metrics: Sequence[str] = PATCH_METRICS, chunk: int = 64
) -> dict[str, torch.Tensor]:
    """Per-patch piq metrics of SR patches against HR patches.

    Args:
        sr: ``(N, C, H, W)`` SR patches (C = 1 or 3) on the normalised intensity scale; clipped to [0, 1].
        hr: ``(N, C, H, W)`` HR patches, same scale; clipped to [0, 1].
        metrics: names from :data:`PATCH_METRICS`.
        chunk: patches per piq call (bounds memory on whole-plane patches).

    Returns:
        Metric name → ``(N,)`` float32 values on the CPU (PSNR in dB, capped at 80 dB by piq's 1e-8 MSE floor; the
        others are similarities, 1 for identical patches).

    Raises:
        ValueError: shapes differ, are not 4-D with 1 or 3 channels, or are smaller than a metric needs.
        MrisrInputError: piq is not installed.
    """
    names = check_metrics(metrics)
    if sr.shape != hr.shape or sr.ndim != 4 or sr.shape[1] not in (1, 3):
        shapes = f"{tuple(sr.shape)} and {tuple(hr.shape)}"
        raise ValueError(f"SR and HR must both be (N, C, H, W) with C = 1 or 3, got {shapes}")
    side = min(sr.shape[-2:])
    small = [n for n in names if side < PATCH_METRIC_MIN_SIZE[n]]
    if small:
        need = max(PATCH_METRIC_MIN_SIZE[n] for n in small)
        raise ValueError(f"{tuple(sr.shape[-2:])} patches are smaller than the {need} pixels {small} need")
    piq = require_piq()
    x = sr.detach().float().clamp(0.0, 1.0)
    y = hr.detach().float().clamp(0.0, 1.0)
    functions = _functions(piq, x.shape[1])
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for start in range(0, x.shape[0], chunk):
        xs, ys = x[start : start + chunk], y[start : start + chunk]
        for name in names:
            out[name].append(functions[name](xs, ys).reshape(-1).float().cpu())
    return {name: torch.cat(values) if values else torch.zeros(0) for name, values in out.items()}


def volume_patches(
    x: np.ndarray,
    reference: np.ndarray,
    axis: int,
    in_channels: int = 3,
    patch_size: int | None = 96,
    min_foreground: float = 0.5,
    foreground_threshold: float = 0.1,
    stride: int = 1,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """PRETTIER-style items of two volumes on one grid, for :func:`patch_metrics`.

    For each in-plane axis ``b`` as slicing axis, ``in_channels`` contiguous planes (every ``stride``-th start) form
    one item with rows along the through-plane ``axis`` and columns along the remaining axis — the layout of the
    training patches (docs/models.md §2.4). Items are tiled into non-overlapping ``patch_size`` squares from index
    0 (``None``: whole planes); a tile is kept when at least ``min_foreground`` of the reference's centre plane
    exceeds ``foreground_threshold`` (mostly tissue, as the paper's evaluation patches).

    Args:
        x: ``(X, Y, Z)`` test volume, normalised intensities.
        reference: ``(X, Y, Z)`` reference (HR), same grid and normalisation.
        axis: through-plane (degraded) axis.
        in_channels: planes per item, 1 or 3.
        patch_size: tile side (voxels), or ``None`` for whole planes.
        min_foreground: minimum foreground fraction of a kept tile.
        foreground_threshold: normalised reference intensity above which a voxel is foreground.
        stride: step between the first planes of consecutive items.

    Returns:
        One ``(x_items, reference_items)`` pair of float32 ``(N, C, H, W)`` arrays per slicing axis that has
        items (two pairs at most; whole planes of the two directions differ in shape).

    Raises:
        ValueError: shapes differ or are not 3-D, or invalid options.
    """
    a = np.asarray(x, dtype=np.float32)
    r = np.asarray(reference, dtype=np.float32)
    if a.shape != r.shape or a.ndim != 3:
        raise ValueError(f"volumes must be 3-D and of one shape, got {a.shape} and {r.shape}")
    if axis not in (0, 1, 2) or in_channels not in (1, 3) or stride < 1:
        raise ValueError(f"need axis in 0..2, in_channels 1 or 3 and stride ≥ 1, got {axis}, {in_channels}, {stride}")
    if patch_size is not None and patch_size < 1:
        raise ValueError(f"patch_size must be ≥ 1 or None, got {patch_size}")
    groups = []
    for b in (d for d in range(3) if d != axis):
        c = 3 - axis - b
        pa, pr = np.transpose(a, (b, axis, c)), np.transpose(r, (b, axis, c))
        starts = np.arange(0, pa.shape[0] - in_channels + 1, stride)
        rows, cols = pa.shape[1:]
        ph, pw = (rows, cols) if patch_size is None else (patch_size, patch_size)
        if len(starts) == 0 or rows < ph or cols < pw:
            continue
        xs, rs = [], []
        for s in starts:
            block_a, block_r = pa[s : s + in_channels], pr[s : s + in_channels]
            centre = block_r[in_channels // 2]
            for i in range(0, rows - ph + 1, ph):
                for j in range(0, cols - pw + 1, pw):
                    if np.mean(centre[i : i + ph, j : j + pw] > foreground_threshold) >= min_foreground:
                        xs.append(block_a[:, i : i + ph, j : j + pw])
                        rs.append(block_r[:, i : i + ph, j : j + pw])
        if xs:
            groups.append((np.stack(xs), np.stack(rs)))
    return groups
