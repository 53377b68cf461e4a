"""PRETTIER volume reconstruction: ×s natural-image networks on windows of adjacent slices (docs/models.md §2.7–2.8).

PRETTIER (Giraldo et al. 2024) feeds three adjacent slices as pseudo-RGB to a ×4 network that upsamples both plane
axes. Its "v1" reconstruction with the edge fixes of docs/models.md §2.7–2.8: for each in-plane axis as slicing axis,
contiguous ``C``-slice items (C = 1 or 3) run through the net at its native factor, are resampled onto the requested
output grid (through-plane: the same-FOV positions of the grid, any non-integer factor; in-plane: back to the input
size), clamped to [0, 1], and the per-slice channel predictions are merged with weights 0.25 / 0.5 / 0.25 divided by
the weights actually present (no darkening of the first and last slices). The two slicing directions are averaged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mrisr.inference.grid import OutputGrid, volume_on_grid
from mrisr.inference.planes import other_axes, plane_batches, restack
from mrisr.inference.result import InferenceOutput
from mrisr.io.geometry import SliceGeometry
from mrisr.io.intensity import IntensityRule
from mrisr.io.nifti import Volume
from mrisr.physics.resample import apply_matrix, same_fov_positions

__all__ = ["CHANNEL_WEIGHTS", "ThreeSliceInferer", "linear_resize_matrix", "reconstruct_volume"]

#: Fraction of clamped output values above which an inference warns (the net's output range is off: e.g. a net that
#: did not learn, or an intensity rule other than the one it was trained with).
CLAMP_WARNING_FRACTION = 0.05

#: Weights of the R, G, B predictions of one slice (docs/models.md §2.7 step 5); 1-channel items predict once.
CHANNEL_WEIGHTS: dict[int, tuple[float, ...]] = {1: (1.0,), 3: (0.25, 0.5, 0.25)}


def linear_resize_matrix(n_in: int, positions: np.ndarray, support: float) -> np.ndarray:
    """Antialiased linear (triangle-kernel) resampling matrix ``(len(positions), n_in)``.

    Output sample m is ``Σ_i w_i x_i / Σ_i w_i`` with ``w_i = max(0, 1 − |u_m − i| / s)``, ``u_m`` its position in
    input pixel indices and ``s = max(1, support)`` (the output spacing in input pixels when downsampling). Taps
    outside the input are dropped and the rest renormalised (edge clamp). For same-FOV integer-ratio resizes this
    equals PyTorch's antialiased bilinear resize; it also handles the exact, possibly non-integer, output grids of
    :class:`~mrisr.inference.grid.OutputGrid`.
    """
    s = max(1.0, float(support))
    u = np.asarray(positions, dtype=np.float64)[:, None]
    i = np.arange(n_in, dtype=np.float64)[None, :]
    w = np.clip(1.0 - np.abs(u - i) / s, 0.0, None)
    total = w.sum(1, keepdims=True)
    nearest = np.clip(np.rint(u[:, 0]), 0, n_in - 1).astype(int)
    empty = total[:, 0] <= 0
    w[empty, nearest[empty]] = 1.0  # positions beyond the border by more than the support: clamp
    total = w.sum(1, keepdims=True)
    return w / total


@torch.inference_mode()
def reconstruct_volume(
    net: Callable[[torch.Tensor], torch.Tensor],
    volume: torch.Tensor,
    axis: int,
    grid: OutputGrid,
    in_channels: int = 3,
    native_scale: int = 4,
    batch_size: int = 6,
    merge: str = "weighted",
) -> tuple[torch.Tensor, float]:
    """PRETTIER v1 volume reconstruction (module docstring) on normalised intensities.

    Args:
        net: ``(B, C, r, w) → (B, C, native_scale·r, native_scale·w)`` (eval mode, on ``volume``'s device,
            intensity wrapping included).
        volume: ``(X, Y, Z)`` normalised LR intensities.
        axis: through-plane axis (rows of every item).
        grid: output grid along ``axis`` (``length`` samples at the same-FOV positions of ``step``).
        in_channels: contiguous slices per item (1, or 3 for pseudo-RGB).
        native_scale: the net's upsampling factor in both plane axes.
        batch_size: items per forward pass.
        merge: ``weighted`` (0.25 / 0.5 / 0.25 over the predictions present) or ``center`` (G channel only).

    Returns:
        ``(prediction, clamped_fraction)``: ``(X, Y, Z)`` with ``axis`` of length ``grid.length``, float32 in [0, 1],
        the mean of the two slicing directions; and the fraction of resampled net outputs that fell outside [0, 1]
        and were clamped (a large fraction means the net's output range is off).
    """
    if in_channels not in CHANNEL_WEIGHTS:
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if merge not in ("weighted", "center"):
        raise ValueError(f"merge must be 'weighted' or 'center', got {merge!r}")
    n = volume.shape[axis]
    positions = same_fov_positions(n, grid.step, grid.length)
    # LR position p ↔ net-output row (p + 0.5)·scale − 0.5; antialias support = output spacing in net-output rows.
    row_matrix = linear_resize_matrix(
        native_scale * n, (positions + 0.5) * native_scale - 0.5, grid.step * native_scale
    )
    weights = list(CHANNEL_WEIGHTS[in_channels])
    # "center": only the G prediction, except for the first and last slices, which have none (their R / B is used).
    centre = [float(ch == in_channels // 2) for ch in range(in_channels)] if merge == "center" else None
    from mrisr.utils.progress import progress_bar

    outputs = []
    clamped = total_values = 0
    items_total = sum(volume.shape[b] - in_channels + 1 for b in other_axes(axis))
    bar = progress_bar(total=items_total, desc="PRETTIER items", unit="item")
    for b in other_axes(axis):
        c = 3 - axis - b
        n_b, n_c = volume.shape[b], volume.shape[c]
        if n_b < in_channels:
            raise ValueError(f"{n_b} slices along axis {b} < in_channels = {in_channels}")
        col_matrix = linear_resize_matrix(native_scale * n_c, (np.arange(n_c) + 0.5) * native_scale - 0.5, native_scale)
        total = volume.new_zeros((n_b, grid.length, n_c), dtype=torch.float32)
        weight_sum = volume.new_zeros((n_b, 1, 1), dtype=torch.float32)
        total_c, weight_c = torch.zeros_like(total), torch.zeros_like(weight_sum)
        for ks, items in plane_batches(volume, axis, b, batch_size, window=in_channels):
            out = net(items.float()).float()
            bar.update(len(ks))
            out = apply_matrix(apply_matrix(out, row_matrix, 2), col_matrix, 3)
            clamped += int(((out < 0) | (out > 1)).sum())
            total_values += out.numel()
            out = out.clamp(0.0, 1.0)
            ones = torch.ones((len(ks), 1, 1), device=volume.device)
            for ch, w in enumerate(weights):
                total.index_add_(0, ks + ch, w * out[:, ch])
                weight_sum.index_add_(0, ks + ch, w * ones)
                if centre is not None and centre[ch]:
                    total_c.index_add_(0, ks + ch, out[:, ch])
                    weight_c.index_add_(0, ks + ch, ones)
        merged = total / weight_sum
        if centre is not None:
            merged = torch.where(weight_c > 0, total_c / weight_c.clamp_min(1.0), merged)
        outputs.append(restack(merged, axis, b))
    bar.close()
    return torch.stack(outputs).mean(0), clamped / max(total_values, 1)


@dataclass
class ThreeSliceInferer:
    """PRETTIER's inferer: the intensity rule, :func:`reconstruct_volume`, the inverse scaling; deterministic.

    Attributes:
        predict: the net at its native factor on normalised items ``(B, C, r, w) → (B, C, s·r, s·w)`` (eval mode).
        intensity: the intensity rule of the training pairs (PRETTIER: 1.25 × the LR foreground P99.5).
        in_channels: adjacent slices per item (1 or 3).
        native_scale: the net's factor s.
        batch_size: items per forward pass.
        merge: ``weighted`` or ``center``.
        device: device of the net.
    """

    predict: Callable[[torch.Tensor], torch.Tensor]
    intensity: IntensityRule
    in_channels: int = 3
    native_scale: int = 4
    batch_size: int = 6
    merge: str = "weighted"
    device: torch.device | str = "cpu"

    def __call__(
        self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid, generator: torch.Generator | None = None
    ) -> InferenceOutput:
        scaling = self.intensity.scaling(volume.data, source=volume.path)
        x = torch.from_numpy(np.ascontiguousarray(scaling.apply(volume.data), dtype=np.float32)).to(self.device)
        pred, clamped = reconstruct_volume(
            self.predict,
            x,
            grid.axis,
            grid,
            in_channels=self.in_channels,
            native_scale=self.native_scale,
            batch_size=int(self.batch_size),
            merge=self.merge,
        )
        data = scaling.invert(pred.cpu().numpy()).astype(np.float32)
        warnings = []
        if clamped > CLAMP_WARNING_FRACTION:
            warnings.append(
                f"{clamped:.0%} of the network's outputs fell outside [0, 1] and were clamped: its output range is "
                "off (an untrained net, or another intensity rule than the one it was trained with)"
            )
        return InferenceOutput(
            sr=volume_on_grid(data, volume, grid), details={"clamped_fraction": clamped}, warnings=warnings
        )
