"""Forward consistency of a super-resolved volume with its thick-slice input, without ground truth.

A super-resolved volume x̂ explains the acquisition y when re-acquiring it with the same physics gives y back:
y ≈ S_s(k_T ⊛_a x̂) (docs/physics.md §1; the data-consistency term of model-based SR, e.g. Dewey et al. 2024,
Graf et al. 2024). :func:`forward_consistency` re-simulates the input from the SR volume with
:class:`~mrisr.degradations.thick_slice.ThickSlice` — slice profile of thickness T along the SR's through-plane axis
(its spacing there is the in-plane spacing Δ), same-FOV sampling with step S/Δ — places the result on the input grid
through world coordinates (the SR volume overlays the input; exact when the grids nest, cubic B-spline otherwise) and
compares it with the input: PSNR and mean 2-D SSIM over the input slices (the mrisr.eval.image metrics, intensity rule
of docs/evaluation.md §1 with the input as reference) and the relative residual ‖ŷ_k − y_k‖ / ‖y_k‖ of every slice k.

Consistency is necessary, not sufficient: any interpolating upsampler (cubic B-spline) reproduces its input exactly
under a point-sampling model (T → 0) and stays close under a thin profile, so a high score does not prove that detail
is right; a low score does show that the output contradicts the data (a shift, a wrong geometry, a wrong thickness,
hallucinated or lost structure at the slice scale).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from mrisr.core.errors import MrisrInputError
from mrisr.degradations.thick_slice import ThickSlice
from mrisr.eval.image import normalize_intensity, psnr, ssim
from mrisr.io.geometry import SliceGeometry, detect_slice_axis
from mrisr.io.nifti import Volume
from mrisr.io.regrid import GRID_ATOL, field_of_view_mask, resample_to_reference
from mrisr.physics.profiles import FWHMConvention, ProfileKind

__all__ = ["DEFAULT_PSNR_THRESHOLD_DB", "ConsistencyReport", "forward_consistency", "resimulate_input"]

log = logging.getLogger(__name__)

#: PSNR (dB, input-referenced, docs/evaluation.md §1 intensity rule) below which the output is flagged. Measured on
#: the four real thick scans of the shared data (experiments/benchmarks/results/forward_consistency.csv, slr profile,
#: T = S): a cubic B-spline SR scores 36.0–41.0 dB, the same output shifted by one input slice 16.7–20.6 dB,
#: re-acquired with twice the thickness 26.8–31.5 dB (flagged on three of four scans), shifted by one SR voxel
#: (0.5–0.9 mm) 30.3–35.1 dB (not flagged: a sub-slice shift is within what the data can tell). 30 dB leaves ≥ 6 dB
#: to every consistent output and ≥ 9 dB to every slice-level misplacement.
DEFAULT_PSNR_THRESHOLD_DB: float = 30.0


@dataclass(frozen=True)
class ConsistencyReport:
    """Forward consistency of an SR volume with its input.

    Attributes:
        psnr: PSNR of the re-simulated input against the input (dB; both divided by the input's 99.5th foreground
            percentile and clipped to [0, 1]).
        ssim: mean over input slices of the 2-D SSIM (σ = 1.5 voxels) in the slice plane; NaN when a slice is
            smaller than the 11-voxel window.
        slice_residual: relative residual ‖ŷ_k − y_k‖₂ / ‖y_k‖₂ of every input slice k (raw intensities), shape (N_LR,).
        max_slice_residual: largest entry of ``slice_residual``.
        median_slice_residual: median of ``slice_residual``.
        warn: ``psnr < psnr_threshold``.
        psnr_threshold: threshold used (dB).
        thickness_mm: slice thickness T used for the re-simulation (mm).
        separation_mm: slice separation S of the input (mm).
        profile: slice-profile kind.
        axis: through-plane voxel axis of the input.
        resampled: whether the re-simulation had to be interpolated onto the input grid (grids not nested).
        resimulated: the re-acquired input on the input grid (raw intensities) when asked for, else ``None``.
    """

    psnr: float
    ssim: float
    slice_residual: tuple[float, ...]
    max_slice_residual: float
    median_slice_residual: float
    warn: bool
    psnr_threshold: float
    thickness_mm: float
    separation_mm: float
    profile: str
    axis: int
    resampled: bool
    resimulated: np.ndarray | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (slice residuals as a list; the re-simulated input left out)."""
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "resimulated"}
        record["slice_residual"] = list(self.slice_residual)
        return record


def resimulate_input(
    sr: Volume,
    lr: Volume,
    geometry: SliceGeometry,
    thickness_mm: float,
    profile: ProfileKind = "slr",
    fwhm_convention: FWHMConvention = "variance",
    kernel_file: str | None = None,
) -> tuple[np.ndarray, bool]:
    """Re-acquire ``lr`` from ``sr``: ThickSlice along the input's slice axis, then onto the input grid.

    Args:
        sr: super-resolved volume, same voxel axes as the input, overlaying it in world coordinates.
        lr: the thick-slice input.
        geometry: slice geometry of ``lr`` (axis and separation S).
        thickness_mm: slice thickness T (mm).
        profile: slice-profile kind (``file`` with ``kernel_file``).
        fwhm_convention: ``variance`` or ``absolute`` (docs/physics.md §2.2).
        kernel_file: ``.npy`` kernel for ``profile="file"``.

    Returns:
        ``(ŷ on the input grid, float64 array of lr.shape; whether it was interpolated by world coordinates)``.

    Raises:
        MrisrInputError: the SR volume is coarser than S along the axis, or covers < 90 % of the input field of view.
    """
    axis = geometry.axis
    sr_spacing = float(np.linalg.norm(sr.affine[:3, axis]))
    if sr_spacing > geometry.separation_mm + 1e-6:
        raise MrisrInputError(
            sr.path,
            f"the SR spacing {sr_spacing:.4g} mm along axis {axis} is coarser than the input slice separation "
            f"{geometry.separation_mm:.4g} mm",
            "pass the super-resolved volume (finer along the slice axis) and its thick-slice input",
        )
    model = ThickSlice(
        thickness_mm=float(thickness_mm),
        separation_mm=geometry.separation_mm,
        axis=axis,
        profile=profile,
        fwhm_convention=fwhm_convention,
        kernel_file=kernel_file,
    )
    resim = model(Volume(data=sr.data.astype(np.float64), affine=sr.affine, header=None, path=sr.path))
    if resim.shape == lr.shape and np.allclose(resim.affine, lr.affine, rtol=0.0, atol=GRID_ATOL):
        return resim.data.astype(np.float64), False
    coverage = float(field_of_view_mask(resim, lr).mean())
    if coverage < 0.9:
        raise MrisrInputError(
            sr.path,
            f"the SR volume covers only {100 * coverage:.1f} % of the input field of view",
            "pass the SR output of this input (same subject, same space)",
        )
    return resample_to_reference(Volume(resim.data.astype(np.float64), resim.affine), lr, order=3), True


def forward_consistency(
    sr: Volume,
    lr: Volume,
    thickness_mm: float,
    geometry: SliceGeometry | None = None,
    profile: ProfileKind = "slr",
    fwhm_convention: FWHMConvention = "variance",
    kernel_file: str | None = None,
    psnr_threshold: float = DEFAULT_PSNR_THRESHOLD_DB,
    percentile: float = 99.5,
    keep_resimulated: bool = False,
) -> ConsistencyReport:
    """Compare the input with its re-acquisition from the SR volume (module docstring).

    Args:
        sr: super-resolved volume on a grid finer than S along the input's slice axis.
        lr: the thick-slice input (reference).
        thickness_mm: slice thickness T of the input (mm), e.g. from :func:`mrisr.io.sidecar.resolve_thickness`.
        geometry: slice geometry of ``lr``; default :func:`~mrisr.io.geometry.detect_slice_axis` (automatic axis).
        profile: slice-profile kind of the input.
        fwhm_convention: thickness → kernel FWHM convention.
        kernel_file: ``.npy`` kernel for ``profile="file"``.
        psnr_threshold: PSNR (dB) below which ``warn`` is set (:data:`DEFAULT_PSNR_THRESHOLD_DB`).
        percentile: input intensity percentile mapped to 1 for PSNR/SSIM.
        keep_resimulated: keep the re-acquired input (raw intensities, on the input grid) in the report.

    Returns:
        :class:`ConsistencyReport`.
    """
    geometry = detect_slice_axis(lr) if geometry is None else geometry
    resim, resampled = resimulate_input(sr, lr, geometry, thickness_mm, profile, fwhm_convention, kernel_file)
    y = lr.data.astype(np.float64)
    if not np.any(y > 0):
        # No positive foreground (e.g. an all-negative image): measure from the minimum, so the intensity rule of
        # docs/evaluation.md §1 has a foreground to work with (PSNR and SSIM are shift-invariant otherwise).
        floor = float(y.min())
        ref_n, resim_n = normalize_intensity(y - floor, resim - floor, percentile=percentile, clip=True)
    else:
        ref_n, resim_n = normalize_intensity(y, resim, percentile=percentile, clip=True)
    value_psnr = psnr(resim_n, ref_n)
    axis = geometry.axis
    plane_shape = tuple(n for i, n in enumerate(y.shape) if i != axis)
    if min(plane_shape) >= 11:
        value_ssim = float(
            np.mean([ssim(np.take(resim_n, k, axis=axis), np.take(ref_n, k, axis=axis)) for k in range(y.shape[axis])])
        )
    else:
        value_ssim = math.nan
    moved_y, moved_r = np.moveaxis(y, axis, 0), np.moveaxis(resim, axis, 0)
    norms = np.sqrt(np.sum(moved_y.reshape(moved_y.shape[0], -1) ** 2, axis=1))
    errors = np.sqrt(np.sum((moved_r - moved_y).reshape(moved_y.shape[0], -1) ** 2, axis=1))
    residual = np.where(norms > 0, errors / np.where(norms > 0, norms, 1.0), np.where(errors > 0, np.inf, 0.0))
    report = ConsistencyReport(
        psnr=float(value_psnr),
        ssim=value_ssim,
        slice_residual=tuple(float(r) for r in residual),
        max_slice_residual=float(np.max(residual)),
        median_slice_residual=float(np.median(residual)),
        warn=bool(value_psnr < psnr_threshold),
        psnr_threshold=float(psnr_threshold),
        thickness_mm=float(thickness_mm),
        separation_mm=float(geometry.separation_mm),
        profile=str(profile),
        axis=int(axis),
        resampled=resampled,
        resimulated=resim.astype(np.float32) if keep_resimulated else None,
    )
    if report.warn:
        log.warning(
            "%s: forward consistency PSNR %.2f dB < %.1f dB: the output contradicts its input (max slice residual "
            "%.3f); check the geometry, the slice thickness (%.3g mm) and the model",
            sr.path or "SR volume",
            report.psnr,
            psnr_threshold,
            report.max_slice_residual,
            thickness_mm,
        )
    return report
