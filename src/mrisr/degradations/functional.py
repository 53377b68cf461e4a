"""Pure tensor functions behind the degradation transforms (docs/physics.md §6, Graf et al. 2024 stack).

Every function takes a batched tensor ``x`` of shape ``(B, C, *spatial)`` with two (slice ``(H, W)``) or three
(volume ``(X, Y, Z)``) spatial dimensions, works on any device and floating dtype, and is differentiable in ``x``.
Axes named ``axis`` are *spatial* axis indices (0 = first spatial dimension). Slice profiles and through-plane
resampling are never reimplemented here: blurs use :func:`mrisr.physics.blur_axis` with kernels from
:func:`mrisr.physics.slice_kernel`, resampling uses the same-FOV interpolation matrices of
:mod:`mrisr.physics.resample`. Boundaries are half-sample symmetric (blurs) or border-clamped (resampling, warps);
nothing is zero-padded, so a constant image stays constant through every geometric operation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from mrisr.physics.forward import blur_axis
from mrisr.physics.profiles import FWHM_TO_SIGMA, Discretization, ProfileKind, slice_kernel

__all__ = [
    "NoiseKind",
    "bias_field",
    "bias_field_exponents",
    "cached_slice_kernel",
    "gap_kernel",
    "gaussian_blur",
    "intensity_jitter",
    "interlace_motion",
    "noise",
    "rescale",
    "rotate",
    "shift_axis",
    "slice_gap",
    "spatial_dims",
    "warp_affine",
]

NoiseKind = Literal["gaussian", "rician", "uniform"]


def spatial_dims(x: torch.Tensor) -> int:
    """Number of spatial dimensions of a ``(B, C, *spatial)`` tensor (2 or 3)."""
    if x.ndim not in (4, 5):
        raise ValueError(f"expected a (B, C, H, W) or (B, C, X, Y, Z) tensor, got shape {tuple(x.shape)}")
    return x.ndim - 2


def _floating(x: torch.Tensor) -> torch.Tensor:
    return x if torch.is_floating_point(x) else x.to(torch.get_default_dtype())


@functools.lru_cache(maxsize=512)
def cached_slice_kernel(
    fwhm: float,
    kind: ProfileKind,
    discretization: Discretization | None,
    support: str | int,
    slr_tb: float,
    kernel_file: str | None,
) -> np.ndarray:
    """:func:`mrisr.physics.slice_kernel`, memoised (a multi-PSF stack reuses ~20 kernels millions of times).

    Returns:
        Read-only float64 kernel of shape (L,): odd length, symmetric, unit sum.
    """
    kernel = slice_kernel(fwhm, kind, discretization, support, slr_tb, kernel_file)  # type: ignore[arg-type]
    kernel.flags.writeable = False
    return kernel


# --------------------------------------------------------------------------------------------------
# Interslice gap (docs/physics.md §6 row 4)
# --------------------------------------------------------------------------------------------------


def gap_kernel(weights: Sequence[float]) -> np.ndarray:
    """Correlation taps of the centred interslice-gap average (docs/physics.md §6 row 4, "ours").

    An LR slice becomes the weighted mean of ``g = len(weights)`` consecutive HR rows of the PSF-blurred image
    centred on the slice centre: row offsets ``o_k = k − (g − 1)/2``. For odd g the offsets are whole rows; for
    even g they are half rows, read by linear interpolation, so each weight is split equally between the two
    neighbouring rows and the result has g + 1 taps. Graf et al. read the rows ⌊sep⌋//2 − g//2 rows *after*
    the block start instead, which shifts the LR content by up to 3.7 HR rows (docs/physics.md §7).

    Args:
        weights: g ≥ 1 non-negative weights (any scale), in row order (first = most negative offset).

    Returns:
        float64 array of odd length (g or g + 1), unit sum: ``c[m]`` multiplies the row at offset
        ``m − (len − 1)/2``. Symmetric weights give a symmetric kernel (no shift of the slice centre).
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"gap weights must be a non-empty list of non-negative numbers with a positive sum, got {w}")
    w = w / w.sum()
    if w.size % 2 == 1:
        return w
    taps = np.zeros(w.size + 1)
    taps[:-1] += 0.5 * w
    taps[1:] += 0.5 * w
    return taps


def slice_gap(x: torch.Tensor, weights: Sequence[float], axis: int) -> torch.Tensor:
    """Replace every row along ``axis`` by the centred weighted mean of ``len(weights)`` rows.

    docs/physics.md §6 row 4.

    Applied on the HR grid before same-FOV downsampling, so the LR slice centred at c_j reads the weighted mean of
    the g rows centred on c_j. Half-sample symmetric boundaries: a flat field is preserved exactly.

    Args:
        x: ``(B, C, *spatial)`` tensor on the HR grid.
        weights: gap weights (see :func:`gap_kernel`).
        axis: spatial through-plane axis.

    Returns:
        Tensor of the same shape, dtype and device.
    """
    taps = gap_kernel(weights)
    # blur_axis convolves (flips the kernel); pass the reversed correlation taps.
    return blur_axis(_floating(x), taps[::-1].copy(), axis + 2)


# --------------------------------------------------------------------------------------------------
# Spatial warps (docs/physics.md §6 rows 1, 2, 6)
# --------------------------------------------------------------------------------------------------


def warp_affine(
    x: torch.Tensor,
    matrix: torch.Tensor | np.ndarray,
    mode: Literal["bilinear", "nearest"] = "bilinear",
) -> torch.Tensor:
    """Resample ``x`` through a linear map about the image centre: ``out(p) = x(c + M (p − c))``.

    Coordinates are voxel indices (isotropic voxels assumed), c = (N − 1)/2 per axis. Linear interpolation
    (bilinear/trilinear), border padding (Graf et al. use zero padding, which leaves black borders; docs/physics.md §6
    rows 1–2): a constant image stays constant. Implemented with ``affine_grid``/``grid_sample``
    (``align_corners=True``), the voxel-space map converted to normalised coordinates per axis.

    Args:
        x: ``(B, C, *spatial)`` tensor, 2 or 3 spatial dimensions.
        matrix: ``(nd, nd)`` map from output to input coordinates, in spatial axis order.
        mode: ``bilinear`` (linear in every axis) or ``nearest`` (label maps).

    Returns:
        Tensor of the same shape, dtype and device.
    """
    x = _floating(x)
    nd = spatial_dims(x)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (nd, nd):
        raise ValueError(f"matrix must be {nd}x{nd} for {nd} spatial dims, got {m.shape}")
    half = np.array([(n - 1) / 2.0 for n in x.shape[2:]])
    for d in range(nd):  # an axis of length 1 cannot be resampled: keep it
        if half[d] == 0 and (np.any(m[d, np.arange(nd) != d] != 0) or np.any(m[np.arange(nd) != d, d] != 0)):
            raise ValueError(f"cannot rotate/scale across spatial axis {d} of length 1")
    scale = np.where(half > 0, half, 1.0)
    theta = (m * scale[None, :]) / scale[:, None]  # normalised output → normalised input coordinates
    theta = theta[::-1, ::-1]  # grid_sample orders coordinates (x, y[, z]) = reversed spatial axes
    affine = np.concatenate([theta, np.zeros((nd, 1))], axis=1)
    theta_t = torch.as_tensor(affine, dtype=x.dtype, device=x.device).unsqueeze(0).expand(x.shape[0], -1, -1)
    grid = F.affine_grid(theta_t, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=True)


def _plane_axes(x: torch.Tensor, plane: Sequence[int] | None) -> tuple[int, int]:
    nd = spatial_dims(x)
    if plane is None:
        big = [d for d in range(nd) if x.shape[2 + d] > 1]
        plane = (big + [d for d in range(nd) if d not in big])[:2]
    a, b = (int(plane[0]) % nd, int(plane[1]) % nd)
    if a == b:
        raise ValueError(f"rotation plane needs two different axes, got {plane}")
    return a, b


def rotate(
    x: torch.Tensor,
    angle_deg: float,
    plane: Sequence[int] | None = None,
    mode: Literal["bilinear", "nearest"] = "bilinear",
) -> torch.Tensor:
    """Rotate ``x`` by ``angle_deg`` about the image centre in the plane of two spatial axes (docs/physics.md §6 row 2).

    Args:
        x: ``(B, C, *spatial)`` tensor.
        angle_deg: rotation angle in degrees (positive: from the first plane axis towards the second).
        plane: the two spatial axes spanning the rotation plane; default the first two axes longer than 1.
        mode: interpolation (``bilinear`` in our stack; Graf et al.'s code uses nearest).

    Returns:
        Tensor of the same shape.
    """
    if angle_deg == 0:
        return _floating(x)
    a, b = _plane_axes(x, plane)
    nd = spatial_dims(x)
    t = math.radians(angle_deg)
    m = np.eye(nd)
    m[a, a], m[a, b], m[b, a], m[b, b] = math.cos(t), -math.sin(t), math.sin(t), math.cos(t)
    return warp_affine(x, m, mode)


def rescale(x: torch.Tensor, factor: float, mode: Literal["bilinear", "nearest"] = "bilinear") -> torch.Tensor:
    """Isotropic rescaling about the image centre: ``out(p) = x(c + factor·(p − c))`` (docs/physics.md §6 row 1).

    ``factor`` > 1 shrinks the content (the sampling grid covers a larger field), < 1 magnifies it, as in Graf et
    al.'s code (U(0.75, 1.5)). Axes of length 1 are left alone. Border padding instead of zeros.

    Args:
        x: ``(B, C, *spatial)`` tensor.
        factor: grid scale factor (> 0).
        mode: interpolation.

    Returns:
        Tensor of the same shape.
    """
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"rescale factor must be finite and > 0, got {factor!r}")
    if factor == 1:
        return _floating(x)
    nd = spatial_dims(x)
    m = np.diag([factor if x.shape[2 + d] > 1 else 1.0 for d in range(nd)])
    return warp_affine(x, m, mode)


def shift_axis(x: torch.Tensor, shift: float, axis: int) -> torch.Tensor:
    """Translate ``x`` by ``shift`` voxels along a spatial axis: ``out(i) = x(i − shift)``, linear, border-clamped.

    Two-tap linear interpolation with weights 1 − t and t (t = fractional part), positions clamped to [0, N − 1]:
    the weights sum to one, so a flat field is preserved.

    Args:
        x: ``(B, C, *spatial)`` tensor.
        shift: displacement in voxels (positive = towards higher indices).
        axis: spatial axis.

    Returns:
        Tensor of the same shape.
    """
    x = _floating(x)
    dim = axis + 2
    n = x.shape[dim]
    if shift == 0 or n == 1:
        return x
    position = torch.arange(n, dtype=torch.float64, device=x.device) - float(shift)
    position = position.clamp(0.0, n - 1.0)
    lower = position.floor()
    frac = (position - lower).to(x.dtype)
    i0 = lower.long()
    i1 = (i0 + 1).clamp_max(n - 1)
    shape = [1] * x.ndim
    shape[dim] = n
    frac = frac.reshape(shape)
    return x.index_select(dim, i0) * (1 - frac) + x.index_select(dim, i1) * frac


def interlace_motion(
    x: torch.Tensor,
    axis: int,
    band_rows: float,
    shift_px: float,
    shift_axis_index: int,
    phase: int = 0,
    row_shift_px: float = 0.0,
) -> torch.Tensor:
    """Interlace (interleaved-acquisition) motion artefact (docs/physics.md §6 row 6).

    The rows along ``axis`` are cut into consecutive bands of ``band_rows`` rows (band b = ⌊i / band_rows⌋); every
    other band (b ≡ 1 − ``phase`` mod 2, i.e. ``phase`` = 0 moves the odd bands) is displaced by ``shift_px``
    voxels along ``shift_axis_index`` and, for Graf et al.'s code semantics, by ``row_shift_px`` along ``axis``.
    Linear interpolation, border clamping; the other bands are untouched bit for bit.

    Args:
        x: ``(B, C, *spatial)`` tensor.
        axis: spatial through-plane axis (rows).
        band_rows: band height in rows of ``x`` (> 0; fractional heights allowed).
        shift_px: displacement of the moved bands along ``shift_axis_index`` (voxels).
        shift_axis_index: spatial axis of the in-plane displacement (≠ ``axis``).
        phase: 0 moves odd bands, 1 moves even bands.
        row_shift_px: displacement of the moved bands along ``axis`` (0 in the paper's semantics).

    Returns:
        Tensor of the same shape.
    """
    x = _floating(x)
    if not (math.isfinite(band_rows) and band_rows > 0):
        raise ValueError(f"band_rows must be > 0, got {band_rows!r}")
    if shift_axis_index == axis:
        raise ValueError("the interlace shift axis must differ from the through-plane axis")
    moved = shift_axis(x, shift_px, shift_axis_index)
    moved = shift_axis(moved, row_shift_px, axis)
    n = x.shape[2 + axis]
    band = torch.div(torch.arange(n, device=x.device, dtype=torch.float64), float(band_rows), rounding_mode="floor")
    select = (band.long() % 2) == (1 - int(phase) % 2)
    shape = [1] * x.ndim
    shape[2 + axis] = n
    return torch.where(select.reshape(shape), moved, x)


# --------------------------------------------------------------------------------------------------
# Blur, bias field, noise, intensity jitter (docs/physics.md §6 rows 5, 8–11)
# --------------------------------------------------------------------------------------------------


def gaussian_blur(
    x: torch.Tensor,
    sigma_px: float,
    axes: Sequence[int] | None = None,
    support: Literal["default"] | int = "default",
) -> torch.Tensor:
    """Separable Gaussian blur of standard deviation ``sigma_px`` voxels (docs/physics.md §6 row 8).

    The 1-D kernel is :func:`mrisr.physics.slice_kernel` (``gaussian``, ``point``; FWHM = 2.355·σ) with support
    2⌈3σ⌉ + 1 by default (Graf et al.'s code: 9 taps), applied along each axis with half-sample symmetric
    boundaries.

    Args:
        x: ``(B, C, *spatial)`` tensor.
        sigma_px: standard deviation in voxels (≥ 0; 0 = identity).
        axes: spatial axes to blur; default every axis longer than 1.
        support: ``"default"`` (2⌈3σ⌉ + 1) or an odd number of taps.

    Returns:
        Tensor of the same shape.
    """
    x = _floating(x)
    if not (math.isfinite(sigma_px) and sigma_px >= 0):
        raise ValueError(f"sigma_px must be finite and >= 0, got {sigma_px!r}")
    if sigma_px == 0:
        return x
    nd = spatial_dims(x)
    taps = 2 * math.ceil(3.0 * sigma_px) + 1 if support == "default" else int(support)
    kernel = cached_slice_kernel(float(sigma_px * FWHM_TO_SIGMA), "gaussian", "point", taps, 16.0, None)
    for d in axes if axes is not None else [d for d in range(nd) if x.shape[2 + d] > 1]:
        x = blur_axis(x, kernel, int(d) + 2)
    return x


def bias_field_exponents(spatial_ndim: int, order: int) -> list[tuple[int, ...]]:
    """Monomial exponents of a polynomial of total degree ≤ ``order`` (TorchIO ``RandomBiasField`` order).

    Returns:
        List of exponent tuples, length C(order + nd, nd) (10 in 2-D, 20 in 3-D for order 3).
    """
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    if spatial_ndim == 2:
        return [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]
    if spatial_ndim == 3:
        return [(i, j, k) for i in range(order + 1) for j in range(order + 1 - i) for k in range(order + 1 - i - j)]
    raise ValueError(f"spatial_ndim must be 2 or 3, got {spatial_ndim}")


def bias_field(
    spatial_shape: Sequence[int],
    coefficients: Sequence[float],
    order: int = 3,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Smooth multiplicative field ``exp(Σ_k c_k · Π_d u_d^{e_kd})`` on a [−1, 1] mesh (docs/physics.md §6 row 10).

    Graf et al. multiply by 1/exp(Σ c·xⁱ·yʲ) with c ~ U(0, 0.5); TorchIO's ``RandomBiasField(coefficients=(−0.5,
    0), order=3)`` multiplies by exp(Σ c·…) with c ~ U(−0.5, 0): the same distribution. Evaluated as one tensor
    contraction (no per-voxel loops).

    Args:
        spatial_shape: 2 or 3 spatial sizes.
        coefficients: one coefficient per monomial of :func:`bias_field_exponents` (same order).
        order: total polynomial degree.
        device: output device.
        dtype: output dtype.

    Returns:
        Positive tensor of shape ``spatial_shape``.
    """
    nd = len(spatial_shape)
    exponents = bias_field_exponents(nd, order)
    if len(coefficients) != len(exponents):
        raise ValueError(f"order {order} in {nd}-D needs {len(exponents)} coefficients, got {len(coefficients)}")
    coef = torch.zeros((order + 1,) * nd, dtype=torch.float64, device=device)
    for e, c in zip(exponents, coefficients, strict=True):
        coef[e] = float(c)
    powers = []
    for n in spatial_shape:
        if n > 1:
            u = torch.linspace(-1.0, 1.0, n, dtype=torch.float64, device=device)
        else:
            u = torch.zeros(1, dtype=torch.float64, device=device)
        powers.append(u.unsqueeze(0) ** torch.arange(order + 1, dtype=torch.float64, device=device).unsqueeze(1))
    if nd == 2:
        log_field = torch.einsum("ab,ai,bj->ij", coef, powers[0], powers[1])
    else:
        log_field = torch.einsum("abc,ai,bj,ck->ijk", coef, powers[0], powers[1], powers[2])
    return torch.exp(log_field).to(dtype)


def noise(
    x: torch.Tensor,
    sigma: float,
    kind: NoiseKind = "gaussian",
    generator: torch.Generator | None = None,
    clip_min: float | None = 0.0,
) -> torch.Tensor:
    """Add acquisition noise of level ``sigma`` (docs/physics.md §1 noise, §6 rows 5 and 9).

    - ``gaussian``: x + σ·n, n ~ N(0, 1) (our default).
    - ``rician``: |x + σ·(n₁ + i·n₂)|, the magnitude of the image plus complex Gaussian noise.
    - ``uniform``: x + σ·u, u ~ U(0, 1) (Graf et al.'s code: biased upwards; parity only).

    Args:
        x: ``(B, C, *spatial)`` tensor (intensities normalised so that tissue ≈ 1).
        sigma: noise level (≥ 0) in intensity units.
        kind: ``gaussian``, ``rician`` or ``uniform``.
        generator: torch generator on ``x``'s device (None = the global generator).
        clip_min: lower clamp after adding noise (magnitude images are ≥ 0); None = no clamp.

    Returns:
        Tensor of the same shape.
    """
    x = _floating(x)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"noise sigma must be finite and >= 0, got {sigma!r}")
    if sigma == 0:
        return x
    if kind == "gaussian":
        out = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    elif kind == "rician":
        n = torch.randn((2, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
        out = torch.sqrt((x + sigma * n[0]) ** 2 + (sigma * n[1]) ** 2)
    elif kind == "uniform":
        out = x + sigma * torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; use 'gaussian', 'rician' or 'uniform'")
    return out if clip_min is None else out.clamp_min(clip_min)


def intensity_jitter(
    x: torch.Tensor,
    brightness: float = 1.0,
    contrast: float = 1.0,
    clip_min: float | None = 0.0,
) -> torch.Tensor:
    """Brightness and contrast jitter ("colour jitter", docs/physics.md §6 row 11).

    ``y = b·x`` then ``y ← c·y + (1 − c)·mean(y)`` with the mean over the spatial dimensions of each (batch,
    channel) item; clamped below at ``clip_min``. b = c = 1 is the identity.

    Args:
        x: ``(B, C, *spatial)`` tensor.
        brightness: factor b (Graf: U(0.8, 1.2)).
        contrast: factor c (Graf: U(0.8, 1.2)).
        clip_min: lower clamp; None = none.

    Returns:
        Tensor of the same shape.
    """
    x = _floating(x)
    if brightness == 1 and contrast == 1:
        return x
    y = x * brightness
    if contrast != 1:
        mean = y.mean(dim=tuple(range(2, y.ndim)), keepdim=True)
        y = contrast * y + (1.0 - contrast) * mean
    return y if clip_min is None else y.clamp_min(clip_min)
