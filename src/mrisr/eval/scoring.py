"""One scoring function for every SR result: image metrics on the HR grid and cord metrics, as tidy rows.

:func:`score_volume` is what the test-stage callbacks (:mod:`mrisr.callbacks.image_metrics`), the paper experiments
(``experiments/*/run.py``) and the benchmarks call to score one output volume against its HR reference; it returns
rows of the one tidy schema (:mod:`mrisr.io.rows`). Metric names are stable (tables read them):

* ``psnr``, ``ssim`` — whole volume on the HR grid; intensities divided by the HR ``percentile`` (99.5) inside the
  normalisation region (the HR foreground, voxels > 0, unless ``normalization_mask`` is given) and clipped to
  [0, 1] (docs/evaluation.md §1; :func:`mrisr.eval.image.image_metrics`);
* ``psnr_mask``, ``ssim_mask`` — inside a region of interest ``mask`` (e.g. a brain mask);
* ``psnr_fov``, ``ssim_fov`` — inside the field of view of the thick-slice input (``fov``);
* ``patch_<name>`` (and ``patch_slices``) — the mean of 2-D metrics over the HR slices along ``patch_axis`` whose
  ``mask`` fraction exceeds 10 % (:func:`mrisr.eval.slicewise.slicewise_metrics`; Giraldo et al. 2024 Table 2);
* ``fg_std_ratio`` — SD of the output over the HR foreground divided by the HR's SD there: near 0 for a
  (near-)constant output, the input of the degenerate-result guard (:mod:`mrisr.report.guard`);
* with a :class:`CordReference`: ``mucca_mm2`` (C2-referenced MUCCA of the segmenter's cord mask of the output,
  measured on the output's own grid: an area needs no regridding, and a nearest-neighbour copy onto an HR grid offset
  by half a voxel duplicates or drops a whole column of the cord, up to 7 mm² on the shared spines; Dewey et al.
  2024), ``mucca_abs_err_mm2`` (|MUCCA − MUCCA of the same segmenter on HR|) and ``cord_dice_manual`` (Dice against
  a manual mask, the output's mask put onto the HR grid by nearest neighbour). A failed segmentation gives MUCCA NaN
  and Dice 0 (a missed cord counts as an error, as a missed vertebra in Graf et al. 2024), with the reason as status.

:func:`reference_volumes` builds the reference rows of the paper tables, scored by the same function:

* ``floor_zero`` — an all-zero output, ``floor_mean`` — the mean intensity of the thick-slice input everywhere: what
  a model that learned nothing scores under the same mask and normalisation;
* ``ceiling_bandlimit`` — the HR volume band-limited to the LR sampling rate along the through-plane axis: an ideal
  (sinc) low-pass at the LR Nyquist frequency 1 / (2 S) cycles/mm (S: slice separation, mm), applied to the
  mirror-extended volume so that its ends do not wrap. It is what a reconstruction that recovers every frequency
  the LR samples can carry, perfectly and without aliasing, and nothing above them, would score (Shannon's sampling
  theorem): a model scoring above it has recovered through-plane detail beyond the LR Nyquist limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrisr.core.errors import MrisrInputError
from mrisr.eval.image import check_coverage, image_metrics, normalize_intensity
from mrisr.io.nifti import Volume
from mrisr.io.regrid import resample_to_reference, same_grid
from mrisr.io.rows import make_row

__all__ = [
    "BACKEND",
    "CordReference",
    "bandlimit",
    "cord_reference",
    "foreground_std_ratio",
    "mask_mucca",
    "reference_volumes",
    "score_volume",
    "segment_cord",
    "segmenter_backend",
]

BACKEND = "mrisr.eval.scoring"


@dataclass
class CordReference:
    """What the cord metrics of one subject compare against.

    Attributes:
        segmenter: cord segmenter (``segment(Volume) -> Volume``), applied to each output on its own grid.
        c2_mm: world position (mm, shape ``(3,)``) of the C2 landmark (MUCCA reference).
        hr_mucca_mm2: MUCCA of the same segmenter on the HR volume (``None``: no abs-error row).
        manual: manual cord mask on the HR grid (bool, HR shape; ``None``: no Dice row).
        window: MUCCA window preset (:data:`mrisr.eval.cord.WINDOW_PRESETS`).
    """

    segmenter: Any
    c2_mm: np.ndarray
    hr_mucca_mm2: float | None = None
    manual: np.ndarray | None = None
    window: str = "dewey2024_text"


def _mucca(mask: np.ndarray, affine: np.ndarray, reference: CordReference) -> tuple[float, str]:
    from mrisr.eval.cord import compute_mucca

    result = compute_mucca(mask, affine, c2_mm=reference.c2_mm, window=reference.window)
    return float(result.mucca_mm2), result.status if result.status == "ok" else f"{result.status}: {result.reason}"


def _mask_on_hr(mask: Volume, hr: Volume) -> np.ndarray:
    """A cord mask on the HR grid (nearest neighbour), as bool."""
    return (resample_to_reference(mask, hr, order=0) if not same_grid(mask, hr) else mask.data) > 0.5


def mask_mucca(mask: Volume, reference: CordReference) -> tuple[float, str]:
    """MUCCA (mm²) and status of a cord mask at the C2 landmark, measured on the mask's own grid.

    The one MUCCA rule of the scorers: an area needs no regridding, and a nearest-neighbour copy of a binary mask onto
    another grid changes it (module docstring).
    """
    return _mucca(np.asarray(mask.data > 0.5, dtype=np.float32), mask.affine, reference)


def cord_reference(
    hr: Volume, segmenter: Any, c2_mm: np.ndarray, manual: np.ndarray | None = None, window: str = "dewey2024_text"
) -> tuple[CordReference, dict[str, float]]:
    """The :class:`CordReference` of a subject and the HR's own values (``mucca_mm2``, ``cord_dice_manual``).

    Raises:
        MrisrInputError: the segmenter finds no cord in the HR volume.
    """
    from mrisr.eval.lesions import dice

    mask_hr = _mask_on_hr(segmenter.segment(hr), hr)
    reference = CordReference(segmenter, np.asarray(c2_mm, dtype=float), None, manual, window)
    mucca, _ = _mucca(mask_hr.astype(np.float32), hr.affine, reference)
    reference.hr_mucca_mm2 = mucca
    values = {"mucca_mm2": mucca}
    if manual is not None:
        values["cord_dice_manual"] = dice(mask_hr, manual)
    return reference, values


def foreground_std_ratio(sr: np.ndarray, hr: np.ndarray, foreground: np.ndarray) -> float:
    """SD of ``sr`` over ``foreground`` divided by the SD of ``hr`` there (same grid; NaN when HR is constant)."""
    hr_sd = float(np.std(hr[foreground], dtype=np.float64))
    if not foreground.any() or hr_sd == 0.0:
        return math.nan
    return float(np.std(sr[foreground], dtype=np.float64)) / hr_sd


def bandlimit(volume: Volume, axis: int, separation_mm: float) -> Volume:
    """``volume`` low-passed along ``axis`` at the Nyquist frequency of slices every ``separation_mm`` (module doc).

    The volume is extended by its mirror image along ``axis`` (length 2N, so the periodic FFT sees no jump at the
    ends), every frequency above 1 / (2 ``separation_mm``) cycles/mm is removed, and the first N samples are kept.

    Raises:
        ValueError: a separation not larger than the voxel spacing along ``axis`` (nothing would be removed).
    """
    spacing = float(volume.zooms[axis])
    if separation_mm <= spacing:
        raise ValueError(f"separation {separation_mm} mm is not coarser than the {spacing} mm spacing of axis {axis}")
    data = np.asarray(volume.data, dtype=np.float64)
    n = data.shape[axis]
    extended = np.concatenate([data, np.flip(data, axis=axis)], axis=axis)
    spectrum = np.fft.rfft(extended, axis=axis)
    keep = np.fft.rfftfreq(2 * n, d=spacing) <= 0.5 / float(separation_mm)
    shape = [1] * data.ndim
    shape[axis] = keep.size
    spectrum *= keep.reshape(shape)
    low = np.fft.irfft(spectrum, n=2 * n, axis=axis)
    low = np.take(low, np.arange(n), axis=axis)
    return Volume(data=low.astype(np.float32), affine=volume.affine)


def reference_volumes(hr: Volume, lr: Volume, axis: int) -> dict[str, Volume]:
    """``floor_zero``, ``floor_mean`` and ``ceiling_bandlimit`` on the HR grid (module docstring).

    Args:
        hr: HR reference.
        lr: the thick-slice input (on its own grid); its mean intensity is the ``floor_mean`` constant and its
            spacing along ``axis`` the separation of the band limit.
        axis: through-plane voxel axis (the same index in HR and LR).
    """
    mean = float(np.mean(lr.data, dtype=np.float64))
    return {
        "floor_zero": Volume(data=np.zeros(hr.shape, np.float32), affine=hr.affine),
        "floor_mean": Volume(data=np.full(hr.shape, mean, np.float32), affine=hr.affine),
        "ceiling_bandlimit": bandlimit(hr, axis, float(lr.zooms[axis])),
    }


def _on_hr_grid(sr: Volume, hr: Volume, min_coverage: float = 0.9) -> Volume:
    if same_grid(sr, hr):
        return sr
    check_coverage(sr, hr, min_coverage)
    return Volume(data=resample_to_reference(sr, hr, order=3).astype(np.float32), affine=hr.affine)


def segment_cord(segmenter: Any, volume: Volume) -> tuple[Volume | None, str]:
    """``(cord mask, "ok")``, or ``(None, "segmentation failed: <reason>")`` when the segmenter finds no cord.

    The one rule for a failed segmentation: the scorers record it as a status (and count the cord as missed, Dice 0)
    instead of stopping.
    """
    try:
        return segmenter.segment(volume), "ok"
    except (MrisrInputError, ValueError) as err:
        return None, f"segmentation failed: {err}"


def segmenter_backend(segmenter: Any) -> str:
    """The ``backend`` of rows measured on a segmenter's masks (``mrisr.eval.cord/<name>``)."""
    return f"mrisr.eval.cord/{getattr(segmenter, 'name', type(segmenter).__name__)}"


def _cord_rows(sr: Volume, hr: Volume, cord: CordReference) -> list[tuple[str, float, str, str]]:
    from mrisr.eval.lesions import dice

    backend = segmenter_backend(cord.segmenter)
    mask, status = segment_cord(cord.segmenter, sr)
    if mask is None:
        out = [("mucca_mm2", math.nan, status, backend)]
        if cord.hr_mucca_mm2 is not None:
            out.append(("mucca_abs_err_mm2", math.nan, status, backend))
        if cord.manual is not None:
            out.append(("cord_dice_manual", 0.0, status, backend))
        return out
    mucca, status = mask_mucca(mask, cord)
    out = [("mucca_mm2", mucca, status, backend)]
    if cord.hr_mucca_mm2 is not None:
        out.append(("mucca_abs_err_mm2", abs(mucca - cord.hr_mucca_mm2), status, backend))
    if cord.manual is not None:
        out.append(("cord_dice_manual", dice(_mask_on_hr(mask, hr), cord.manual), "ok", backend))
    return out


def score_volume(
    sr: Volume,
    hr: Volume,
    subject: str,
    setting: str,
    method: str,
    mask: Volume | None = None,
    fov: Volume | None = None,
    normalization_mask: Volume | None = None,
    percentile: float = 99.5,
    patch_axis: int | None = None,
    patch_metrics: Sequence[str] = (),
    cord: CordReference | None = None,
    seconds: float | None = None,
    steps: int | None = None,
) -> list[dict[str, Any]]:
    """Score one output volume against its HR reference; tidy rows (module docstring).

    Args:
        sr: the output (any grid covering ≥ 90 % of HR; cubic B-spline onto the HR grid when it differs).
        hr: the HR reference; its grid is the evaluation grid.
        subject, setting, method: the result's key.
        mask: region of interest of ``psnr_mask`` / ``ssim_mask`` (and of the patch metrics' slice selection).
        fov: field of view of the thick-slice input on the HR grid (``psnr_fov`` / ``ssim_fov``).
        normalization_mask: region of the HR percentile (default: the HR foreground, voxels > 0).
        percentile: HR intensity percentile mapped to 1.
        patch_axis: slicing axis of the patch metrics (the degraded axis); ``None``: no patch metrics.
        patch_metrics: names of :data:`mrisr.eval.slicewise.PIQ_METRICS` (``psnr``, ``ssim``, ``vif_p``…).
        cord: cord references of the subject (``None``: no cord metrics).
        seconds: wall time (s) of producing ``sr``; ``steps``: optimiser steps of its model.

    Returns:
        Rows of :data:`mrisr.io.rows.ROW_FIELDS`.

    Raises:
        MrisrInputError: ``sr`` covers too little of the HR field of view, or an empty mask.
    """
    sr_hr = _on_hr_grid(sr, hr)
    metrics = image_metrics(sr_hr, hr, mask=mask, percentile=percentile, normalization_mask=normalization_mask)
    values: dict[str, float] = {"psnr": float(metrics["psnr"]), "ssim": float(metrics["ssim"])}
    if mask is not None:
        values.update(psnr_mask=float(metrics["psnr_mask"]), ssim_mask=float(metrics["ssim_mask"]))
    if fov is not None:
        in_fov = image_metrics(sr_hr, hr, mask=fov, percentile=percentile, normalization_mask=normalization_mask)
        values.update(psnr_fov=float(in_fov["psnr_mask"]), ssim_fov=float(in_fov["ssim_mask"]))
    foreground = (normalization_mask.data > 0.5) if normalization_mask is not None else (hr.data > 0)
    values["fg_std_ratio"] = foreground_std_ratio(sr_hr.data, hr.data, foreground)
    rows = [make_row(subject, setting, method, k, v, "ok", BACKEND, seconds, steps) for k, v in values.items()]
    if patch_axis is not None and patch_metrics:
        from mrisr.eval.slicewise import slicewise_metrics

        norm = normalization_mask.data > 0.5 if normalization_mask is not None else None
        hr_n, sr_n = normalize_intensity(hr.data, sr_hr.data, mask=norm, percentile=percentile)
        roi = mask.data > 0.5 if mask is not None else None
        records = slicewise_metrics(sr_n, hr_n, patch_axis, list(patch_metrics), mask=roi, backend="piq")
        for record in records:
            ok = record["status"] == "ok"
            rows.append(make_row(subject, setting, method, f"patch_{record['metric']}", record["value"] if ok else None,
                                 "ok" if ok else str(record["status"]), "piq", seconds, steps))  # fmt: skip
        rows.append(make_row(subject, setting, method, "patch_slices", records[0]["n_slices"], "ok", "piq",
                             seconds, steps))  # fmt: skip
    if cord is not None:
        cord_rows = _cord_rows(sr, hr, cord)
        rows += [make_row(subject, setting, method, k, v, s, b, seconds, steps) for k, v, s, b in cord_rows]
    return rows
