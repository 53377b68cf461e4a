"""PRETTIER evaluation (Giraldo et al. 2024, Tables 2–3): brain-mask rules, masked volume and slice-wise metrics.

docs/evaluation.md §1. Table 3 scores whole volumes by PSNR / SSIM inside a brain mask (HD-BET in the paper; here a
documented rule, :func:`brain_mask`, since no skull-stripping tool is available offline); Table 2 scores 2-D
patches with piq, here every HR slice along the degraded axis whose mask fraction exceeds 10 %
(:func:`~mrisr.eval.slicewise.slicewise_metrics`). DISTS needs weights that are not available offline and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from mrisr.core.errors import MrisrInputError
from mrisr.eval.image import normalize_intensity, psnr, ssim
from mrisr.eval.slicewise import slicewise_metrics
from mrisr.io.intensity import foreground_percentile
from mrisr.io.nifti import Volume

__all__ = [
    "MASK_RULES",
    "PATCH_METRICS",
    "HeldOutCase",
    "brain_mask",
    "held_out_case",
    "masked_scores",
    "prettier_scores",
    "score_held_out",
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


@dataclass
class HeldOutCase:
    """A held-out HR volume, its simulated thick-slice LR and its mask (one point of a learning curve).

    Attributes:
        name: volume name (e.g. ``flair``).
        hr: HR volume cropped (from index 0) to a multiple of the factor along ``axis``.
        lr: the simulated acquisition of ``hr`` on its own grid.
        mask: boolean ``hr``-shaped scoring mask (:func:`brain_mask`).
        axis: through-plane axis.
        mask_rule: the rule of ``mask``.
    """

    name: str
    hr: Volume
    lr: Volume
    mask: np.ndarray
    axis: int
    mask_rule: str


def held_out_case(name: str, hr: Volume, degradation: Any, mask_rule: str, seed: int = 0) -> HeldOutCase:
    """Crop ``hr`` to a multiple of the factor along ``degradation.axis``, simulate its LR, build the mask.

    Args:
        name: volume name.
        hr: HR volume whose spacing along the axis divides the degradation's separation (e.g. 1 mm for 6 mm).
        degradation: a fixed thick-slice acquisition (:class:`~mrisr.degradations.stack.DegradationStack` with a
            ``separation`` and an ``axis``), e.g. the ``prettier`` preset.
        mask_rule: :func:`brain_mask` rule.
        seed: seed of the degradation (only noise steps use it).

    Raises:
        MrisrInputError: the separation is not an integer multiple of the HR spacing.
    """
    from mrisr.data.pairs import crop_volume

    axis = int(degradation.axis)
    ratio = float(degradation.separation) / float(hr.zooms[axis])
    factor = round(ratio)
    if factor < 1 or abs(ratio - factor) > 1e-3:
        raise MrisrInputError(
            hr.path, f"separation / spacing = {ratio:.4g} is not an integer", "resample the HR volume first"
        )
    hr = crop_volume(hr, axis, 0, (hr.shape[axis] // factor) * factor)
    return HeldOutCase(name, hr, degradation(hr, seed=seed), brain_mask(hr.data, mask_rule), axis, mask_rule)


def masked_scores(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """``psnr_mask`` (dB) and ``ssim_mask`` of :func:`prettier_scores` alone (no slice-wise metrics; faster)."""
    hr_n, sr_n = normalize_intensity(hr, sr, mask=mask)
    return {"psnr_mask": psnr(sr_n, hr_n, mask), "ssim_mask": ssim(sr_n, hr_n, mask)}


def score_held_out(model: Any, case: HeldOutCase) -> dict[str, float]:
    """Super-resolve ``case.lr`` with ``model`` (any model of :func:`mrisr.api.super_resolve`) and score it on
    ``case.hr``'s grid (:func:`masked_scores`; the output is resampled by cubic B-spline only if its grid differs)."""
    from mrisr.api import super_resolve
    from mrisr.io.regrid import on_grid

    image = super_resolve(case.lr.to_nifti(), model=model, axis=case.axis)
    sr = Volume(data=np.asarray(image.dataobj, dtype=np.float32), affine=image.affine)
    return masked_scores(on_grid(sr, case.hr, order=3), case.hr.data, case.mask)
