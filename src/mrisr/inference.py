"""Output grids of through-plane super-resolution and the model-independent inference helpers.

Every SR method writes onto the same grid: the through-plane axis resampled with the same-FOV rule (physics.md §3)
to the target spacing (default: the in-plane spacing, i.e. isotropic), all other axes and header fields unchanged.
The output therefore overlays the input in world coordinates in any viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from mrisr.io.geometry import SliceGeometry
from mrisr.io.nifti import Volume
from mrisr.physics.resample import resample_affine, resample_axis


@dataclass(frozen=True)
class OutputGrid:
    """Through-plane output grid of an SR volume.

    Attributes:
        axis: through-plane voxel axis.
        step: sampling step in input (LR) voxels, < 1 for upsampling (= target spacing / separation).
        length: number of output samples along ``axis``.
        spacing_mm: output spacing along ``axis`` (mm).
    """

    axis: int
    step: float
    length: int
    spacing_mm: float


def output_grid(geometry: SliceGeometry, n_slices: int, target_spacing_mm: float | None = None) -> OutputGrid:
    """Grid for ``n_slices`` LR slices of ``geometry`` resampled to ``target_spacing_mm`` (default in-plane Δ).

    The length is ``round(n_slices · S / Δ)``: the output covers the LR field of view, centred on it.
    """
    target = geometry.inplane_spacing_mm if target_spacing_mm is None else float(target_spacing_mm)
    if target <= 0:
        raise ValueError(f"target spacing must be > 0 mm, got {target}")
    step = target / geometry.separation_mm
    length = max(1, round(n_slices * geometry.separation_mm / target))
    return OutputGrid(axis=geometry.axis, step=step, length=length, spacing_mm=target)


def interpolate_volume(volume: Volume, grid: OutputGrid, order: int = 3) -> Volume:
    """Resample ``volume`` along ``grid.axis`` onto ``grid`` with a spline of ``order`` (0 nearest, 1 linear, 3 cubic).

    Returns:
        A new volume (float32) with the exact updated affine and a copy of the input header.
    """
    n_in = volume.shape[grid.axis]
    data = resample_axis(volume.data.astype(np.float64), grid.axis, grid.step, grid.length, order=order)
    affine = resample_affine(volume.affine, grid.axis, grid.step, n_in, grid.length)
    return Volume(data=np.asarray(data, dtype=np.float32), affine=affine, header=volume.header.copy(), path=None)


@runtime_checkable
class VolumeSuperResolver(Protocol):
    """Anything that turns a thick-slice volume into a volume on an :class:`OutputGrid`."""

    def super_resolve(self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid) -> Volume:
        """Return the super-resolved volume on ``grid`` (affine from :func:`interpolate_volume`)."""
        ...
