"""Slice-profile (thickness) estimation from one thick-slice volume by analysis-by-synthesis (docs/models.md §1.7).

Principle (Han et al., "ESPRESO: a slice profile estimator for 2-D MRI", MRI 98:155–163, 2023): the in-plane axes of a
2-D multi-slice acquisition are sharp, the through-plane axis is the object blurred by the slice profile and sampled at
the slice separation S. If the object's local statistics do not depend on direction, an in-plane axis blurred with the
*true* profile and sampled at S looks statistically like the through-plane axis. ESPRESO learns the profile with a GAN
whose discriminator compares the two. Here the same comparison is made with one fixed statistic and a 1-D search over
the thickness T, deterministic and in seconds on a CPU:

1. *Real side*: the through-plane lines of the volume, as acquired (sampled at S).
2. *Synthetic side*: for a candidate profile (kind ∈ {gaussian, slr, rect}, FWHM T), both in-plane axes are blurred
   with :func:`~mrisr.physics.profiles.slice_kernel` (FWHM :func:`~mrisr.physics.profiles.kernel_fwhm_voxels` of T
   at the in-plane spacing Δ, the convention of the forward model) and resampled at step S/Δ with the same-FOV cubic
   B-spline operator of the forward model (:func:`~mrisr.physics.resample.interpolation_matrix`), exactly as
   :func:`~mrisr.physics.forward.simulate_thick_slices` does; whatever aliasing the acquisition causes, the synthetic
   side undergoes identically.
3. *Statistic* (edge concentration): for every window of two consecutive intervals along a line, increments d₁, d₂
   and span D = d₁ + d₂, the concentration H = (d₁² + d₂²) / D² ∈ [½, 1] for a monotone edge (1: the whole jump
   happens between two samples; ½: it is split evenly). Over the 5 % of windows with the largest |D|, the median of
   H measures how many sample intervals an edge needs, i.e. the profile width relative to S; a thicker profile
   spreads edges over more samples. Differences at lags 1 and 2 are used (not spectra or raw difference
   distributions) because H is invariant to contrast and to how many edges run in each direction: power spectra and
   structure functions of the shared spines and brains differ between directions by far more than a 1 mm change of
   T makes (anatomy is not isotropic in amount of structure), while the *shape* of a strong edge is much closer to
   direction-independent. The median over the strongest edges tolerates mild noise (errsm_18 at 3||0 and 3||1: ≤ 0.02
   mm change at noise SD 1 % of the 99.5th percentile, +0.1–0.2 mm at 3 %, +0.2–0.45 mm at 5 %).
4. *Fit*: the synthetic statistic, averaged over the two in-plane axes, decreases monotonically with T; T̂ is where it
   crosses the real value (grid over [Δ, 1.6·S], linear interpolation, two secant refinements). By default only the
   ``slr`` kind (the forward model's default) is fitted. With several candidate kinds, each gets its own T̂ and the
   mismatch of the whole distribution of H (25 quantiles, Wasserstein-1) at that T̂; the first candidate is kept
   unless another's mismatch is lower by more than :data:`KIND_PREFERENCE_MARGIN`. The kind is only weakly
   identifiable from one volume, and it matters: a Gaussian of the same FWHM spreads edges more than a near-box
   profile, so fitting the wrong family shifts T̂ by ~0.8 mm at T = 3 mm.

Measured accuracy (experiments/benchmarks/results/profile_estimation_summary.csv, slr profile, kind known):
|T̂ − T| ≤ 0.25 mm in 16 of 24 spine runs at 3||0, 3||0.3, 3||0.5, 3||1 (mean 0.22 mm; development subjects
errsm_11/18/21 ≤ 0.33 mm, check subjects errsm_20/30 ≤ 0.26 mm, errsm_22 up to 0.78 mm), mean 0.06–0.19 mm at 2||0,
4||0, 5||0, 0.55–0.69 mm at 5||1; 1–3 s per spine volume for the default single kind (median 4.5 s with all
three kinds, on a shared, loaded 2-core machine). On the brain FLAIR and T1 sliced sagittally it
underestimates badly (mean −0.3 mm at 2||0, −0.8 to −2.2 mm from 3 mm on): the method assumes that edges look alike
along every axis, which these volumes violate far more than the spines (the slab averaging below explains part of it).
An isotropic synthetic phantom (tests/physics/test_estimation.py) recovers T within 0.75 mm with the compensation below.

The optional ``slab_compensation`` additionally blurs the real side along the in-plane axis being compared with the
candidate profile. The in-plane content of a thick-slice volume is itself averaged over the slab thickness, which
softens in-plane edges of surfaces oblique to the slice axis; with the compensation both sides carry the same 2-D
blur, exact for a direction-independent object (it removes the −0.3 to −0.9 mm bias of the uncompensated estimate
at 3||1 on the ball phantom). On the shared data it overshoots on the spine (+0.5 to +0.9 mm mean at 3||0, 3||1,
5||0), whose structures run along the slices, and helps the brains only partly (mean |error| 0.8–1.4 mm), so it is
off by default.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mrisr.core.errors import MrisrInputError
from mrisr.physics.forward import blur_axis
from mrisr.physics.profiles import FWHMConvention, kernel_fwhm_voxels, slice_kernel
from mrisr.physics.resample import interpolation_matrix, same_fov_positions

__all__ = [
    "EstimatedShape",
    "ShapeFit",
    "SliceProfileEstimate",
    "edge_concentration",
    "estimate_slice_profile",
]

EstimatedShape = Literal["gaussian", "slr", "rect"]

#: Fraction of two-interval windows (largest |D|) whose edge concentration is summarised.
EDGE_FRACTION: float = 0.05
#: Probability levels of the H distribution compared for the choice of the profile kind.
QUANTILE_LEVELS: np.ndarray = np.linspace(0.02, 0.98, 25)
#: Smallest ratio S/Δ accepted (below it the volume is near-isotropic: no slice profile to estimate).
MIN_FACTOR: float = 1.2
#: Smallest number of slices (a two-interval window needs 3; fewer than 5 gives too few windows per line).
MIN_SLICES: int = 5
#: A kind other than the first candidate is chosen only when its H-distribution mismatch is lower than the first
#: kind's by more than this fraction. The kind is weakly identifiable from one volume: offered all three kinds (slr
#: first) in experiments/benchmarks/results/profile_estimation.csv, a true Gaussian profile was recognised in 2 of 12
#: spine runs, a true slr profile kept in 47 of 48 (rect and slr are indistinguishable and give T̂ within 0.1 mm).
KIND_PREFERENCE_MARGIN: float = 0.3
#: Cap on the voxels of one synthetic evaluation (in-plane lines are thinned by a deterministic stride above it).
MAX_SYNTH_VOXELS: int = 1_000_000


@dataclass(frozen=True)
class ShapeFit:
    """Fit of one profile kind.

    Attributes:
        shape: profile kind.
        fwhm_mm: fitted thickness T̂ (mm).
        mismatch: Wasserstein-1 distance between the real and synthetic H distributions at T̂ (lower is better).
        bracketed: whether the synthetic statistic crossed the real one inside the search range (else T̂ is the
            bound where they came closest).
        grid_mm: thickness grid (mm), shape (G,).
        statistic: synthetic median edge concentration on the grid, shape (G,).
        cost: |synthetic − real| on the grid, shape (G,).
    """

    shape: str
    fwhm_mm: float
    mismatch: float
    bracketed: bool
    grid_mm: tuple[float, ...]
    statistic: tuple[float, ...]
    cost: tuple[float, ...]


@dataclass(frozen=True)
class SliceProfileEstimate:
    """Estimated slice profile of a thick-slice volume.

    Attributes:
        fwhm_mm: estimated slice thickness T (FWHM of the slice profile), mm.
        shape: chosen profile kind.
        kernel: unit-sum blur kernel of that profile in in-plane voxels (``slice_kernel`` at
            ``kernel_fwhm_voxels``), shape (L,); usable as ``profile=file``.
        kernel_fwhm_voxels: FWHM of ``kernel`` (in-plane voxels, ``convention``).
        separation_mm: slice separation S used (mm).
        inplane_spacing_mm: in-plane spacing Δ (mm).
        axis: through-plane voxel axis.
        convention: thickness → kernel FWHM convention (docs/physics.md §2.2).
        statistic: median edge concentration of the through-plane axis.
        fwhm_spread_mm: half the range of T̂ over four disjoint quarters of the through-plane lines (a
            repeatability measure, mm; 0 means the data agree with themselves, not that T̂ is right).
        fits: the fit of every candidate kind, keyed by kind.
        seconds: wall-clock time of the estimate.
    """

    fwhm_mm: float
    shape: str
    kernel: np.ndarray
    kernel_fwhm_voxels: float
    separation_mm: float
    inplane_spacing_mm: float
    axis: int
    convention: str
    statistic: float
    fwhm_spread_mm: float
    fits: dict[str, ShapeFit] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def gap_mm(self) -> float:
        """Estimated gap S − T (mm; negative = overlap)."""
        return self.separation_mm - self.fwhm_mm

    def summary(self) -> str:
        """One line: thickness, kind, gap, spread and time."""
        return (
            f"{self.shape} profile, FWHM {self.fwhm_mm:.2f} mm ± {self.fwhm_spread_mm:.2f} (separation "
            f"{self.separation_mm:.3g} mm, gap {self.gap_mm:.2f} mm), {self.seconds:.1f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (arrays as lists)."""
        return {
            "fwhm_mm": self.fwhm_mm,
            "shape": self.shape,
            "gap_mm": self.gap_mm,
            "separation_mm": self.separation_mm,
            "inplane_spacing_mm": self.inplane_spacing_mm,
            "axis": self.axis,
            "convention": self.convention,
            "kernel_fwhm_voxels": self.kernel_fwhm_voxels,
            "kernel": [float(v) for v in self.kernel],
            "statistic": self.statistic,
            "fwhm_spread_mm": self.fwhm_spread_mm,
            "seconds": self.seconds,
            "fits": {
                k: {
                    "fwhm_mm": f.fwhm_mm,
                    "mismatch": f.mismatch,
                    "bracketed": f.bracketed,
                    "grid_mm": list(f.grid_mm),
                    "cost": list(f.cost),
                }
                for k, f in self.fits.items()
            },
        }


def edge_concentration(x: np.ndarray, axis: int, fraction: float = EDGE_FRACTION) -> tuple[float, np.ndarray]:
    """Edge concentration of the lines of ``x`` along ``axis`` (module docstring, step 3).

    Args:
        x: float array, any dimensionality; lines along ``axis`` of length ≥ 3.
        axis: line axis.
        fraction: fraction of windows (largest |D|) kept.

    Returns:
        ``(median H, quantiles of H at QUANTILE_LEVELS)``; H clipped to [0, 2] (non-monotone windows exceed 1).
    """
    moved = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    d = np.diff(moved, axis=-1)
    d1, d2 = d[..., :-1].reshape(-1), d[..., 1:].reshape(-1)
    span = d1 + d2
    magnitude = np.abs(span)
    keep = max(1, round(fraction * magnitude.size))
    idx = np.argpartition(magnitude, magnitude.size - keep)[magnitude.size - keep :]
    idx = idx[magnitude[idx] > 0]
    if idx.size == 0:
        return math.nan, np.full(QUANTILE_LEVELS.shape, math.nan)
    h = np.clip((d1[idx] ** 2 + d2[idx] ** 2) / span[idx] ** 2, 0.0, 2.0)
    return float(np.median(h)), np.quantile(h, QUANTILE_LEVELS)


def _check_inputs(data: np.ndarray, axis: int, separation_mm: float, inplane_spacing_mm: float) -> tuple[int, float]:
    if data.ndim != 3:
        raise MrisrInputError(None, f"slice-profile estimation needs a 3-D volume, got shape {data.shape}", "pass one")
    if axis not in (0, 1, 2):
        raise MrisrInputError(None, f"invalid slice axis {axis!r}", "pass axis 0, 1 or 2")
    for name, value in (("separation_mm", separation_mm), ("inplane_spacing_mm", inplane_spacing_mm)):
        if not (math.isfinite(value) and value > 0):
            raise MrisrInputError(None, f"{name} must be finite and > 0, got {value!r}", "check the voxel sizes")
    factor = separation_mm / inplane_spacing_mm
    if factor < MIN_FACTOR:
        raise MrisrInputError(
            None,
            f"near-isotropic volume: slice separation {separation_mm:.4g} mm is only {factor:.3f} x the in-plane "
            f"spacing {inplane_spacing_mm:.4g} mm (< {MIN_FACTOR}), there is no thick-slice profile to estimate",
            "estimate the profile of a thick-slice acquisition (or check the slice axis)",
        )
    if data.shape[axis] < MIN_SLICES:
        raise MrisrInputError(
            None,
            f"only {data.shape[axis]} slices along axis {axis} (< {MIN_SLICES}): too few to estimate a slice profile",
            "pass the thickness explicitly",
        )
    for b in (i for i in range(3) if i != axis):
        if data.shape[b] < MIN_SLICES * factor:
            raise MrisrInputError(
                None,
                f"in-plane axis {b} has {data.shape[b]} voxels, fewer than {MIN_SLICES} slice separations",
                "pass the thickness explicitly",
            )
    if not np.all(np.isfinite(data)):
        raise MrisrInputError(None, "the volume contains NaN or inf values", "repair the image first")
    if float(np.ptp(data)) == 0.0:
        raise MrisrInputError(None, "the volume is constant", "pass a real image")
    return axis, factor


class _Synthesiser:
    """Synthetic through-plane statistics from the in-plane axes for candidate profiles (cached per (kind, T))."""

    def __init__(
        self,
        data: np.ndarray,
        axis: int,
        factor: float,
        spacing: float,
        convention: FWHMConvention,
        slab_compensation: bool,
    ) -> None:
        self.axis, self.factor, self.spacing, self.convention = axis, factor, spacing, convention
        self.slab_compensation = slab_compensation
        self.data = data
        self.inplane = tuple(i for i in range(3) if i != axis)
        # Thin the lines (deterministic stride over the slices and the other in-plane axis) to bound the cost; each
        # view holds its line axis last and contiguous (a strided matmul in numpy is orders of magnitude slower).
        stride = max(1, math.ceil(math.sqrt(data.size / MAX_SYNTH_VOXELS)))
        self.views: dict[int, np.ndarray] = {}
        self.matrices: dict[int, np.ndarray] = {}
        for b in self.inplane:
            c = next(i for i in self.inplane if i != b)
            view = np.take(data, np.arange(0, data.shape[c], stride), axis=c)
            self.views[b] = np.ascontiguousarray(np.moveaxis(view, b, -1))
            n = data.shape[b]
            self.matrices[b] = interpolation_matrix(n, same_fov_positions(n, factor), order=3)
        self.cache: dict[tuple[str, float], tuple[float, np.ndarray, float, np.ndarray]] = {}

    def kernel(self, kind: str, thickness_mm: float) -> tuple[np.ndarray, float]:
        fwhm = kernel_fwhm_voxels(thickness_mm, self.spacing, self.convention)
        return slice_kernel(fwhm, kind), fwhm

    def __call__(self, kind: str, thickness_mm: float) -> tuple[float, np.ndarray, float, np.ndarray]:
        """(synthetic median H, quantiles, real median H, real quantiles) for ``kind`` at ``thickness_mm``."""
        key = (kind, round(float(thickness_mm), 6))
        if key not in self.cache:
            kernel, _ = self.kernel(kind, thickness_mm)
            medians, quantiles, real_m, real_q = [], [], [], []
            for b in self.inplane:
                blurred = blur_axis(self.views[b], kernel, -1)
                # The forward model's resampling operator (apply_matrix), as one 2-D GEMM over all lines.
                matrix = self.matrices[b]
                sampled = (blurred.reshape(-1, matrix.shape[1]) @ matrix.T).reshape(*blurred.shape[:-1], -1)
                m, q = edge_concentration(sampled, -1)
                medians.append(m)
                quantiles.append(q)
                if self.slab_compensation:
                    m, q = edge_concentration(blur_axis(self.data, kernel, b), self.axis)
                    real_m.append(m)
                    real_q.append(q)
            self.cache[key] = (
                float(np.mean(medians)),
                np.mean(quantiles, axis=0),
                float(np.mean(real_m)) if real_m else math.nan,
                np.mean(real_q, axis=0) if real_q else np.empty(0),
            )
        return self.cache[key]


def _crossing(grid: np.ndarray, diff: np.ndarray) -> tuple[float, bool, int]:
    """First sign change of ``diff`` (synthetic − real, decreasing in T) on ``grid``: (T, bracketed, index)."""
    sign = np.sign(diff)
    changes = np.flatnonzero(sign[:-1] * sign[1:] <= 0)
    if changes.size:
        i = int(changes[0])
        d0, d1 = diff[i], diff[i + 1]
        t = grid[i] if d0 == d1 else grid[i] + (grid[i + 1] - grid[i]) * d0 / (d0 - d1)
        return float(t), True, i
    i = int(np.argmin(np.abs(diff)))
    return float(grid[i]), False, i


def _fit_shape(
    synth: _Synthesiser,
    kind: str,
    grid: np.ndarray,
    real_median: float,
    real_quantiles: np.ndarray,
) -> ShapeFit:
    stats = [synth(kind, t) for t in grid]
    synthetic = np.array([s[0] for s in stats])
    reals = np.array([s[2] for s in stats]) if synth.slab_compensation else np.full(grid.shape, real_median)
    diff = synthetic - reals
    thickness, bracketed, i = _crossing(grid, diff)
    if bracketed:
        # Secant refinement inside the bracket: the statistic is smooth but not linear in T.
        lo, hi, d_lo, d_hi = grid[i], grid[i + 1], diff[i], diff[i + 1]
        for _ in range(2):
            s = synth(kind, thickness)
            d = s[0] - (s[2] if synth.slab_compensation else real_median)
            if d == 0:
                break
            if np.sign(d) == np.sign(d_lo):
                lo, d_lo = thickness, d
            else:
                hi, d_hi = thickness, d
            thickness = lo if d_lo == d_hi else float(lo + (hi - lo) * d_lo / (d_lo - d_hi))
    s = synth(kind, thickness)
    reference_q = s[3] if synth.slab_compensation else real_quantiles
    mismatch = float(np.mean(np.abs(s[1] - reference_q)))
    return ShapeFit(
        shape=kind,
        fwhm_mm=float(thickness),
        mismatch=mismatch,
        bracketed=bracketed,
        grid_mm=tuple(float(t) for t in grid),
        statistic=tuple(float(v) for v in synthetic),
        cost=tuple(float(abs(v)) for v in diff),
    )


def estimate_slice_profile(
    data: np.ndarray,
    axis: int,
    separation_mm: float,
    inplane_spacing_mm: float,
    shapes: tuple[str, ...] | list[str] = ("slr",),
    convention: FWHMConvention = "variance",
    max_ratio: float = 1.6,
    grid_points: int = 10,
    slab_compensation: bool = False,
) -> SliceProfileEstimate:
    """Estimate the slice profile (kind and thickness) of one thick-slice volume (module docstring).

    Args:
        data: the thick-slice volume, shape (X, Y, Z), any intensity scale.
        axis: through-plane voxel axis.
        separation_mm: slice separation S (mm; the NIfTI spacing along ``axis``).
        inplane_spacing_mm: in-plane spacing Δ (mm).
        shapes: candidate profile kinds (subset of gaussian, slr, rect).
        convention: thickness → kernel FWHM convention of the forward model (docs/physics.md §2.2).
        max_ratio: upper end of the search range as a multiple of S (the lower end is Δ).
        grid_points: thickness grid size before refinement.
        slab_compensation: also blur the real side along the compared in-plane axis (module docstring).

    Returns:
        :class:`SliceProfileEstimate`.

    Raises:
        MrisrInputError: not 3-D, near-isotropic (S/Δ < 1.2), fewer than 5 slices, NaN/inf or constant data,
            invalid spacings.
        ValueError: unknown shape or invalid search settings.
    """
    started = time.perf_counter()
    arr = np.asarray(data, dtype=np.float64)
    axis, factor = _check_inputs(arr, int(axis), float(separation_mm), float(inplane_spacing_mm))
    kinds = tuple(shapes)
    if not kinds or any(k not in ("gaussian", "slr", "rect") for k in kinds):
        raise ValueError(f"shapes must be a non-empty subset of ('gaussian', 'slr', 'rect'), got {shapes!r}")
    if not (max_ratio > 1.0 and grid_points >= 3):
        raise ValueError(f"need max_ratio > 1 and grid_points >= 3, got {max_ratio}, {grid_points}")
    real_median, real_quantiles = edge_concentration(arr, axis)
    if not math.isfinite(real_median):
        raise MrisrInputError(None, "no edges along the slice axis", "pass a real image or the thickness explicitly")
    synth = _Synthesiser(arr, axis, factor, float(inplane_spacing_mm), convention, slab_compensation)
    grid = np.linspace(float(inplane_spacing_mm), max_ratio * float(separation_mm), int(grid_points))
    fits = {kind: _fit_shape(synth, kind, grid, real_median, real_quantiles) for kind in kinds}
    first = fits[kinds[0]]
    best = min(fits.values(), key=lambda f: (f.mismatch, kinds.index(f.shape)))
    if best.mismatch >= (1.0 - KIND_PREFERENCE_MARGIN) * first.mismatch:
        best = first

    # Repeatability: the real statistic of four disjoint quarters of the through-plane lines, read off the
    # chosen kind's synthetic curve.
    spread = 0.0
    if not slab_compensation:
        b, c = synth.inplane
        estimates = []
        synthetic = np.asarray(best.statistic)
        for ob in (0, 1):
            for oc in (0, 1):
                part = np.take(
                    np.take(arr, np.arange(ob, arr.shape[b], 2), axis=b), np.arange(oc, arr.shape[c], 2), axis=c
                )
                m, _ = edge_concentration(part, axis)
                estimates.append(_crossing(grid, synthetic - m)[0])
        spread = 0.5 * float(np.ptp(estimates))
    kernel, fwhm_vox = synth.kernel(best.shape, best.fwhm_mm)
    return SliceProfileEstimate(
        fwhm_mm=best.fwhm_mm,
        shape=best.shape,
        kernel=kernel,
        kernel_fwhm_voxels=float(fwhm_vox),
        separation_mm=float(separation_mm),
        inplane_spacing_mm=float(inplane_spacing_mm),
        axis=axis,
        convention=convention,
        statistic=real_median,
        fwhm_spread_mm=spread,
        fits=fits,
        seconds=time.perf_counter() - started,
    )
