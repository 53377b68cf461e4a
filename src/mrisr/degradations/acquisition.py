"""Thick-slice acquisition steps: slice profile (PSF), interslice gap, same-FOV down- and upsampling.

Physics.md §1–3 and §6 rows 3–5 (Graf et al. 2024; SMORE/ECLARE; Dewey et al. 2024). The blur kernel comes from
:func:`mrisr.physics.slice_kernel` with the FWHM of :func:`mrisr.physics.kernel_fwhm_voxels`, the sampling from
:mod:`mrisr.physics.resample` (same-FOV positions, cubic B-spline, border clamping) and the return to the HR grid
from :func:`mrisr.physics.upsample_to_grid`; the affine of the LR grid from :func:`mrisr.physics.resample_affine`.
A preset lists them in acquisition order, e.g. ``SliceProfile → SliceGap → Downsample → Noise → Upsample``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from mrisr.degradations.base import (
    AcquisitionGeometry,
    IntensityDegradation,
    PlannedStep,
    RandomIntensityDegradation,
    SpatialDegradation,
    _check_range,
    draw_int,
    draw_uniform,
)
from mrisr.degradations.functional import cached_slice_kernel, gap_kernel, slice_gap
from mrisr.physics.forward import blur_axis, upsample_to_grid
from mrisr.physics.profiles import Discretization, FWHMConvention, ProfileKind, discrete_fwhm, kernel_fwhm_voxels
from mrisr.physics.resample import apply_matrix, interpolation_matrix, output_length, resample_affine
from mrisr.physics.resample import same_fov_positions as _positions

__all__ = [
    "Downsample",
    "RandomSliceGap",
    "RandomSliceProfile",
    "SliceGap",
    "SliceProfile",
    "Upsample",
    "thickness_grid",
]

Support = Literal["default", "parity"] | int


def thickness_grid(low_mm: float, high_mm: float, step_mm: float) -> list[float]:
    """Thicknesses ``low, low + step, …, high`` (inclusive, rounded to 1e-6 mm), e.g. 4.00 … 9.00 in 0.25 mm steps.

    Args:
        low_mm: smallest thickness (mm, > 0).
        high_mm: largest thickness (mm, ≥ low).
        step_mm: increment (mm, > 0).

    Returns:
        List of thicknesses in mm (21 values for 4.0–9.0 / 0.25).
    """
    if not (low_mm > 0 and high_mm >= low_mm and step_mm > 0):
        raise ValueError(f"need 0 < low <= high and step > 0, got {low_mm}, {high_mm}, {step_mm}")
    count = math.floor((high_mm - low_mm) / step_mm + 1e-9) + 1
    return [round(low_mm + i * step_mm, 6) for i in range(count)]


# --------------------------------------------------------------------------------------------------
# Slice profile (PSF)
# --------------------------------------------------------------------------------------------------


class SliceProfile(IntensityDegradation):
    """Through-plane blur with the slice profile of thickness T: ``k_f ⊛_a x`` (docs/physics.md §1–2, §6 row 3).

    The kernel FWHM in HR voxels is f = √(T² − Δ²)/Δ (``variance``, default) or T/Δ (``absolute``), Δ the HR spacing
    along the through-plane axis; T ≤ Δ under ``variance`` gives the identity. Half-sample symmetric boundaries.
    The step also fixes the slice separation S used by a following :class:`Downsample` (default S = T: no gap).

    Args:
        thickness_mm: slice thickness T = FWHM of the slice profile (mm).
        separation_mm: slice separation S (mm); None = T.
        profile: ``slr`` (Shinnar–Le Roux 90° pulse, default), ``gaussian``, ``rect`` or ``file``.
        fwhm_convention: ``variance`` or ``absolute`` (docs/physics.md §2.2).
        discretization: ``point`` / ``area`` / None (the profile's default).
        support: kernel length rule: ``default``, ``parity`` (2·round(f) + 1, radifox / Graf et al.) or an odd int.
        slr_tb: SLR time-bandwidth product.
        kernel_file: 1-D ``.npy`` kernel for ``profile="file"``.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    requires_grid = "hr"

    def __init__(
        self,
        thickness_mm: float,
        separation_mm: float | None = None,
        profile: ProfileKind = "slr",
        fwhm_convention: FWHMConvention = "variance",
        discretization: Discretization | None = None,
        support: Support = "default",
        slr_tb: float = 16.0,
        kernel_file: str | None = None,
        axis: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__(axis=axis, train_only=train_only)
        if not (math.isfinite(thickness_mm) and thickness_mm > 0):
            raise ValueError(f"thickness_mm must be finite and > 0, got {thickness_mm!r}")
        if separation_mm is not None and not (math.isfinite(separation_mm) and separation_mm > 0):
            raise ValueError(f"separation_mm must be finite and > 0, got {separation_mm!r}")
        if profile == "file" and kernel_file is None:
            raise ValueError("profile 'file' needs kernel_file='path/to/kernel.npy'")
        self.thickness_mm = float(thickness_mm)
        self.separation_mm = None if separation_mm is None else float(separation_mm)
        self.profile = profile
        self.fwhm_convention = fwhm_convention
        self.discretization = discretization
        self.support = support
        self.slr_tb = float(slr_tb)
        self.kernel_file = kernel_file
        self.args_names = [
            "thickness_mm",
            "separation_mm",
            "profile",
            "fwhm_convention",
            "discretization",
            "support",
            "slr_tb",
            "kernel_file",
            "axis",
            "train_only",
        ]

    def kernel(self, spacing_mm: float) -> np.ndarray:
        """The discrete blur kernel for HR spacing ``spacing_mm`` (float64, odd length, unit sum)."""
        return self._kernel(self._fwhm(spacing_mm))

    def _fwhm(self, spacing_mm: float) -> float:
        if self.profile == "file":
            return float(discrete_fwhm(cached_slice_kernel(0.0, "file", None, "default", 16.0, self.kernel_file)))
        return kernel_fwhm_voxels(self.thickness_mm, spacing_mm, self.fwhm_convention)

    def _kernel(self, fwhm: float) -> np.ndarray:
        support = self.support if isinstance(self.support, str) else int(self.support)
        return cached_slice_kernel(
            float(fwhm), self.profile, self.discretization, support, self.slr_tb, self.kernel_file
        )

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        fwhm = self._fwhm(geometry.spacing_mm)
        separation = self.thickness_mm if self.separation_mm is None else self.separation_mm
        geometry.thickness_mm = self.thickness_mm
        geometry.separation_mm = separation
        return {
            "thickness_mm": self.thickness_mm,
            "separation_mm": separation,
            "gap_mm": round(separation - self.thickness_mm, 9),
            "profile": self.profile,
            "fwhm_voxels": fwhm,
            "taps": int(self._kernel(fwhm).size),
        }

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        return blur_axis(x, self._kernel(params["fwhm_voxels"]), axis + 2)


class RandomSliceProfile(RandomIntensityDegradation):
    """Multi-PSF: a slice thickness drawn per sample from a discrete set (docs/physics.md §6 row 3; Table 2 rows 4–8).

    T is drawn uniformly from ``thicknesses_mm`` or from the grid ``thickness_range_mm`` in ``thickness_step_mm``
    steps (default 4.00 … 9.00 mm in 0.25 mm: 21 kernels; Graf et al.'s code uses 4.00 … 8.75). The separation is
    S = T + G with the gap G ~ U(``gap_range_mm``) (default 0: S = T as in Graf et al.), and the profile kind is
    drawn from ``profiles``. With ``prob`` < 1 a skipped sample has no blur but still samples at the drawn S.

    Args:
        thicknesses_mm: explicit list of thicknesses (mm); overrides the range.
        thickness_range_mm: (min, max) thickness (mm), both included.
        thickness_step_mm: grid step (mm).
        gap_range_mm: (min, max) gap G = S − T (mm); negative = overlap.
        profiles: profile kinds to draw from.
        fwhm_convention: see :class:`SliceProfile`.
        discretization: see :class:`SliceProfile`.
        support: see :class:`SliceProfile`.
        slr_tb: see :class:`SliceProfile`.
        prob: probability of blurring.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    op_class = SliceProfile

    def __init__(
        self,
        thicknesses_mm: Sequence[float] | None = None,
        thickness_range_mm: Sequence[float] = (4.0, 9.0),
        thickness_step_mm: float = 0.25,
        gap_range_mm: Sequence[float] = (0.0, 0.0),
        profiles: Sequence[ProfileKind] = ("slr",),
        fwhm_convention: FWHMConvention = "variance",
        discretization: Discretization | None = None,
        support: Support = "default",
        slr_tb: float = 16.0,
        prob: float = 1.0,
        axis: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__(prob=prob, axis=axis, train_only=train_only)
        if thicknesses_mm is not None:
            self.thicknesses_mm = [float(t) for t in thicknesses_mm]
        else:
            low, high = _check_range("thickness_range_mm", thickness_range_mm, 0.0)
            self.thicknesses_mm = thickness_grid(low, high, float(thickness_step_mm))
        if not self.thicknesses_mm or min(self.thicknesses_mm) <= 0:
            raise ValueError(f"thicknesses must be a non-empty list of positive values, got {self.thicknesses_mm}")
        self.thickness_range_mm = tuple(thickness_range_mm)
        self.thickness_step_mm = float(thickness_step_mm)
        self.gap_range_mm = _check_range("gap_range_mm", gap_range_mm)
        self.profiles = list(profiles)
        if not self.profiles or "file" in self.profiles:
            raise ValueError(f"profiles must list kinds among 'slr', 'gaussian', 'rect', got {self.profiles}")
        self.fwhm_convention = fwhm_convention
        self.discretization = discretization
        self.support = support
        self.slr_tb = float(slr_tb)
        self.args_names = [
            "thicknesses_mm",
            "gap_range_mm",
            "profiles",
            "fwhm_convention",
            "discretization",
            "support",
            "slr_tb",
            "prob",
            "axis",
            "train_only",
        ]

    def randomize(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> dict[str, Any]:
        thickness = self.thicknesses_mm[draw_int(generator, 0, len(self.thicknesses_mm) - 1)]
        low, high = self.gap_range_mm
        gap = draw_uniform(generator, low, high) if high > low else low
        profile = self.profiles[draw_int(generator, 0, len(self.profiles) - 1)] if len(self.profiles) > 1 else None
        separation = thickness + gap
        if separation <= 0:
            raise ValueError(f"thickness {thickness} mm with gap {gap} mm gives a non-positive separation")
        return {
            "thickness_mm": thickness,
            "separation_mm": separation,
            "profile": profile or self.profiles[0],
            "fwhm_convention": self.fwhm_convention,
            "discretization": self.discretization,
            "support": self.support,
            "slr_tb": self.slr_tb,
        }

    def skip(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> PlannedStep:
        sampled = self.randomize(generator, geometry)
        geometry.separation_mm = sampled["separation_mm"]
        geometry.thickness_mm = None
        return PlannedStep(name=self.name, op=None, branch=self.branch, applied=False, sampled=sampled)


# --------------------------------------------------------------------------------------------------
# Interslice gap
# --------------------------------------------------------------------------------------------------


class SliceGap(IntensityDegradation):
    """Interslice gap ("stop-gap"): each LR slice reads the weighted mean of g rows centred on it (§6 row 4).

    Applied on the PSF-blurred HR grid before :class:`Downsample`: row i becomes Σ_k w_k·x(i + o_k) with
    o_k = k − (g − 1)/2 (half rows by linear interpolation), so the LR slice at c_j is the weighted mean of the g
    rows centred on c_j. Unlike Graf et al.'s code the window is centred on the slice (no LR/HR shift); symmetric
    weights keep every slice's centroid exactly at c_j. Flat fields are preserved (unit-sum weights, reflect
    boundaries).

    Args:
        weights: g ≥ 1 non-negative weights (normalised to unit sum); ``[1]`` is the identity.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    requires_grid = "hr"

    def __init__(self, weights: Sequence[float], axis: int | None = None, train_only: bool = False) -> None:
        super().__init__(axis=axis, train_only=train_only)
        self.weights = [float(w) for w in weights]
        gap_kernel(self.weights)  # validates
        self.args_names = ["weights", "axis", "train_only"]

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        total = sum(self.weights)
        return {"rows": len(self.weights), "weights": [w / total for w in self.weights]}

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        return slice_gap(x, params["weights"], axis)


class RandomSliceGap(RandomIntensityDegradation):
    """Interslice-gap randomisation (docs/physics.md §6 row 4; Table 2 rows 5–8).

    Number of rows g = ⌊u·``row_fraction``·s + ``base_fraction``·s⌋ + 1 with u ~ U(0, 1) and s = S/Δ the
    separation in HR rows (Graf et al.: 1–3 rows at 4 mm, 2–7 at 8.75 mm for Δ = 0.8571 mm); weights
    ~ U(``weight_range``), normalised. ``symmetric`` (default) mirrors ⌈g/2⌉ draws so the window is centred exactly;
    ``symmetric=False`` draws g independent weights (Graf et al.), which moves each slice's centroid randomly (zero
    mean).

    Args:
        row_fraction: random part of g as a fraction of s (Graf: 0.5).
        base_fraction: fixed part of g as a fraction of s (Graf: 0.1).
        weight_range: (min, max) of the raw weights (Graf: 0.1–1).
        symmetric: centred (mirrored) weights.
        separation_mm: separation S when no slice-profile step precedes (None = the preceding step's S).
        prob: probability of applying the gap.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    op_class = SliceGap

    def __init__(
        self,
        row_fraction: float = 0.5,
        base_fraction: float = 0.1,
        weight_range: Sequence[float] = (0.1, 1.0),
        symmetric: bool = True,
        separation_mm: float | None = None,
        prob: float = 1.0,
        axis: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__(prob=prob, axis=axis, train_only=train_only)
        if row_fraction < 0 or base_fraction < 0:
            raise ValueError("row_fraction and base_fraction must be >= 0")
        self.row_fraction = float(row_fraction)
        self.base_fraction = float(base_fraction)
        self.weight_range = _check_range("weight_range", weight_range, 0.0)
        if self.weight_range[1] <= 0:
            raise ValueError("weight_range must allow positive weights")
        self.symmetric = bool(symmetric)
        self.separation_mm = separation_mm
        self.args_names = [
            "row_fraction",
            "base_fraction",
            "weight_range",
            "symmetric",
            "separation_mm",
            "prob",
            "axis",
            "train_only",
        ]

    def randomize(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> dict[str, Any]:
        separation = self.separation_mm if self.separation_mm is not None else geometry.separation_mm
        if separation is None:
            raise ValueError(
                "RandomSliceGap needs the slice separation: put a SliceProfile/RandomSliceProfile step before it "
                "or set separation_mm"
            )
        sep_rows = float(separation) / geometry.spacing_mm
        u = draw_uniform(generator, 0.0, 1.0)
        rows = int(u * self.row_fraction * sep_rows + self.base_fraction * sep_rows) + 1
        low, high = self.weight_range
        count = (rows + 1) // 2 if self.symmetric else rows
        raw = [draw_uniform(generator, low, high) for _ in range(count)]
        if self.symmetric:
            raw = raw + raw[: rows // 2][::-1]
        return {"weights": raw}


# --------------------------------------------------------------------------------------------------
# Same-FOV down- and upsampling
# --------------------------------------------------------------------------------------------------


class Downsample(SpatialDegradation):
    """Same-FOV sampling of the slice stack: S_s with s = S/Δ (docs/physics.md §1, §3; §6 row 5).

    LR slice j sits at HR position p_j = (N − 1)/2 + (j − (N' − 1)/2)·s, N' = round(N/s); cubic B-spline
    interpolation, border clamping. The LR affine (TorchIO path) follows docs/physics.md §3 exactly.

    Args:
        separation_mm: slice separation S (mm); None = the separation set by the preceding slice-profile step.
        order: spline order (3 = cubic B-spline, 1 = linear, 0 = nearest).
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    requires_grid = "hr"
    changes_grid = True
    grid_after = "lr"

    def __init__(
        self, separation_mm: float | None = None, order: int = 3, axis: int | None = None, train_only: bool = False
    ) -> None:
        super().__init__(axis=axis, train_only=train_only)
        if separation_mm is not None and not (math.isfinite(separation_mm) and separation_mm > 0):
            raise ValueError(f"separation_mm must be finite and > 0, got {separation_mm!r}")
        self.separation_mm = None if separation_mm is None else float(separation_mm)
        self.order = int(order)
        self.args_names = ["separation_mm", "order", "axis", "train_only"]

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        separation = self.separation_mm if self.separation_mm is not None else geometry.separation_mm
        if separation is None:
            raise ValueError("Downsample needs separation_mm or a preceding slice-profile step that sets it")
        step = float(separation) / geometry.spacing_mm
        if step < 1.0 - 1e-9:
            raise ValueError(
                f"slice separation {separation} mm is smaller than the HR spacing {geometry.spacing_mm} mm "
                f"(step {step:.4g} < 1): that is upsampling, not a thick-slice simulation"
            )
        step = max(step, 1.0)
        n_in = geometry.n_hr
        n_out = output_length(n_in, step)
        geometry.separation_mm = float(separation)
        geometry.step = step
        geometry.n_lr = n_out
        geometry.grid = "lr"
        return {"separation_mm": float(separation), "step": step, "n_in": n_in, "n_out": n_out, "order": self.order}

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        n_in, n_out, step = params["n_in"], params["n_out"], params["step"]
        matrix = interpolation_matrix(n_in, _positions(n_in, step, n_out), 0 if nearest else params["order"])
        return apply_matrix(x, matrix, axis + 2)

    def output_affine(self, affine: np.ndarray, axis: int, params: dict[str, Any]) -> np.ndarray:
        return resample_affine(affine, axis, params["step"], params["n_in"], params["n_out"])


class Upsample(SpatialDegradation):
    """Bring the LR stack back onto the HR grid: S_{1/s} (docs/physics.md §1; Graf et al.'s down-and-up, §6 row 5).

    HR voxel i reads the LR spline interpolant at (i − p_0)/s (:func:`mrisr.physics.upsample_to_grid`), so the grids
    nest exactly and no content moves.

    Args:
        order: spline order (3 = cubic B-spline).
        spacing_mm: target spacing when used on its own on an LR image without a preceding :class:`Downsample`
            (TorchIO path); inside a stack the HR grid of the plan is used.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    changes_grid = True
    grid_after = "hr"

    def __init__(
        self, order: int = 3, spacing_mm: float | None = None, axis: int | None = None, train_only: bool = False
    ) -> None:
        super().__init__(axis=axis, train_only=train_only)
        self.order = int(order)
        self.spacing_mm = spacing_mm
        self.args_names = ["order", "spacing_mm", "axis", "train_only"]

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        if geometry.grid == "lr":
            step, n_in, n_out = float(geometry.step), int(geometry.n_lr), geometry.n_hr  # type: ignore[arg-type]
        elif self.spacing_mm is not None:
            step = geometry.spacing_mm / float(self.spacing_mm)
            n_in = geometry.n_hr
            n_out = round(n_in * step)
            geometry.spacing_mm = float(self.spacing_mm)
            geometry.spatial_shape = tuple(
                n_out if d == geometry.axis else n for d, n in enumerate(geometry.spatial_shape)
            )
        else:
            raise ValueError("Upsample must follow a Downsample step (or be given spacing_mm when used on its own)")
        geometry.grid = "hr"
        return {"step": step, "n_in": n_in, "n_out": n_out, "order": self.order}

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        return upsample_to_grid(x, axis + 2, params["step"], params["n_out"], 0 if nearest else params["order"])

    def output_affine(self, affine: np.ndarray, axis: int, params: dict[str, Any]) -> np.ndarray:
        return resample_affine(affine, axis, 1.0 / params["step"], params["n_in"], params["n_out"])
