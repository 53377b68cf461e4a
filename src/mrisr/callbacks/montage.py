"""PNG montage of a test volume: LR (nearest) | cubic | SR | HR on a plane containing the through-plane axis."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from mrisr.eval.image import resample_to_reference
from mrisr.inference import interpolate_volume

log = logging.getLogger(__name__)


def save_png_atomic(figure: Any, path: Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class MontageCallback(L.Callback):
    """Writes ``<output_dir>/montage_<subject>.png`` for the first ``max_volumes`` test volumes.

    The plane is the central one along the first in-plane axis, so the through-plane axis runs vertically and the
    thick-slice blocks of the LR input are visible. All panels share the HR grey-level window.
    """

    def __init__(self, output_dir: str, max_volumes: int = 3) -> None:
        self.output_dir = Path(output_dir)
        self.max_volumes = max_volumes
        self.written: list[Path] = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.is_global_zero or batch_idx >= self.max_volumes:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        hr = outputs["hr"]
        axis = outputs["grid"].axis
        panels = {
            "LR (nearest)": interpolate_volume(outputs["lr"], outputs["grid"], order=0),
            "cubic": interpolate_volume(outputs["lr"], outputs["grid"], order=3),
            f"SR ({outputs['method']})": outputs["sr"],
        }
        images = {name: resample_to_reference(v, hr, order=1) for name, v in panels.items()}
        images["HR"] = hr.data
        stack_axis = next(d for d in range(3) if d != axis)
        vmax = float(np.percentile(hr.data[hr.data > 0], 99.5))
        fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6))
        for ax, (name, data) in zip(axes, images.items(), strict=True):
            plane = np.take(data, data.shape[stack_axis] // 2, axis=stack_axis)
            remaining = [d for d in range(3) if d != stack_axis]
            if remaining.index(axis) == 1:  # through-plane axis vertical
                plane = plane.T
            ax.imshow(plane, cmap="gray", vmin=0, vmax=vmax, aspect="equal", interpolation="nearest")
            ax.set_title(name, fontsize=9)
            ax.axis("off")
        fig.suptitle(f"{outputs['name']} — {outputs['setting']}", fontsize=9)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in outputs["name"])
        path = save_png_atomic(fig, self.output_dir / f"montage_{safe}.png")
        plt.close(fig)
        self.written.append(path)
