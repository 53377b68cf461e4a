"""PNG montage of a degradation for visual inspection: HR next to several random draws.

Row 1: the test-time degradation (``degradation(volume, seed)``) for consecutive seeds, brought onto the HR grid by
nearest-neighbour resampling through world coordinates so thick slices show as blocks. Row 2 (presets with
``sample_pair``): training pairs synthesised from the same HR plane with generators seeded likewise. The plane is
the one with the most anatomy along the shorter in-plane axis, through-plane axis vertical; all panels share the
HR grey-level window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrisr.core.atomic import save_figure_atomic
from mrisr.io.nifti import Volume
from mrisr.io.regrid import resample_to_reference

__all__ = ["degradation_montage"]


def _title(record: dict[str, Any] | None, seed: int) -> str:
    if not record:
        return f"seed {seed}"
    t, s = record.get("thickness_mm"), record.get("separation_mm")
    parts = [f"seed {seed}"]
    if t is not None:
        parts.append(f"T {t:.3g}")
    if s is not None:
        parts.append(f"S {s:.3g} mm")
    return ", ".join(parts)


def degradation_montage(
    volume: Volume,
    degradation: Any,
    path: str | os.PathLike[str],
    seeds: Sequence[int],
    axis: int,
    training_pairs: bool = True,
) -> Path:
    """Write a PNG grid: HR | draw 1 | … | draw n (test-time), and the same for training pairs.

    Args:
        volume: HR volume.
        degradation: a preset (:class:`~mrisr.degradations.stack.DegradationStack`) or
            :class:`~mrisr.degradations.thick_slice.ThickSlice`.
        path: output PNG.
        seeds: one seed per draw.
        axis: through-plane voxel axis of ``volume``.
        training_pairs: add the row of training pairs when the degradation has ``sample_pair``.

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hr = volume.data.astype(np.float32)
    stack_axis = min((d for d in range(3) if d != axis), key=lambda d: hr.shape[d])
    foreground = hr[hr > 0]
    vmax = float(np.percentile(foreground, 99.5)) if foreground.size else float(hr.max() or 1.0)
    mask = hr > 0.05 * vmax
    index = int(np.argmax(mask.sum(axis=tuple(d for d in range(3) if d != stack_axis))))
    remaining = [d for d in range(3) if d != stack_axis]
    transpose = remaining.index(axis) == 1  # through-plane axis vertical

    def plane_of(data: np.ndarray) -> np.ndarray:
        plane = np.take(data, index, axis=stack_axis)
        return plane.T if transpose else plane

    rows: list[list[tuple[str, np.ndarray]]] = []
    test_row = [("HR", plane_of(hr))]
    for seed in seeds:
        lr = degradation(volume, seed=int(seed))
        record = getattr(degradation, "last_record", None)
        test_row.append((_title(record, int(seed)), plane_of(resample_to_reference(lr, volume, order=0))))
    rows.append(test_row)

    if training_pairs and callable(getattr(degradation, "sample_pair", None)):
        hr_plane = plane_of(hr) / vmax  # rows = through-plane axis
        spacing = float(volume.zooms[axis])
        tensor = torch.from_numpy(np.ascontiguousarray(hr_plane, dtype=np.float32))[None]
        train_row = [("HR (training)", hr_plane * vmax)]
        for seed in seeds:
            generator = torch.Generator().manual_seed(int(seed))
            _, lr_plane = degradation.sample_pair(tensor, spacing, generator)
            train_row.append((f"training pair, seed {seed}", lr_plane[0].numpy() * vmax))
        rows.append(train_row)

    plane_mask = plane_of(mask)
    r, c = np.nonzero(plane_mask) if plane_mask.any() else (np.arange(2), np.arange(2))
    crop = (slice(max(r.min() - 5, 0), r.max() + 6), slice(max(c.min() - 5, 0), c.max() + 6))
    ncols = max(len(row) for row in rows)
    height, width = rows[0][0][1][crop].shape
    panel = 2.8
    row_height = min(panel * height / max(width, 1), 2.5 * panel) + 0.45
    fig, axes = plt.subplots(len(rows), ncols, figsize=(panel * ncols, row_height * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                name, image = row[j]
                ax.imshow(
                    image[crop], cmap="gray", vmin=0, vmax=vmax, aspect="equal", interpolation="nearest", origin="lower"
                )
                ax.set_title(name, fontsize=8)
    setting = getattr(degradation, "setting", type(degradation).__name__)
    fig.suptitle(f"{setting}: test-time draws (top) and training pairs (bottom)", fontsize=9)
    written = save_figure_atomic(fig, Path(path), dpi=110)
    plt.close(fig)
    return written
