"""Volume inference with 2-D networks on planes that contain the through-plane axis (rows)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


@torch.inference_mode()
def predict_planes(
    net: Callable[[torch.Tensor], torch.Tensor],
    volume: torch.Tensor,
    axis: int,
    batch_size: int = 16,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Apply ``net`` to every plane containing ``axis``, stacked along each of the two other axes, and average.

    The two passes are the two orthogonal through-plane orientations of SMORE (Zhao et al. 2021, docs/models.md §1.6).
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
    others = [d for d in range(3) if d != axis]
    outputs = []
    for stack_axis in others:
        column_axis = next(d for d in others if d != stack_axis)
        planes = volume.permute(stack_axis, axis, column_axis).unsqueeze(1)  # (N, 1, rows, cols)
        chunks = []
        for start in range(0, planes.shape[0], batch_size):
            chunk = planes[start : start + batch_size].contiguous()
            with torch.autocast(
                volume.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
            ):
                chunks.append(net(chunk).float())
        pred = torch.cat(chunks).squeeze(1)  # (N, rows', cols) in (stack, axis, column) order
        outputs.append(pred.permute(*np.argsort([stack_axis, axis, column_axis]).tolist()))
    return torch.stack(outputs).mean(0)
