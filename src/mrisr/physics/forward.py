"""Thick-slice acquisition forward model (docs/physics.md §1).

For one through-plane axis a of an HR volume x with spacing Δ (mm):

    y  = S_s(k_f ⊛_a x)                 (LR on its own grid)
    y↑ = S_{1/s}(S_s(k_f ⊛_a x))        (LR brought back onto the HR grid; Graf et al. 2024)

with k_f the unit-sum slice-profile kernel of FWHM f HR voxels (thickness T, §2), S_d the
same-FOV resampling with step d (§3) and s = S/Δ the separation in HR voxels (non-integer
allowed). Thickness and separation are independent inputs (Dewey et al. 2024 "T||G" notation).
The blur uses half-sample symmetric ("reflect") boundary extension and the resampling border
clamping, so a constant field is preserved at every voxel; zero padding is never used.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
from scipy import ndimage

from mrisr.physics.profiles import (
    Discretization,
    FWHMConvention,
    ProfileKind,
    discrete_fwhm,
    kernel_fwhm_voxels,
    slice_kernel,
)
from mrisr.physics.resample import (
    apply_matrix,
    interpolation_matrix,
    output_length,
    resample_affine,
    same_fov_positions,
)

__all__ = [
    "ThickSliceResult",
    "blur_axis",
    "parse_dewey_notation",
    "reflect_indices",
    "simulate_thick_slices",
    "upsample_to_grid",
]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?"
_DEWEY = re.compile(rf"^\s*(?P<t>{_NUMBER})\s*(?:(?:\|\||‖)\s*(?P<g>[+-]?{_NUMBER}))?\s*$")


def reflect_indices(n: int, pad: int) -> np.ndarray:
    """Source indices of a half-sample symmetric extension of an axis of length n by ``pad`` per side.

    Padded position m ∈ [−pad, n − 1 + pad] reads sample r = m mod 2n if r < n, else 2n − 1 − r
    (… c b a | a b c … x y z | z y x …, i.e. ``scipy.ndimage`` mode "reflect"). The extension is
    periodic with period 2n, so it is defined for any ``pad``, also when the kernel is longer than
    the axis (the axis is then mirrored repeatedly).

    Args:
        n: axis length (≥ 1).
        pad: samples added on each side (≥ 0).

    Returns:
        int64 array of shape (n + 2·pad,).
    """
    m = np.arange(-pad, n + pad, dtype=np.int64)
    r = np.mod(m, 2 * n)
    return np.where(r < n, r, 2 * n - 1 - r)


def blur_axis(x: ArrayT, kernel: np.ndarray, axis: int) -> ArrayT:
    """Convolve ``x`` with a 1-D kernel along ``axis`` (k_f ⊛_a x; docs/physics.md §1, §7).

    Boundary: half-sample symmetric extension (see :func:`reflect_indices`), valid for any kernel
    length, so a constant field is preserved exactly at every voxel including the first and last
    (L − 1)/2 rows and when L exceeds the axis length. The kernel is centred on its middle tap and
    applied as a convolution (flipped), which only matters for asymmetric ``file`` kernels.

    Args:
        x: numpy array or torch tensor of any shape, e.g. (H, W), (D, H, W) or (B, C, D, H, W).
        kernel: odd-length 1-D kernel of shape (L,), HR voxel taps (unit sum for a blur).
        axis: axis to blur (negative values allowed).

    Returns:
        Same type and shape as ``x``. numpy: scipy ``convolve1d(mode="reflect")``, floating dtypes
        kept (others become float64). torch: ``conv1d`` on ``x``'s device and floating dtype,
        batched over all other axes, differentiable.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 1 or k.size % 2 == 0:
        raise ValueError(f"kernel must be 1-D with odd length, got shape {k.shape}")
    if isinstance(x, torch.Tensor):
        xt = x if torch.is_floating_point(x) else x.to(torch.get_default_dtype())
        if k.size == 1:
            return xt * float(k[0])
        moved = torch.movedim(xt, axis, -1)
        n = moved.shape[-1]
        half = (k.size - 1) // 2
        idx = torch.as_tensor(reflect_indices(n, half), device=xt.device)
        padded = moved.reshape(-1, 1, n).index_select(-1, idx)
        weight = torch.as_tensor(k[::-1].copy(), dtype=xt.dtype, device=xt.device).reshape(1, 1, -1)
        out = torch.nn.functional.conv1d(padded, weight).reshape(moved.shape)
        return torch.movedim(out, -1, axis)
    xa = np.asarray(x)
    if not np.issubdtype(xa.dtype, np.floating):
        xa = xa.astype(np.float64)
    if k.size == 1:
        return xa * k[0]
    return ndimage.convolve1d(xa, k, axis=axis, mode="reflect")


def parse_dewey_notation(text: str) -> tuple[float, float]:
    """Parse Dewey et al. (2024) "T||G" slice notation, e.g. "3||1" = 3 mm thick, 1 mm gap.

    Separation S = T + G (docs/physics.md §1): "3||0", "3||0.3", "3||0.5", "3||1" give S = 3.0, 3.3,
    3.5, 4.0 mm. A bare thickness ("3") means no gap; "‖" is accepted for "||"; a negative gap
    means overlapping slices.

    Args:
        text: the notation string.

    Returns:
        ``(thickness_mm, gap_mm)``.

    Raises:
        ValueError: unparsable text or non-positive thickness/separation.
    """
    match = _DEWEY.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"cannot parse slice notation {text!r}; expected 'THICKNESS||GAP' in mm, e.g. '3||1' "
            "(3 mm slices, 1 mm gap) or '3' (no gap)"
        )
    thickness = float(match["t"])
    gap = float(match["g"]) if match["g"] is not None else 0.0
    if thickness <= 0 or thickness + gap <= 0:
        raise ValueError(f"slice notation {text!r} needs thickness > 0 and thickness + gap > 0, e.g. '3||1'")
    return thickness, gap


@dataclass(frozen=True)
class ThickSliceResult:
    """Output of :func:`simulate_thick_slices`.

    Attributes:
        lr: simulated LR volume, same type as the input, ``shape[axis]`` = N_LR.
        affine: 4×4 LR voxel-to-world affine (mm), or None when no affine was given.
        kernel: float64 blur kernel of shape (L,), HR voxel taps.
        step: sampling step s = separation/spacing, HR voxels.
        positions: float64 array (N_LR,), HR-index positions of the LR slice centres.
        fwhm_voxels: kernel FWHM f in HR voxels (discrete FWHM for ``file`` kernels).
    """

    lr: np.ndarray | torch.Tensor
    affine: np.ndarray | None
    kernel: np.ndarray
    step: float
    positions: np.ndarray
    fwhm_voxels: float


def simulate_thick_slices(
    volume: ArrayT,
    axis: int,
    spacing_mm: float,
    thickness_mm: float,
    separation_mm: float | None = None,
    profile: ProfileKind = "slr",
    fwhm_convention: FWHMConvention = "variance",
    discretization: Discretization | None = None,
    support: Literal["default", "parity"] | int = "default",
    slr_tb: float = 16.0,
    kernel_file: str | None = None,
    affine: np.ndarray | None = None,
    order: int = 3,
    n_out: int | None = None,
) -> ThickSliceResult:
    """Simulate a thick-slice LR acquisition along ``axis``: y = S_s(k_f ⊛_a x) (docs/physics.md §1).

    The blur uses the thickness T (kernel FWHM f from :func:`kernel_fwhm_voxels`), the sampling
    uses the separation S (step s = S/Δ, same-FOV, spline order ``order``, border clamping).
    Following radifox ``degrade``, Dewey et al. 2024 and Graf et al. 2024. No noise is added.

    Args:
        volume: HR numpy array or torch tensor of any dimensionality (2-D slice, 3-D volume,
            batched (B, C, ...) tensor).
        axis: through-plane voxel axis of ``volume`` (negative values allowed).
        spacing_mm: HR spacing Δ along ``axis``, mm.
        thickness_mm: slice thickness T (FWHM of the slice profile), mm.
        separation_mm: slice separation S (centre-to-centre), mm; default T (no gap).
        profile: slice-profile kind (``gaussian``, ``rect``, ``slr``, ``file``).
        fwhm_convention: ``variance`` (f = √(T² − Δ²)/Δ) or ``absolute`` (f = T/Δ).
        discretization: ``point``/``area``; None uses the profile's default.
        support: kernel support rule (``default``, ``parity`` or an odd length).
        slr_tb: SLR time-bandwidth product.
        kernel_file: ``.npy`` kernel for ``profile="file"``.
        affine: optional 4×4 HR voxel-to-world affine (mm) of the spatial axes, taken to be the
            last three axes of ``volume`` (all axes when it has fewer than three), so batched
            (B, C, D, H, W) tensors work unchanged.
        order: spline order of the resampling (0, 1 or 3).
        n_out: LR length; default round(N/s).

    Returns:
        :class:`ThickSliceResult` with the LR volume (same type as ``volume``), the updated affine,
        the kernel, the step, the LR slice positions (HR index units) and the kernel FWHM.

    Raises:
        ValueError: s < 1 (that is upsampling, not a thick-slice simulation) or invalid lengths.
    """
    if separation_mm is None:
        separation_mm = thickness_mm
    if not (math.isfinite(separation_mm) and separation_mm > 0):
        raise ValueError(f"separation_mm must be finite and > 0, got {separation_mm!r}")
    if not (math.isfinite(spacing_mm) and spacing_mm > 0):
        raise ValueError(f"spacing_mm must be finite and > 0, got {spacing_mm!r}")
    step = float(separation_mm / spacing_mm)
    if step < 1.0:
        raise ValueError(
            f"slice separation {separation_mm} mm is smaller than the HR spacing {spacing_mm} mm "
            f"(step {step:.4g} < 1): that is upsampling, not a thick-slice simulation"
        )
    if profile == "file":
        kernel = slice_kernel(0.0, "file", kernel_file=kernel_file)
        fwhm = discrete_fwhm(kernel)
    else:
        fwhm = kernel_fwhm_voxels(thickness_mm, spacing_mm, fwhm_convention)
        kernel = slice_kernel(fwhm, profile, discretization, support, slr_tb)

    n_in = volume.shape[axis]
    n_lr = output_length(n_in, step) if n_out is None else int(n_out)
    positions = same_fov_positions(n_in, step, n_lr)
    blurred = blur_axis(volume, kernel, axis)
    lr = apply_matrix(blurred, interpolation_matrix(n_in, positions, order), axis)
    lr_affine = None
    if affine is not None:
        spatial_axis = axis % volume.ndim - max(0, volume.ndim - 3)
        if spatial_axis < 0:
            raise ValueError(f"axis {axis} is not one of the last three (spatial) axes of the volume")
        lr_affine = resample_affine(affine, spatial_axis, step, n_in, n_lr)
    return ThickSliceResult(
        lr=lr, affine=lr_affine, kernel=kernel, step=step, positions=positions, fwhm_voxels=float(fwhm)
    )


def upsample_to_grid(lr: ArrayT, axis: int, step: float, n_out: int, order: int = 3) -> ArrayT:
    """Bring an LR stack back onto the HR grid: y↑ = S_{1/s}(y) (docs/physics.md §1, §3; Graf et al. 2024).

    LR sample j sits at HR position p_j = p_0 + j·s with p_0 = (N − 1)/2 − (N_LR − 1)·s/2 (the
    same-FOV positions of the forward model for an HR axis of length N = ``n_out``), so HR voxel i
    reads the LR spline interpolant at q_i = (i − p_0)/s, border-clamped.

    Args:
        lr: LR numpy array or torch tensor, ``shape[axis]`` = N_LR.
        axis: through-plane axis.
        step: step s of the forward model (HR voxels per LR slice).
        n_out: HR length N along ``axis``.
        order: spline order (0, 1 or 3).

    Returns:
        Same type as ``lr`` with ``shape[axis]`` = N.
    """
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be finite and > 0, got {step!r}")
    n_lr = lr.shape[axis]
    p0 = (n_out - 1) / 2.0 - (n_lr - 1) * float(step) / 2.0
    q = (np.arange(n_out, dtype=np.float64) - p0) / float(step)
    return apply_matrix(lr, interpolation_matrix(n_lr, q, order), axis)
