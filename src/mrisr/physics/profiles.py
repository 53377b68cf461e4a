"""Slice profiles and discrete through-plane blur kernels (docs/physics.md §2).

A thick-slice acquisition blurs the object along the slice axis with the slice profile: the
excited magnetisation as a function of the through-plane position. This module provides the
continuous profiles (Gaussian, rectangle, simulated Shinnar–Le Roux excitation), the conversion
from a slice thickness in mm to a kernel FWHM in HR voxels, and the discretisation of a profile
into a unit-sum, symmetric, odd-length kernel.

Units: thicknesses and spacings in mm (``*_mm``); profile positions, FWHMs and kernel supports in
HR voxels along the slice axis; SLR table positions in the pulse's own dimensionless position
units ``x`` (time-bandwidth units, FWHM ≈ tb).
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.special import erf

__all__ = [
    "Discretization",
    "FWHMConvention",
    "ProfileKind",
    "compute_slr_profile",
    "continuous_profile",
    "discrete_fwhm",
    "kernel_fwhm_voxels",
    "load_kernel_file",
    "slice_kernel",
    "slr_fwhm_x",
    "slr_profile_table",
]

log = logging.getLogger(__name__)

ProfileKind = Literal["gaussian", "rect", "slr", "file"]
FWHMConvention = Literal["variance", "absolute"]
Discretization = Literal["point", "area"]

#: FWHM = FWHM_TO_SIGMA · σ for a Gaussian (2·√(2 ln 2)).
FWHM_TO_SIGMA: float = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: Number of samples of the cached SLR profile table over x ∈ [−2·tb, 2·tb].
SLR_TABLE_SAMPLES: int = 4097

#: Shipped SLR profile tables, keyed by time-bandwidth product.
SLR_TABLE_FILES: dict[float, Path] = {16.0: Path(__file__).parent / "data" / "slr_tb16.npy"}

_PROFILE_KINDS: tuple[str, ...] = ("gaussian", "rect", "slr", "file")
_DEFAULT_DISCRETIZATION: dict[str, Discretization] = {"gaussian": "point", "rect": "area", "slr": "area"}


# --------------------------------------------------------------------------------------------------
# Thickness → kernel FWHM
# --------------------------------------------------------------------------------------------------


def kernel_fwhm_voxels(thickness_mm: float, spacing_mm: float, convention: FWHMConvention = "variance") -> float:
    """FWHM of the through-plane blur kernel in HR voxels (docs/physics.md §2.2).

    ``variance``: f = √(T² − Δ²)/Δ. The HR image already carries a PSF of width ≈ Δ, and the
    variances of Gaussians add (radifox ``apply_degrade``, SMORE v4, Graf et al. 2024, Dewey et al.
    2024). ``absolute``: f = T/Δ, for kernels already relative to the HR grid (ECLARE
    ``--relative-slice-thickness``, ESPRESO estimates, partial-volume box model).

    Args:
        thickness_mm: slice thickness T (FWHM of the slice profile), mm, > 0.
        spacing_mm: HR spacing Δ along the slice axis, mm, > 0.
        convention: ``"variance"`` or ``"absolute"``.

    Returns:
        Kernel FWHM f in HR voxels. Under ``variance`` with T ≤ Δ the result is 0.0 (identity
        kernel); this is logged.

    Raises:
        ValueError: non-positive or non-finite inputs, unknown convention.
    """
    if not (math.isfinite(thickness_mm) and thickness_mm > 0):
        raise ValueError(f"thickness_mm must be finite and > 0, got {thickness_mm!r}")
    if not (math.isfinite(spacing_mm) and spacing_mm > 0):
        raise ValueError(f"spacing_mm must be finite and > 0, got {spacing_mm!r}")
    if convention == "absolute":
        return float(thickness_mm / spacing_mm)
    if convention == "variance":
        if thickness_mm <= spacing_mm:
            log.info(
                "thickness %.4g mm <= HR spacing %.4g mm under the variance convention: "
                "kernel FWHM 0 (identity kernel)",
                thickness_mm,
                spacing_mm,
            )
            return 0.0
        return float(math.sqrt(thickness_mm**2 - spacing_mm**2) / spacing_mm)
    raise ValueError(f"unknown fwhm convention {convention!r}; use 'variance' or 'absolute'")


# --------------------------------------------------------------------------------------------------
# SLR profile table
# --------------------------------------------------------------------------------------------------


def compute_slr_profile(tb: float = 16.0, n_samples: int = SLR_TABLE_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the |M_xy| slice profile of an SLR 90° excitation pulse with sigpy (docs/physics.md §2.1).

    Pulse: ``sigpy.mri.rf.slr.dzrf(n=128, tb=tb, ptype='ex', ftype='ls', d1=0.01, d2=0.01,
    cancel_alpha_phs=False)`` (Pauly et al. 1991, Shinnar–Le Roux design; radifox
    ``pulse_based_profile`` defaults). Bloch simulation: ``sigpy.mri.rf.sim.abrm(rf, x,
    balanced=True)`` with the transverse magnetisation |M_xy| = |2·conj(α)·β|. The profile is
    symmetrised (it is symmetric up to ~1e-9) and normalised to peak 1.

    Args:
        tb: time-bandwidth product (> 0).
        n_samples: number of positions over x ∈ [−2·tb, 2·tb].

    Returns:
        ``(x, profile)``: float64 arrays of shape (n_samples,), x in pulse position units.

    Raises:
        ImportError: sigpy is not installed.
    """
    try:
        import sigpy.mri.rf as sigpy_rf
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"simulating an SLR profile with tb={tb} needs sigpy (a dependency of mrisr: pip install 'sigpy==0.1.27'); "
            "only tb=16 ships as a precomputed table"
        ) from err
    pulse = sigpy_rf.slr.dzrf(n=128, tb=tb, ptype="ex", ftype="ls", d1=0.01, d2=0.01, cancel_alpha_phs=False)
    x = np.linspace(-2.0 * tb, 2.0 * tb, n_samples)
    alpha, beta = sigpy_rf.sim.abrm(pulse, x, balanced=True)
    mxy = np.abs(2.0 * np.conj(alpha) * beta).astype(np.float64)
    mxy = 0.5 * (mxy + mxy[::-1])
    return x, mxy / mxy.max()


@functools.lru_cache(maxsize=16)
def slr_profile_table(tb: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
    """Cached, normalised SLR |M_xy| profile (docs/physics.md §2.1).

    tb = 16 is read from the shipped table ``physics/data/slr_tb16.npy`` (generated by
    ``python -m mrisr.physics.make_slr_table``); other tb values are simulated with sigpy
    (imported lazily, see :func:`compute_slr_profile`).

    Args:
        tb: time-bandwidth product.

    Returns:
        ``(x, profile)``: read-only float64 arrays of shape (4097,), x ∈ [−2·tb, 2·tb] in pulse
        position units, profile with peak 1.
    """
    tb = float(tb)
    path = SLR_TABLE_FILES.get(tb)
    if path is not None and path.is_file():
        table = np.load(path, allow_pickle=False)
        x, profile = np.array(table[0], dtype=np.float64), np.array(table[1], dtype=np.float64)
    else:
        x, profile = compute_slr_profile(tb)
    x.flags.writeable = False
    profile.flags.writeable = False
    return x, profile


@functools.lru_cache(maxsize=16)
def slr_fwhm_x(tb: float = 16.0) -> float:
    """FWHM of the SLR profile in pulse position units (≈ 16.10 for tb = 16; docs/physics.md §2.1).

    Args:
        tb: time-bandwidth product.

    Returns:
        FWHM_x from the half-maximum crossings of the cached table (linear interpolation).
    """
    x, profile = slr_profile_table(tb)
    return discrete_fwhm(profile) * float(x[1] - x[0])


# --------------------------------------------------------------------------------------------------
# Continuous profiles
# --------------------------------------------------------------------------------------------------


def continuous_profile(kind: ProfileKind, u: np.ndarray, fwhm: float, slr_tb: float = 16.0) -> np.ndarray:
    """Continuous slice profile p(u) with peak 1 and FWHM ``fwhm`` (docs/physics.md §2.1).

    - ``gaussian``: exp(−u²/2σ²), σ = f/(2√(2 ln 2)).
    - ``rect``: 1 for |u| < f/2, 0 for |u| > f/2, ½ exactly on the edges.
    - ``slr``: SLR |M_xy| table interpolated at x = u·FWHM_x/f, so that the FWHM is exactly f
      (radifox scales by tb instead, 0.6 % too wide); 0 outside the table (|x| > 2·tb).

    Args:
        kind: ``"gaussian"``, ``"rect"`` or ``"slr"`` (``"file"`` has no continuous profile).
        u: positions, HR voxels, any shape.
        fwhm: FWHM f, HR voxels, ≥ 0. f = 0 gives a unit impulse at u = 0.
        slr_tb: SLR time-bandwidth product.

    Returns:
        float64 array of the same shape as ``u``.

    Raises:
        ValueError: unknown kind, ``"file"``, or negative/non-finite FWHM.
    """
    u = np.asarray(u, dtype=np.float64)
    if not (math.isfinite(fwhm) and fwhm >= 0):
        raise ValueError(f"fwhm must be finite and >= 0, got {fwhm!r}")
    if kind not in ("gaussian", "rect", "slr"):
        raise ValueError(f"continuous_profile supports 'gaussian', 'rect' and 'slr', got {kind!r}")
    if fwhm == 0:
        return (u == 0).astype(np.float64)
    if kind == "gaussian":
        sigma = fwhm / FWHM_TO_SIGMA
        return np.exp(-0.5 * (u / sigma) ** 2)
    if kind == "rect":
        half = 0.5 * fwhm
        a = np.abs(u)
        return np.where(a < half, 1.0, np.where(a == half, 0.5, 0.0))
    x_table, p_table = slr_profile_table(slr_tb)
    return np.interp(u * (slr_fwhm_x(slr_tb) / fwhm), x_table, p_table, left=0.0, right=0.0)


def _slr_interval_integral(lo: np.ndarray, hi: np.ndarray, fwhm: float, slr_tb: float) -> np.ndarray:
    """∫_lo^hi p_slr(u) du of the piecewise-linear SLR table interpolant (HR voxel units).

    Exact integration of the interpolant through the cumulative trapezoid of the table: the limit of
    the sub-sampled area rule as the number of sub-samples per voxel grows (the 4097-sample tb = 16
    table itself holds ≥ 64 samples per HR voxel for f ≤ 16).
    """
    x_table, p_table = slr_profile_table(slr_tb)
    dx = np.diff(x_table)
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (p_table[1:] + p_table[:-1]) * dx)])
    scale = slr_fwhm_x(slr_tb) / fwhm  # pulse units per HR voxel

    def primitive(u: np.ndarray) -> np.ndarray:
        x = np.clip(u * scale, x_table[0], x_table[-1])
        idx = np.clip(np.searchsorted(x_table, x, side="right") - 1, 0, x_table.size - 2)
        t = x - x_table[idx]
        slope = (p_table[idx + 1] - p_table[idx]) / dx[idx]
        return cumulative[idx] + p_table[idx] * t + 0.5 * slope * t**2

    return (primitive(hi) - primitive(lo)) / scale


# --------------------------------------------------------------------------------------------------
# Discrete kernels
# --------------------------------------------------------------------------------------------------


def _support_length(fwhm: float, kind: str, support: Literal["default", "parity"] | int) -> int:
    """Odd kernel length L (docs/physics.md §2.3)."""
    if isinstance(support, bool) or not isinstance(support, (int, np.integer, str)):
        raise ValueError(f"support must be 'default', 'parity' or an odd int, got {support!r}")
    if isinstance(support, (int, np.integer)):
        if support < 1 or support % 2 == 0:
            raise ValueError(f"an explicit kernel support must be an odd int >= 1, got {support}")
        return int(support)
    if support == "parity":
        return 2 * round(fwhm) + 1
    if support == "default":
        half = 0.5 * fwhm + 2.0
        if kind == "gaussian":
            half = max(3.0 * fwhm / FWHM_TO_SIGMA, half)
        return 2 * math.ceil(half) + 1
    raise ValueError(f"support must be 'default', 'parity' or an odd int, got {support!r}")


def load_kernel_file(kernel_file: str | Path) -> np.ndarray:
    """Load a user kernel (``.npy``, e.g. an ESPRESO estimate) and renormalise it to unit sum.

    Args:
        kernel_file: path to a ``.npy`` file holding a 1-D, finite, non-negative, odd-length array
            (HR voxel taps along the slice axis, centre tap in the middle).

    Returns:
        float64 array of shape (L,), unit sum. Used as is: no FWHM logic (docs/physics.md §2.1).

    Raises:
        ValueError: the array is not 1-D, not finite, negative somewhere, of even length, or sums
            to zero; the message names the file and the fix.
    """
    path = Path(kernel_file)
    kernel = np.load(path, allow_pickle=False)
    fix = "save a 1-D, finite, non-negative, odd-length array, e.g. np.save(path, np.array([0.25, 0.5, 0.25]))"
    if kernel.ndim != 1:
        raise ValueError(f"kernel file {path} holds an array of shape {kernel.shape}, expected 1-D; {fix}")
    kernel = kernel.astype(np.float64)
    if not np.all(np.isfinite(kernel)):
        raise ValueError(f"kernel file {path} contains NaN or inf values; {fix}")
    if np.any(kernel < 0):
        raise ValueError(f"kernel file {path} contains negative taps (min {kernel.min():.3g}); {fix}")
    if kernel.size % 2 == 0:
        raise ValueError(
            f"kernel file {path} has even length {kernel.size}; pad one zero tap on the short side "
            f"so the centre tap is in the middle; {fix}"
        )
    total = kernel.sum()
    if total <= 0:
        raise ValueError(f"kernel file {path} sums to zero; {fix}")
    return kernel / total


def slice_kernel(
    fwhm: float,
    kind: ProfileKind = "gaussian",
    discretization: Discretization | None = None,
    support: Literal["default", "parity"] | int = "default",
    slr_tb: float = 16.0,
    kernel_file: str | None = None,
) -> np.ndarray:
    """Discrete through-plane blur kernel k_f (docs/physics.md §2.3).

    ``point``: k_i = p(i) at integer offsets i (correct for Gaussians). ``area``: k_i =
    ∫_{i−½}^{i+½} p(u) du, the partial-volume weight of HR voxel i (exact for ``rect`` and
    ``gaussian``; for ``slr`` the exact integral of the table interpolant). Default discretisation:
    ``gaussian`` → point, ``rect``/``slr`` → area. Point-sampling ``rect``/``slr`` quantises the
    thickness to whole voxels (|FWHM error| up to ~0.5–1 voxel); it exists for parity with radifox.

    Support L (odd): ``"default"``: 2·⌈max(3σ, f/2 + 2)⌉ + 1 for Gaussians, 2·⌈f/2 + 2⌉ + 1
    otherwise; ``"parity"``: 2·round(f) + 1 (radifox, Graf et al.); an int: that length.

    Args:
        fwhm: FWHM f in HR voxels (≥ 0); f = 0 returns ``np.array([1.0])``. Ignored for ``file``.
        kind: ``"gaussian"``, ``"rect"``, ``"slr"`` or ``"file"``.
        discretization: ``"point"``, ``"area"`` or None (kind default).
        support: ``"default"``, ``"parity"`` or an odd length.
        slr_tb: SLR time-bandwidth product.
        kernel_file: ``.npy`` path, required for ``kind="file"`` (see :func:`load_kernel_file`).

    Returns:
        float64 array of shape (L,): odd length, symmetric, non-negative, unit sum.

    Raises:
        ValueError: unknown kind/discretisation/support, negative FWHM, missing or invalid file.
    """
    if kind not in _PROFILE_KINDS:
        raise ValueError(f"unknown profile kind {kind!r}; use one of {_PROFILE_KINDS}")
    if kind == "file":
        if kernel_file is None:
            raise ValueError("profile kind 'file' needs kernel_file='path/to/kernel.npy'")
        return load_kernel_file(kernel_file)
    if not (math.isfinite(fwhm) and fwhm >= 0):
        raise ValueError(f"fwhm must be finite and >= 0, got {fwhm!r}")
    if fwhm == 0:
        return np.array([1.0])
    if discretization is None:
        discretization = _DEFAULT_DISCRETIZATION[kind]
    if discretization not in ("point", "area"):
        raise ValueError(f"unknown discretization {discretization!r}; use 'point' or 'area'")

    length = _support_length(fwhm, kind, support)
    offsets = np.arange(length, dtype=np.float64) - (length - 1) // 2
    if discretization == "point":
        kernel = continuous_profile(kind, offsets, fwhm, slr_tb)
    else:
        lo, hi = offsets - 0.5, offsets + 0.5
        if kind == "rect":
            half = 0.5 * fwhm
            kernel = np.clip(np.minimum(hi, half) - np.maximum(lo, -half), 0.0, None)
        elif kind == "gaussian":
            scale = math.sqrt(2.0) * fwhm / FWHM_TO_SIGMA
            kernel = 0.5 * (erf(hi / scale) - erf(lo / scale))
        else:
            kernel = _slr_interval_integral(lo, hi, fwhm, slr_tb)
    kernel = np.clip(0.5 * (kernel + kernel[::-1]), 0.0, None)
    total = kernel.sum()
    if total <= 0:
        raise ValueError(f"{kind} kernel with fwhm={fwhm} and support {length} is empty; use a larger support")
    return kernel / total


def discrete_fwhm(kernel: np.ndarray) -> float:
    """FWHM of a sampled profile from its outermost half-maximum crossings (docs/physics.md §7).

    The crossings are located by linear interpolation between the last sample below and the first
    sample at or above half of the maximum, on each side.

    Args:
        kernel: 1-D array of samples (any normalisation), unit sample spacing.

    Returns:
        FWHM in samples (HR voxels for kernels). A kernel whose edge samples are above half maximum
        returns the distance between the edge samples.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 1 or k.size == 0:
        raise ValueError(f"discrete_fwhm expects a non-empty 1-D array, got shape {k.shape}")
    half = 0.5 * k.max()
    above = np.flatnonzero(k >= half)
    first, last = int(above[0]), int(above[-1])
    left = float(first)
    if first > 0:
        left = first - (k[first] - half) / (k[first] - k[first - 1])
    right = float(last)
    if last < k.size - 1:
        right = last + (k[last] - half) / (k[last] - k[last + 1])
    return right - left
