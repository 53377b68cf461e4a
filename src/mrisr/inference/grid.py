"""The output grid of every SR method and the one rule that puts data on it with an exact affine.

Every SR method writes onto the same grid: the through-plane axis resampled with the same-FOV rule (docs/physics.md §3)
to the target spacing (default: the in-plane spacing, i.e. isotropic), all other axes and header fields unchanged. The
output therefore overlays the input in world coordinates in any viewer. :func:`volume_on_grid` is the only place where
an SR output's affine is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mrisr.inference.result import InferenceOutput
from mrisr.io.geometry import SliceGeometry
from mrisr.io.nifti import Volume
from mrisr.physics.resample import resample_affine, resample_axis

__all__ = ["InterpolationInferer", "OutputGrid", "interpolate_volume", "output_grid", "volume_on_grid"]


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


def volume_on_grid(data: np.ndarray, source: Volume, grid: OutputGrid) -> Volume:
    """``data`` (float32, ``source``'s shape with ``grid.length`` along ``grid.axis``) as a volume on ``grid``.

    The affine is ``source``'s, resampled along ``grid.axis`` with the same-FOV rule (exact); the header is a copy of
    ``source``'s.
    """
    n_in = source.shape[grid.axis]
    expected = tuple(grid.length if d == grid.axis else n for d, n in enumerate(source.shape))
    if tuple(data.shape) != expected:
        raise ValueError(f"SR data of shape {tuple(data.shape)} does not fit the output grid {expected}")
    affine = resample_affine(source.affine, grid.axis, grid.step, n_in, grid.length)
    return Volume(data=np.asarray(data, dtype=np.float32), affine=affine, header=source.header.copy(), path=None)


def interpolate_volume(volume: Volume, grid: OutputGrid, order: int = 3) -> Volume:
    """Resample ``volume`` along ``grid.axis`` onto ``grid`` with a spline of ``order`` (0 nearest, 1 linear, 3 cubic).

    Returns:
        A new volume (float32) with the exact updated affine and a copy of the input header.
    """
    data = resample_axis(volume.data.astype(np.float64), grid.axis, grid.step, grid.length, order=order)
    return volume_on_grid(np.asarray(data, dtype=np.float32), volume, grid)


@dataclass(frozen=True)
class InterpolationInferer:
    """Spline interpolation of the input onto the output grid (the inferer of the interpolation baselines).

    Attributes:
        order: spline order, 0 = nearest neighbour, 1 = linear, 3 = cubic B-spline.
    """

    order: int = 3

    def __call__(
        self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid, generator: torch.Generator | None = None
    ) -> InferenceOutput:
        return InferenceOutput(sr=interpolate_volume(volume, grid, order=self.order))
