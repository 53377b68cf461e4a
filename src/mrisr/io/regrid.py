"""World-coordinate regridding: resampling one volume onto another's grid, field-of-view masks, and the lossless
reorientation to the closest canonical (RAS) orientation.

Every comparison between volumes on different grids (an SR output and its HR reference, a mask and an image) goes
through these functions, so that grids are related by their affines alone (docs/physics.md §3).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from mrisr.io.nifti import Volume

__all__ = [
    "GRID_ATOL",
    "field_of_view_mask",
    "isotropic_grid",
    "on_grid",
    "ras_volume",
    "reorient_axial",
    "resample_isotropic",
    "resample_to_reference",
    "restore_orientation",
    "same_grid",
]

#: Two grids are identical when shapes match and affines agree to this absolute tolerance (mm).
GRID_ATOL = 1e-6

#: Voxels per resampling chunk (bounds the coordinate arrays to a few hundred MB).
_CHUNK_VOXELS = 1 << 21


def same_grid(a: Volume, b: Volume) -> bool:
    """True when ``a`` and ``b`` have the same shape and affines equal to :data:`GRID_ATOL`."""
    return a.shape == b.shape and bool(np.allclose(a.affine, b.affine, rtol=0.0, atol=GRID_ATOL))


def _lossless_index_map(
    vox: np.ndarray, out_shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Index arrays when ``vox`` (reference voxel → moving voxel, 4×4) maps the grid onto integer
    positions by a signed axis permutation plus integer shift; ``None`` otherwise."""
    lin = vox[:3, :3]
    perm = np.rint(lin)
    if not np.allclose(lin, perm, rtol=0.0, atol=GRID_ATOL):
        return None
    if not np.array_equal(np.abs(perm).sum(axis=0), np.ones(3)) or not np.array_equal(
        np.abs(perm).sum(axis=1), np.ones(3)
    ):
        return None
    shift = np.rint(vox[:3, 3])
    if not np.allclose(vox[:3, 3], shift, rtol=0.0, atol=GRID_ATOL):
        return None
    # moving index along axis r = sign * (reference index along axis c) + shift[r], with perm[r, c] = sign.
    idx: list[np.ndarray] = [np.empty(0, dtype=np.intp)] * 3
    for r in range(3):
        c = int(np.flatnonzero(perm[r])[0])
        sign = int(perm[r, c])
        line = sign * np.arange(out_shape[c], dtype=np.int64) + int(shift[r])
        shape = [1, 1, 1]
        shape[c] = out_shape[c]
        idx[r] = line.reshape(shape)
    return idx[0], idx[1], idx[2]


def resample_to_reference(moving: Volume, reference: Volume, order: int = 3) -> np.ndarray:
    """Sample ``moving`` on the grid of ``reference`` through world coordinates.

    Reference voxel ``v`` is sampled at moving voxel ``inv(A_moving) @ A_reference @ v`` with
    :func:`scipy.ndimage.map_coordinates` (spline order ``order``, prefiltered, ``mode="nearest"``:
    outside the moving field of view the edge is extended, never zero-padded).

    Exact shortcuts (no interpolation): identical grids (same shape, affines equal to 1e-6) return a
    copy of the data; grids related by an axis permutation/flip and an integer voxel shift are
    re-indexed (out-of-range indices clamp to the edge, as ``mode="nearest"`` does).

    Args:
        moving: Volume to resample, data shape ``(X, Y, Z)``.
        reference: Volume whose grid (shape and affine) defines the output.
        order: Spline order 0-5 (0 nearest neighbour, 1 linear, 3 cubic B-spline).

    Returns:
        New array of shape ``reference.shape``: the moving dtype for identical grids and for
        ``order=0``, otherwise float32 (float64 when ``moving`` is float64).
    """
    if not 0 <= order <= 5:
        raise ValueError(f"order must be in 0..5, got {order}")
    data = moving.data
    out_shape = reference.shape
    if same_grid(moving, reference):
        return np.array(data, copy=True)
    vox = np.linalg.inv(moving.affine) @ reference.affine
    lossless = _lossless_index_map(vox, out_shape)
    out_dtype = data.dtype if order == 0 else (np.float64 if data.dtype == np.float64 else np.float32)
    if lossless is not None:
        clamped = tuple(np.clip(ix, 0, n - 1) for ix, n in zip(lossless, data.shape, strict=True))
        return np.asarray(data[clamped], dtype=out_dtype)

    if order == 0:
        src = data
    else:
        src = data.astype(np.float64)
        if order > 1:
            src = ndimage.spline_filter(src, order=order, output=np.float64, mode="nearest")
    out = np.empty(out_shape, dtype=out_dtype)
    for start, stop, coords in _mapped_coordinates(vox, out_shape):
        out[start:stop] = ndimage.map_coordinates(
            src, coords.reshape(3, -1), order=order, mode="nearest", prefilter=False
        ).reshape(stop - start, out_shape[1], out_shape[2])
    return out


def _mapped_coordinates(vox: np.ndarray, out_shape: tuple[int, ...]):
    """Chunks ``(start, stop, coords (3, stop − start, Y, Z))`` of moving-voxel coordinates of reference voxels."""
    plane = out_shape[1] * out_shape[2]
    step = max(1, _CHUNK_VOXELS // max(plane, 1))
    jj, kk = np.meshgrid(
        np.arange(out_shape[1], dtype=np.float64), np.arange(out_shape[2], dtype=np.float64), indexing="ij"
    )
    for start in range(0, out_shape[0], step):
        stop = min(out_shape[0], start + step)
        ii = np.arange(start, stop, dtype=np.float64)[:, None, None]
        yield start, stop, np.stack([vox[r, 0] * ii + vox[r, 1] * jj + vox[r, 2] * kk + vox[r, 3] for r in range(3)])


def field_of_view_mask(moving: Volume, reference: Volume) -> np.ndarray:
    """Boolean ``reference.shape`` array: reference voxel centres inside the moving field of view.

    The field of view of an axis with N voxels is [−½, N − ½] in voxel units (docs/physics.md §3).
    """
    if same_grid(moving, reference):
        return np.ones(reference.shape, dtype=bool)
    vox = np.linalg.inv(moving.affine) @ reference.affine
    inside = np.empty(reference.shape, dtype=bool)
    tol = 1e-6
    for start, stop, coords in _mapped_coordinates(vox, reference.shape):
        ok = np.ones(coords.shape[1:], dtype=bool)
        for axis, n in enumerate(moving.shape):
            ok &= (coords[axis] >= -0.5 - tol) & (coords[axis] <= n - 0.5 + tol)
        inside[start:stop] = ok
    return inside


def reorient_axial(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorient losslessly to the closest canonical (RAS) orientation: axis 2 runs inferior → superior.

    Same result as ``nib.as_closest_canonical`` (axis permutation and flips only, no interpolation).

    Args:
        data: Array of shape ``(X, Y, Z)`` in stored order.
        affine: Voxel-to-world matrix ``(4, 4)`` in mm.

    Returns:
        ``(data_ras, affine_ras)``: a view/copy of ``data`` in RAS order and its affine.
    """
    affine = np.asarray(affine, dtype=np.float64)
    ornt = nib.orientations.io_orientation(affine)
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return np.asarray(data), affine
    out = nib.orientations.apply_orientation(np.asarray(data), ornt)
    return out, affine @ nib.orientations.inv_ornt_aff(ornt, np.shape(data))


def restore_orientation(data_ras: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`reorient_axial`: bring an array computed in RAS order back to the voxel order of ``affine``.

    Args:
        data_ras: Array in the RAS order produced by :func:`reorient_axial` for a volume with ``affine``.
        affine: Voxel-to-world matrix ``(4, 4)`` of the stored volume.

    Returns:
        Contiguous float32 array in the stored voxel order (same shape as the stored volume).
    """
    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt)
    return np.ascontiguousarray(nib.orientations.apply_orientation(data_ras, back), dtype=np.float32)


def ras_volume(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """``volume``'s data as contiguous float32 in RAS order (:func:`reorient_axial`) and the matching affine."""
    data, affine = reorient_axial(np.asarray(volume.data, dtype=np.float32), volume.affine)
    return np.ascontiguousarray(data, dtype=np.float32), affine


def isotropic_grid(volume: Volume, spacing_mm: float = 1.0) -> Volume:
    """An empty volume on a ``spacing_mm`` isotropic grid covering ``volume``'s field of view (same directions).

    The new voxel size is exact (affine columns = unit directions × ``spacing_mm``); the first voxel's outer edge
    coincides with the input's, and the grid has ``floor(n · Δ / spacing_mm)`` voxels per axis.
    """
    zooms = np.asarray(volume.zooms, dtype=np.float64)
    directions = volume.affine[:3, :3] / zooms
    shape = tuple(int(np.floor(n * z / spacing_mm + 1e-6)) for n, z in zip(volume.shape, zooms, strict=True))
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing_mm
    # Outer edge of voxel 0 of the input, moved half a new voxel inwards along each axis.
    edge = volume.affine[:3, :3] @ np.full(3, -0.5) + volume.affine[:3, 3]
    affine[:3, 3] = edge + directions @ np.full(3, 0.5 * spacing_mm)
    return Volume(data=np.zeros(shape, dtype=np.float32), affine=affine)


def resample_isotropic(volume: Volume, spacing_mm: float = 1.0, order: int = 3) -> Volume:
    """``volume`` on its :func:`isotropic_grid` (spline of ``order``); returned unchanged when already on it."""
    if np.allclose(volume.zooms, spacing_mm, atol=1e-4):
        return volume
    grid = isotropic_grid(volume, spacing_mm)
    return Volume(data=resample_to_reference(volume, grid, order=order).astype(np.float32), affine=grid.affine)


def on_grid(moving: Volume, reference: Volume, order: int = 3) -> np.ndarray:
    """The data of ``moving`` on ``reference``'s grid (itself when the grids are identical)."""
    return moving.data if same_grid(moving, reference) else resample_to_reference(moving, reference, order=order)
