"""Same-FOV resampling along one voxel axis and the matching affine update (docs/physics.md §3).

Index convention: voxel i covers [i − ½, i + ½], so an axis of N voxels spans the field of view
[−½, N − ½]. Resampling with step d (input voxels per output voxel; d > 1 downsamples, d < 1
upsamples) to N' samples places output sample j at the input-index position

    p_j = (N − 1)/2 + (j − (N' − 1)/2) · d,

so the FOV centre (N − 1)/2 maps onto itself (radifox ``resize``/``update_affine`` same-FOV
convention). Interpolation is a linear operator in the data: a dense (N', N) matrix built once per
geometry from ``scipy.ndimage.map_coordinates`` (spline prefilter on, ``mode="nearest"``, i.e.
border clamping, never zero padding) and applied to numpy arrays or torch tensors alike, so both
paths give the same numbers and the torch path is batched and differentiable.
"""

from __future__ import annotations

import functools
from typing import TypeVar

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "interpolation_matrix",
    "output_length",
    "resample_affine",
    "resample_axis",
    "same_fov_positions",
]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def output_length(n_in: int, step: float) -> int:
    """Number of same-FOV output samples N' = max(1, round(N/d)) (docs/physics.md §3).

    Args:
        n_in: input length N (voxels).
        step: step d in input voxels (> 0).

    Returns:
        Output length N'.
    """
    _check_step(step)
    return max(1, round(n_in / step))


def same_fov_positions(n_in: int, step: float, n_out: int | None = None) -> np.ndarray:
    """Input-index positions p_j of the same-FOV output samples (docs/physics.md §3).

    Args:
        n_in: input length N (voxels).
        step: step d in input voxels (> 0).
        n_out: output length N'; default :func:`output_length`.

    Returns:
        float64 array of shape (N',): p_j = (N − 1)/2 + (j − (N' − 1)/2)·d.
    """
    _check_step(step)
    if n_out is None:
        n_out = output_length(n_in, step)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"lengths must be >= 1, got n_in={n_in}, n_out={n_out}")
    j = np.arange(n_out, dtype=np.float64)
    return (n_in - 1) / 2.0 + (j - (n_out - 1) / 2.0) * float(step)


def interpolation_matrix(n_in: int, positions: np.ndarray, order: int = 3) -> np.ndarray:
    """Linear operator of 1-D spline interpolation at ``positions`` (docs/physics.md §3).

    Row j holds the weights that ``scipy.ndimage.map_coordinates(x, [positions], order=order,
    mode="nearest")`` (with the spline prefilter for order ≥ 2) applies to the input samples to
    produce output j. Built by interpolating the identity basis; positions outside [0, N − 1] are
    border-clamped. Rows are renormalised to sum to 1, so a flat field is preserved exactly.
    Cached per (N, positions, order).

    Args:
        n_in: input length N (voxels).
        positions: output positions in input-index units, shape (N',).
        order: spline order, 0 (nearest), 1 (linear) or 3 (cubic B-spline); 2, 4, 5 also work.

    Returns:
        Read-only float64 array of shape (N', N).
    """
    pos = np.ascontiguousarray(np.asarray(positions, dtype=np.float64).reshape(-1))
    if not np.all(np.isfinite(pos)):
        raise ValueError("interpolation positions must be finite")
    if int(order) not in range(6):
        raise ValueError(f"spline order must be in 0..5, got {order}")
    if n_in < 1:
        raise ValueError(f"n_in must be >= 1, got {n_in}")
    return _interpolation_matrix_cached(int(n_in), pos.tobytes(), int(order))


@functools.lru_cache(maxsize=256)
def _interpolation_matrix_cached(n_in: int, positions_bytes: bytes, order: int) -> np.ndarray:
    pos = np.frombuffer(positions_bytes, dtype=np.float64)
    if n_in == 1:
        matrix = np.ones((pos.size, 1))
    else:
        # Interpolate every basis vector e_k at once: a 2-D map_coordinates over (position, k)
        # evaluated at integer k reproduces the samples along k (an interpolating spline is exact
        # at its knots), so column k of the result is the response to e_k.
        basis = np.eye(n_in)
        rows = np.broadcast_to(pos[:, None], (pos.size, n_in))
        cols = np.broadcast_to(np.arange(n_in, dtype=np.float64)[None, :], (pos.size, n_in))
        matrix = ndimage.map_coordinates(basis, [rows, cols], order=order, mode="nearest", prefilter=True)
        matrix[np.abs(matrix) < 1e-14] = 0.0
        matrix /= matrix.sum(axis=1, keepdims=True)
    matrix.flags.writeable = False
    return matrix


def apply_matrix(x: ArrayT, matrix: np.ndarray, axis: int) -> ArrayT:
    """Apply a (N', N) resampling matrix along ``axis`` of a numpy array or torch tensor.

    Args:
        x: input of any shape with ``x.shape[axis] == N``.
        matrix: float64 array of shape (N', N).
        axis: axis to resample (negative values allowed).

    Returns:
        Same type as ``x``; shape with ``axis`` replaced by N'. numpy: floating inputs keep their
        dtype (computed in float64), others become float64. torch: computed on ``x``'s device in its
        floating dtype (default dtype for integer tensors); differentiable.
    """
    if x.shape[axis] != matrix.shape[1]:
        raise ValueError(f"axis {axis} has length {x.shape[axis]}, the matrix expects {matrix.shape[1]}")
    if isinstance(x, torch.Tensor):
        xt = x if torch.is_floating_point(x) else x.to(torch.get_default_dtype())
        m = torch.tensor(matrix, dtype=xt.dtype, device=xt.device)
        return torch.movedim(torch.movedim(xt, axis, -1) @ m.T, -1, axis)
    xa = np.asarray(x)
    out_dtype = xa.dtype if np.issubdtype(xa.dtype, np.floating) else np.float64
    moved = np.ascontiguousarray(np.moveaxis(xa.astype(np.float64, copy=False), axis, -1))
    # One 2-D GEMM: numpy's stacked (3-D @ 2-D) matmul is up to ~100x slower for long last axes.
    flat = moved.reshape(-1, moved.shape[-1]) @ matrix.T
    out = np.moveaxis(flat.reshape(*moved.shape[:-1], matrix.shape[0]), -1, axis)
    return out.astype(out_dtype, copy=False)


def resample_axis(
    x: ArrayT,
    axis: int,
    step: float,
    n_out: int | None = None,
    order: int = 3,
) -> ArrayT:
    """Same-FOV resampling of one axis with step ``step`` (docs/physics.md §3).

    Output sample j is the spline interpolant of ``x`` at input position p_j (see
    :func:`same_fov_positions`), border-clamped. ``step`` > 1 downsamples (LR simulation, step =
    s), ``step`` < 1 upsamples (SR output grid, step = 1/s).

    Args:
        x: numpy array or torch tensor of any shape (e.g. (H, W), (D, H, W), (B, C, D, H, W)).
        axis: axis to resample.
        step: step d in input voxels (> 0).
        n_out: output length; default round(N/d).
        order: spline order (0, 1 or 3).

    Returns:
        Same type as ``x`` with ``x.shape[axis]`` replaced by the output length.
    """
    n_in = x.shape[axis]
    positions = same_fov_positions(n_in, step, n_out)
    return apply_matrix(x, interpolation_matrix(n_in, positions, order), axis)


def resample_affine(affine: np.ndarray, axis: int, step: float, n_in: int, n_out: int) -> np.ndarray:
    """Voxel-to-world affine after same-FOV resampling of ``axis`` (docs/physics.md §3; radifox).

    A'[:3, a] = A[:3, a]·d and A'[:3, 3] = A[:3, 3] + A[:3, a]·p_0 with p_0 the first same-FOV
    position; the other columns are unchanged. The world position of the FOV centre is invariant
    and the zoom along ``axis`` is multiplied by d.

    Args:
        affine: 4×4 voxel-to-world affine of the input (mm).
        axis: resampled voxel axis (0, 1 or 2; negative values count from 3).
        step: step d in input voxels.
        n_in: input length along ``axis``.
        n_out: output length along ``axis``.

    Returns:
        float64 array of shape (4, 4).
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {a.shape}")
    ax = axis % 3
    p0 = same_fov_positions(n_in, step, n_out)[0]
    out = a.copy()
    out[:3, 3] = a[:3, 3] + a[:3, ax] * p0
    out[:3, ax] = a[:3, ax] * float(step)
    return out


def _check_step(step: float) -> None:
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"resampling step must be finite and > 0, got {step!r}")
