"""Volume inference with 2-D networks on planes that contain the through-plane axis (rows).

* :func:`plane_batches` / :func:`restack` — the one plane loop of mrisr: a volume cut into planes that contain the
  thick-slice axis (rows) and one in-plane axis (columns), stacked along the other in-plane axis, served in batches
  (optionally as windows of adjacent planes, PRETTIER's pseudo-RGB items), and put back.
* :func:`predict_planes` — a network over every such plane along both in-plane axes, the two predictions averaged (the
  two orthogonal through-plane orientations of SMORE, Zhao et al. 2021, docs/models.md §1.6).
* :class:`PlaneInferer` — intensity rule, plane prediction and the output grid: the inferer of supervised, zero-shot
  and prior networks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from mrisr.inference.grid import OutputGrid, interpolate_volume, volume_on_grid
from mrisr.inference.result import InferenceOutput
from mrisr.io.geometry import SliceGeometry
from mrisr.io.intensity import IntensityRule
from mrisr.io.nifti import Volume
from mrisr.physics.resample import resample_axis

__all__ = ["PlaneInferer", "PlanePredictor", "plane_batches", "predict_planes", "restack"]

#: A 2-D network on normalised planes: ``(B, C, rows, cols) → (B, C, rows', cols')``.
PlanePredictor = Callable[[torch.Tensor], torch.Tensor]


def _plane_order(axis: int, stack_axis: int) -> tuple[int, int, int]:
    """Axis permutation (stack, through-plane, column) of a volume."""
    if stack_axis == axis or not 0 <= stack_axis < 3:
        raise ValueError(f"stack axis {stack_axis} must be an in-plane axis of through-plane axis {axis}")
    return stack_axis, axis, 3 - axis - stack_axis


def plane_batches(
    volume: torch.Tensor, axis: int, stack_axis: int, batch_size: int, window: int = 1
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of planes of ``volume`` (X, Y, Z) containing ``axis``, stacked along ``stack_axis``.

    Args:
        volume: ``(X, Y, Z)`` tensor.
        axis: through-plane axis (rows of every plane).
        stack_axis: in-plane axis along which the planes are stacked; the third axis gives the columns.
        batch_size: items per batch.
        window: adjacent planes per item (channels); item k holds planes k … k + window − 1.

    Yields:
        ``(first_planes, items)``: the index of each item's first plane ``(B,)`` and the items
        ``(B, window, rows, cols)`` (contiguous).
    """
    planes = volume.permute(*_plane_order(axis, stack_axis))  # (N, rows, cols)
    n_items = planes.shape[0] - window + 1
    if n_items < 1:
        raise ValueError(f"{planes.shape[0]} planes along axis {stack_axis} < window {window}")
    offsets = torch.arange(window, device=volume.device)
    for start in range(0, n_items, batch_size):
        first = torch.arange(start, min(start + batch_size, n_items), device=volume.device)
        if window == 1:
            items = planes[start : start + len(first)].unsqueeze(1)
        else:
            items = planes[first[:, None] + offsets[None, :]]
        yield first, items.contiguous()


def restack(planes: torch.Tensor, axis: int, stack_axis: int) -> torch.Tensor:
    """Inverse of the plane layout of :func:`plane_batches`: ``(N, rows, cols)`` → the volume's axis order."""
    return planes.permute(*np.argsort(_plane_order(axis, stack_axis)).tolist())


def other_axes(axis: int) -> list[int]:
    """The two in-plane axes of through-plane ``axis``, ascending."""
    return [d for d in range(3) if d != axis]


@torch.inference_mode()
def predict_planes(
    net: PlanePredictor,
    volume: torch.Tensor,
    axis: int,
    batch_size: int = 16,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Apply ``net`` to every plane containing ``axis``, stacked along each of the two other axes, and average.

    ``net`` maps ``(B, 1, rows, cols) → (B, 1, rows', cols)``; ``rows'`` may differ from ``rows`` (networks that
    upsample the thick-slice axis themselves), but must be the same for both orientations.

    Args:
        net: the 2-D network (already in eval mode, on the volume's device).
        volume: ``(X, Y, Z)`` normalised intensities.
        axis: through-plane axis of ``volume``.
        batch_size: planes per forward pass.
        autocast_dtype: run the network under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``).

    Returns:
        ``(X, Y, Z')`` float32 prediction with ``Z'`` = output rows along ``axis``; mean of the two orientations.
    """
    outputs = []
    for stack_axis in other_axes(axis):
        chunks = []
        for _, items in plane_batches(volume, axis, stack_axis, batch_size):
            with torch.autocast(
                volume.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
            ):
                chunks.append(net(items).float())
        outputs.append(restack(torch.cat(chunks).squeeze(1), axis, stack_axis))
    return torch.stack(outputs).mean(0)


@dataclass
class PlaneInferer:
    """A 2-D network over the planes of a volume that contain the through-plane axis, both orientations averaged.

    Steps: the intensity rule's scaling of the input (raw → network scale); the network's input — the input cubic
    B-spline-interpolated onto the output grid (``rows="output"``: supervised networks that refine an interpolation) or
    the input on its own grid (``rows="input"``: networks that upsample the thick-slice axis themselves, whose rows are
    then resampled onto the output grid with the same-FOV rule when their count differs); :func:`predict_planes`; the
    inverse scaling; :func:`~mrisr.inference.grid.volume_on_grid`. Deterministic.

    Attributes:
        predict: ``(planes, geometry) → prediction`` on normalised intensities (eval mode, on ``device``).
        intensity: the intensity rule the network was trained with.
        rows: ``output`` or ``input`` (see above).
        batch_size: planes per forward pass.
        autocast_dtype: autocast dtype of the network (``None`` = float32).
        device: device of the network.
    """

    predict: Callable[[torch.Tensor, SliceGeometry], torch.Tensor]
    intensity: IntensityRule
    rows: Literal["output", "input"] = "output"
    batch_size: int = 16
    autocast_dtype: torch.dtype | None = None
    device: torch.device | str = "cpu"

    def __call__(
        self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid, generator: torch.Generator | None = None
    ) -> InferenceOutput:
        scaling = self.intensity.scaling(volume.data, source=volume.path)
        if self.rows == "output":
            source = interpolate_volume(volume, grid, order=3).data
        else:
            source = volume.data.astype(np.float32)
        x = torch.from_numpy(np.ascontiguousarray(scaling.apply(source), dtype=np.float32)).to(self.device)
        pred = predict_planes(
            lambda planes: self.predict(planes, geometry), x, grid.axis, int(self.batch_size), self.autocast_dtype
        )
        if pred.shape[grid.axis] != grid.length:  # target spacing other than the net's own: same-FOV resize
            net_spacing = geometry.separation_mm * volume.shape[grid.axis] / pred.shape[grid.axis]
            pred = resample_axis(pred.double(), axis=grid.axis, step=grid.spacing_mm / net_spacing, n_out=grid.length)
        data = scaling.invert(pred.float().cpu().numpy()).astype(np.float32)
        return InferenceOutput(sr=volume_on_grid(data, volume, grid))
