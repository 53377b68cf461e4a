"""Synthetic whole-volume test items (the SR systems' test-step contract) and a data module that serves them."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from mrisr.degradations.thick_slice import ThickSlice
from mrisr.inference import interpolate_volume, output_grid
from mrisr.io import Volume, detect_slice_axis

SHAPE = (24, 24, 60)  # 1 mm isotropic HR voxels; slices stacked along axis 2
C2_PLANE = 50  # C2 landmark plane: the MUCCA window (7-37 mm below C2) lies inside the volume


def spine_item(index: int, seed: int = 0) -> dict[str, Any]:
    """Test item ``subject{index:02d}``: a dark elliptic cord (semi-axes 3 + 0.4·index mm and 2.5 mm) in bright CSF.

    Returns the keys of a test-step output: ``name``, ``setting``, ``method``, ``hr``, ``lr`` (3 mm slices),
    ``geometry``, ``grid``, ``sr`` (linear interpolation of the LR, standing in for a model) and ``annotations``
    (binary HR ``cord_mask`` and a C2 ``landmarks`` voxel).
    """
    x, y, _ = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in SHAPE), indexing="ij", sparse=True)
    cord = np.broadcast_to((x / (3.0 + 0.4 * index)) ** 2 + (y / 2.5) ** 2 <= 1, SHAPE)
    csf = np.broadcast_to((x / 8.0) ** 2 + (y / 7.0) ** 2 <= 1, SHAPE)
    noise = np.random.default_rng(seed + index).normal(0, 10, SHAPE)
    image = 200 + 700 * (csf & ~cord) + 300 * cord + noise
    hr = Volume(image.astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    degradation = ThickSlice(thickness_mm=3.0, separation_mm=3.0, axis=2)
    lr = degradation(hr, seed=seed + index)
    geometry = detect_slice_axis(lr, axis=2)
    grid = output_grid(geometry, lr.shape[2], target_spacing_mm=1.0)
    landmarks = np.zeros(SHAPE, np.int16)
    landmarks[SHAPE[0] // 2, SHAPE[1] // 2, C2_PLANE] = 2
    return {
        "name": f"subject{index:02d}",
        "setting": degradation.setting,
        "method": "Linear",
        "hr": hr,
        "lr": lr,
        "geometry": geometry,
        "grid": grid,
        "sr": interpolate_volume(lr, grid, order=1),
        "annotations": {
            "cord_mask": Volume(cord.astype(np.float32), hr.affine),
            "landmarks": Volume(landmarks, hr.affine),
        },
    }


def _first(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return batch[0]


class SyntheticTestData(L.LightningDataModule):
    """``n_subjects`` :func:`spine_item` test volumes, one per batch in subject order (like the project's data).

    Args:
        n_subjects: Number of test subjects.
        seed: Noise and degradation seed.
    """

    def __init__(self, n_subjects: int = 5, seed: int = 0) -> None:
        super().__init__()
        self.n_subjects = n_subjects
        self.seed = seed
        self.items: list[dict[str, Any]] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.items is None:
            self.items = [spine_item(i, self.seed) for i in range(self.n_subjects)]

    def test_dataloader(self) -> DataLoader:
        assert self.items is not None
        return DataLoader(self.items, batch_size=1, shuffle=False, collate_fn=_first, num_workers=0)
