"""PRETTIER evaluation (Giraldo et al. 2024, Tables 2–3): brain-mask rules, masked volume and slice-wise metrics.

docs/evaluation.md §1. Table 3 scores whole volumes by PSNR / SSIM inside a brain mask (HD-BET in the paper; here a
documented rule, :func:`brain_mask`, since no skull-stripping tool is available offline); Table 2 scores 2-D
patches with piq, here every HR slice along the degraded axis whose mask fraction exceeds 10 %
(:func:`~mrisr.eval.slicewise.slicewise_metrics`). DISTS needs weights that are not available offline and is left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from mrisr.core.errors import MrisrInputError
from mrisr.eval.image import normalize_intensity, psnr, ssim
from mrisr.eval.slicewise import slicewise_metrics
from mrisr.io.intensity import foreground_percentile

__all__ = [
    "MASK_RULES",
    "PATCH_METRICS",
    "brain_mask",
    "masked_scores",
    "prettier_scores",
]

#: The piq patch metrics of PRETTIER Table 2 that run offline (DISTS needs downloaded weights).
PATCH_METRICS = ("psnr", "ssim", "vif_p", "fsim", "vsi", "haarpsi")

#: Brain-mask rules of :func:`brain_mask`.
MASK_RULES = ("nonzero", "head")


def brain_mask(data: np.ndarray, rule: str, fraction: float = 0.1) -> np.ndarray:
    """Boolean mask of ``data`` ``(X, Y, Z)`` by a documented rule (no skull-stripping tool).

    Args:
        data: intensities.
        rule: ``nonzero`` (skull-stripped input: voxels > 0) or ``head`` (voxels above ``fraction`` × the
            foreground P99.5, largest 6-connected component, holes filled in 3-D and in every slice along axis 2).
            A ``head`` mask includes scalp and skull: scores inside it are head-mask scores, not brain scores.
        fraction: threshold of the ``head`` rule as a fraction of the foreground P99.5.

    Raises:
        ValueError: unknown rule.
        MrisrInputError: nothing above the threshold, or an empty mask.
    """
    if rule == "nonzero":
        mask = data > 0
    elif rule == "head":
        above = data > fraction * foreground_percentile(data, 99.5)
        labels, n = ndimage.label(above)
        if n == 0:
            raise MrisrInputError(None, "no voxel above the head-mask threshold", "check the image intensities")
        sizes = np.bincount(labels.ravel())[1:]
        mask = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
        for z in range(mask.shape[2]):
            mask[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z])
    else:
        raise ValueError(f"mask rule must be one of {MASK_RULES}, got {rule!r}")
    if not mask.any():
        raise MrisrInputError(None, f"the {rule!r} mask is empty", "check the image intensities")
    return mask


def prettier_scores(
    sr: np.ndarray, hr: np.ndarray, mask: np.ndarray, axis: int, patch_metrics: tuple[str, ...] = PATCH_METRICS
) -> dict[str, Any]:
    """Masked volume PSNR / SSIM and slice-wise piq metrics of ``sr`` against ``hr`` (same grid, raw intensities).

    Both are divided by the HR P99.5 inside ``mask`` and clipped to [0, 1] (docs/evaluation.md §1). The patch metrics
    are means over the HR slices along ``axis`` (the degraded axis) whose mask fraction exceeds 10 %.

    Returns:
        ``psnr_mask`` (dB), ``ssim_mask``, ``patch_<metric>`` (None when a metric is not available) and
        ``patch_slices`` (the number of slices scored).
    """
    hr_n, sr_n = normalize_intensity(hr, sr, mask=mask)
    out: dict[str, Any] = {"psnr_mask": psnr(sr_n, hr_n, mask), "ssim_mask": ssim(sr_n, hr_n, mask)}
    records = slicewise_metrics(sr_n, hr_n, axis, patch_metrics, mask=mask, backend="piq")
    for record in records:
        out[f"patch_{record['metric']}"] = record["value"] if record["status"] == "ok" else None
    out["patch_slices"] = records[0]["n_slices"]
    return out


def masked_scores(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """``psnr_mask`` (dB) and ``ssim_mask`` of :func:`prettier_scores` alone (no slice-wise metrics; faster)."""
    hr_n, sr_n = normalize_intensity(hr, sr, mask=mask)
    return {"psnr_mask": psnr(sr_n, hr_n, mask), "ssim_mask": ssim(sr_n, hr_n, mask)}
