"""PNG montage of a test volume: LR (nearest) | cubic | SR | HR on a plane containing the through-plane axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from mrisr.callbacks.base import EvaluationCallback, safe_name
from mrisr.core.atomic import save_figure_atomic
from mrisr.io.regrid import resample_to_reference


class MontageCallback(EvaluationCallback):
    """Writes ``<output_dir>/montage_<subject>.png`` for the first ``max_volumes`` test volumes.

    The plane is the one with the most anatomy along the shorter in-plane axis, cropped to the object; the
    through-plane axis runs vertically (index 0 at the bottom) so the thick-slice blocks of the LR input are
    visible. All panels share the HR grey-level window. Under a multi-process strategy the rank that evaluates a
    volume draws it (``written`` lists this rank's files).

    Args:
        output_dir: Directory of the PNG files.
        max_volumes: Number of test volumes (in test-set order, per dataloader) drawn.
    """

    def __init__(self, output_dir: str, max_volumes: int = 3) -> None:
        super().__init__(output_dir, tables={})
        self.max_volumes = max_volumes
        self.written: list[Path] = []

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict[str, Any]) -> None:
        if self.current_item.position >= self.max_volumes:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        hr = outputs["hr"]
        axis = outputs["grid"].axis
        panels = {
            "LR (nearest)": self.baseline(trainer, outputs, "nearest"),
            "cubic": self.baseline(trainer, outputs, "cubic"),
            f"SR ({outputs['method']})": outputs["sr"],
        }
        images = {name: resample_to_reference(v, hr, order=1) for name, v in panels.items()}
        images["HR"] = hr.data
        # Stack along the shorter in-plane axis so the displayed plane is the largest one containing the slice axis.
        stack_axis = min((d for d in range(3) if d != axis), key=lambda d: hr.shape[d])
        vmax = float(np.percentile(hr.data[hr.data > 0], 99.5))
        # The plane with the most anatomy, cropped to the object's bounding box (5-voxel margin).
        foreground = hr.data > 0.05 * vmax
        index = int(np.argmax(foreground.sum(axis=tuple(d for d in range(3) if d != stack_axis))))
        remaining = [d for d in range(3) if d != stack_axis]
        transpose = remaining.index(axis) == 1  # through-plane axis vertical
        mask_plane = np.take(foreground, index, axis=stack_axis)
        mask_plane = mask_plane.T if transpose else mask_plane
        rows, cols = np.nonzero(mask_plane) if mask_plane.any() else (np.arange(2), np.arange(2))
        crop = (
            slice(max(rows.min() - 5, 0), rows.max() + 6),
            slice(max(cols.min() - 5, 0), cols.max() + 6),
        )
        fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6))
        for ax, (name, data) in zip(axes, images.items(), strict=True):
            plane = np.take(data, index, axis=stack_axis)
            plane = (plane.T if transpose else plane)[crop]
            ax.imshow(plane, cmap="gray", vmin=0, vmax=vmax, aspect="equal", interpolation="nearest", origin="lower")
            ax.set_title(name, fontsize=9)
            ax.axis("off")
        fig.suptitle(f"{outputs['name']} — {outputs['setting']}", fontsize=9)
        path = save_figure_atomic(fig, self.output_dir / f"montage_{safe_name(outputs['name'])}.png")
        plt.close(fig)
        self.written.append(path)
