"""Conditional-diffusion volume inference (Palette / Graf et al. 2024, docs/models.md §3.5).

Cubic same-FOV resampling onto the output grid, the intensity rule (per volume, never per batch), reverse diffusion on
every plane that contains the through-plane axis with **one noise map per volume, orientation and draw** (shared by all
its planes, which keeps neighbouring planes consistent), optionally a second pass over the orthogonal plane orientation
(averaged), and ``samples`` independent draws whose mean is the output and whose per-voxel standard deviation is an
uncertainty map.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from mrisr.diffusion.sampling import from_signed, to_signed
from mrisr.inference.grid import OutputGrid, interpolate_volume, volume_on_grid
from mrisr.inference.planes import other_axes, plane_batches, restack
from mrisr.inference.result import InferenceOutput
from mrisr.io.geometry import SliceGeometry
from mrisr.io.intensity import IntensityRule
from mrisr.io.nifti import Volume

__all__ = ["DiffusionPlaneInferer", "stack_axes"]

#: ``(condition (B, 1, H, W) in [−1, 1], noise (1 or B, 1, H, W), generator) → sample (B, 1, H, W) in [−1, 1]``.
PlaneSampler = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
#: ``((H, W), generator) → one (1, 1, H, W) noise map``.
NoiseMap = Callable[[tuple[int, int], torch.Generator], torch.Tensor]


def stack_axes(volume: Volume, axis: int, passes: int) -> list[int]:
    """Axes along which planes containing ``axis`` are stacked, first the orientation the model was trained on.

    Training planes are sagittal (docs/models.md §3.3): when an in-plane axis of ``volume`` runs left–right, the planes
    are stacked along it; otherwise along the first in-plane axis. ``passes`` = 2 adds the other one.
    """
    others = other_axes(axis)
    codes = nib.aff2axcodes(volume.affine)
    first = next((d for d in others if codes[d] in ("L", "R")), others[0])
    return [first, *[d for d in others if d != first]][: int(passes)]


@dataclass
class DiffusionPlaneInferer:
    """The diffusion inferer (module docstring).

    Attributes:
        sample: the system's plane sampler (EMA network, sampler, formulation).
        noise: draws one noise map of a plane size from the generator.
        intensity: the intensity rule of the training pairs.
        size_multiple: planes are padded (reflect, else replicate) to multiples of this (the U-Net's).
        samples: independent draws per volume.
        passes: 1 (the training orientation) or 2 (both orientations, averaged).
        batch_size: planes per network call.
        progress: show a progress bar over the planes.
        label: the progress bar's label.
    """

    sample: PlaneSampler
    noise: NoiseMap
    intensity: IntensityRule
    size_multiple: int = 1
    samples: int = 1
    passes: int = 1
    batch_size: int = 16
    progress: bool = True
    label: str = "diffusion"

    def _orientation(
        self, x: torch.Tensor, axis: int, stack_axis: int, generator: torch.Generator, bar: Any
    ) -> torch.Tensor:
        """Sample every plane stacked along ``stack_axis`` of ``x`` (X, Y, Z) in [−1, 1]; same shape out."""
        rows, cols = x.shape[axis], x.shape[3 - axis - stack_axis]
        pad_r, pad_c = (-rows) % self.size_multiple, (-cols) % self.size_multiple
        mode = "reflect" if pad_r < rows and pad_c < cols else "replicate"
        noise = self.noise((rows + pad_r, cols + pad_c), generator)  # one map for the whole volume
        out = []
        for _, chunk in plane_batches(x, axis, stack_axis, int(self.batch_size)):
            if pad_r or pad_c:
                chunk = F.pad(chunk, (0, pad_c, 0, pad_r), mode=mode)
            out.append(self.sample(chunk, noise, generator)[:, :, :rows, :cols].float().cpu())
            bar.update(chunk.shape[0])
        return restack(torch.cat(out).squeeze(1), axis, stack_axis)

    def __call__(
        self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid, generator: torch.Generator
    ) -> InferenceOutput:
        from mrisr.diffusion.uncertainty import sample_statistics
        from mrisr.utils.progress import progress_bar

        scaling = self.intensity.scaling(volume.data, source=volume.path)
        upsampled = interpolate_volume(volume, grid, order=3)
        x = to_signed(torch.from_numpy(scaling.apply(upsampled.data)).float())
        axes = stack_axes(volume, grid.axis, int(self.passes))
        total = int(self.samples) * sum(x.shape[a] for a in axes)
        draws = []
        started = time.perf_counter()
        bar = progress_bar(total=total, desc=f"{self.label} planes", unit="plane", show=bool(self.progress))
        with bar:
            for _ in range(int(self.samples)):
                passes = [self._orientation(x, grid.axis, a, generator, bar) for a in axes]
                draws.append(from_signed(torch.stack(passes).mean(0)))
        stack = torch.stack(draws)
        uncertainty = None
        if stack.shape[0] > 1:
            mean, std = sample_statistics(stack)
            uncertainty = volume_on_grid((std.numpy() * scaling.scale).astype(np.float32), volume, grid)
        else:
            mean = stack[0]
        data = scaling.invert(mean.numpy()).astype(np.float32)
        details = {
            "samples": int(self.samples),
            "passes": int(self.passes),
            "planes": total,
            "sampling_seconds": round(time.perf_counter() - started, 3),
        }
        return InferenceOutput(sr=volume_on_grid(data, volume, grid), uncertainty=uncertainty, details=details)
