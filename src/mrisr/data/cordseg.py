"""Training data of the cord U-Net: crops around the cord of every axial plane (RAS) of 1 mm spines with manual
masks, plus thick-slice versions of every training volume (simulated with
:class:`~mrisr.degradations.thick_slice.ThickSlice` and brought back to 1 mm by cubic B-spline), leave-one-subject-out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mrisr.degradations.thick_slice import ThickSlice
from mrisr.inference import interpolate_volume, output_grid
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume, load_volume
from mrisr.io.regrid import ras_volume, resample_to_reference
from mrisr.segmentation.classical import ClassicalSegmenter

__all__ = ["CordSegDataModule", "crop_plane"]

log = logging.getLogger(__name__)


def crop_plane(plane: np.ndarray, cx: int, cy: int, size: int) -> np.ndarray:
    """``size × size`` crop of ``plane`` centred on voxel (cx, cy), zero-padded outside."""
    half = size // 2
    out = np.zeros((size, size), dtype=plane.dtype)
    x0, y0 = cx - half, cy - half
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(plane.shape[0], x0 + size), min(plane.shape[1], y0 + size)
    if sx1 > sx0 and sy1 > sy0:
        out[sx0 - x0 : sx1 - x0, sy0 - y0 : sy1 - y0] = plane[sx0:sx1, sy0:sy1]
    return out


class _CropDataset(Dataset):
    """Random crops around the cord; item ``k`` is a pure function of ``(seed, k)``."""

    def __init__(
        self,
        items: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        patch_size: int,
        length: int,
        seed: int,
        jitter: int,
    ) -> None:
        self.items = items  # (image RAS, mask RAS, planes with cord)
        self.patch_size = patch_size
        self.length = length
        self.seed = seed
        self.jitter = jitter
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, int(k)])
        image, mask, planes = self.items[int(rng.integers(len(self.items)))]
        z = int(planes[int(rng.integers(planes.size))])
        xs, ys = np.nonzero(mask[:, :, z] > 0.5)
        cx = round(float(xs.mean())) + int(rng.integers(-self.jitter, self.jitter + 1))
        cy = round(float(ys.mean())) + int(rng.integers(-self.jitter, self.jitter + 1))
        img = crop_plane(image[:, :, z], cx, cy, self.patch_size)
        seg = crop_plane(mask[:, :, z], cx, cy, self.patch_size)
        if rng.random() < 0.5:  # left-right flip (anatomically symmetric)
            img, seg = img[::-1], seg[::-1]
        img = img * float(rng.uniform(0.85, 1.15))
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None],
            "label": torch.from_numpy(np.ascontiguousarray(seg > 0.5, dtype=np.int64))[None],
        }


def _first(batch: list[Any]) -> Any:
    return batch[0]


class CordSegDataModule(L.LightningDataModule):
    """Leave-one-subject-out crops for the cord U-Net.

    Args:
        subjects: ``{name: {image: path, mask: path}}`` of 1 mm T2w volumes with manual cord masks.
        held_out: Subject used only for testing (leave-one-subject-out).
        degradations: Thick-slice acquisitions simulated from every training volume, each a mapping of
            :class:`~mrisr.degradations.thick_slice.ThickSlice` arguments in RAS terms (``axis``: 0 = RL,
            1 = AP, 2 = SI); the test set gets the same versions of the held-out subject.
        patch_size: Crop side (voxels = mm).
        batch_size: Crops per batch.
        samples_per_epoch: Training crops per epoch.
        val_samples: Fixed validation crops (from the training subjects, for monitoring only).
        jitter: Largest random shift of the crop centre (voxels).
        seed: Sampling seed.
    """

    def __init__(
        self,
        subjects: Mapping[str, Mapping[str, str]],
        held_out: str,
        degradations: Sequence[Mapping[str, Any]] = (
            {"thickness_mm": 3.0, "separation_mm": 4.0, "axis": 0},
            {"thickness_mm": 5.0, "separation_mm": 5.0, "axis": 2},
        ),
        patch_size: int = 64,
        batch_size: int = 16,
        samples_per_epoch: int = 1024,
        val_samples: int = 64,
        jitter: int = 6,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if held_out not in subjects:
            raise ValueError(f"held_out={held_out!r} is not one of the subjects {sorted(subjects)}")
        self.subjects = {k: dict(v) for k, v in subjects.items()}
        self.held_out = held_out
        self.degradations = [dict(d) for d in degradations]
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.samples_per_epoch = samples_per_epoch
        self.val_samples = val_samples
        self.jitter = jitter
        self.seed = seed
        self.train_set: _CropDataset | None = None
        self.val_items: list[dict[str, torch.Tensor]] | None = None
        self.test_items: list[dict[str, Any]] | None = None

    def variants(self, name: str) -> list[tuple[str, Volume, Volume]]:
        """``(variant, image, mask)`` of a subject on its HR grid: the HR image and its thick-slice versions."""
        image = load_volume(self.subjects[name]["image"])
        mask = load_volume(self.subjects[name]["mask"], allow_constant=True)
        ras, affine = ras_volume(image)
        ras_image = Volume(ras, affine)
        ras_mask = Volume(ras_volume(mask)[0], affine)
        out = [("HR", ras_image, ras_mask)]
        for i, params in enumerate(self.degradations):
            model = ThickSlice(**params)
            lr = model(ras_image, seed=self.seed + i)
            geometry = detect_slice_axis(lr, axis=model.axis)
            grid = output_grid(geometry, lr.shape[model.axis], target_spacing_mm=float(ras_image.zooms[model.axis]))
            data = resample_to_reference(interpolate_volume(lr, grid, order=3), ras_image, order=1)
            label = f"T{model.thickness_mm:g}_S{model.separation:g}_ax{model.axis}"
            out.append((label, Volume(data.astype(np.float32), affine), ras_mask))
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        items = []
        for name in self.subjects:
            if name == self.held_out:
                continue
            for _, image, mask in self.variants(name):
                img = ClassicalSegmenter.normalize(image.data)
                planes = np.flatnonzero((mask.data > 0.5).any(axis=(0, 1)))
                items.append((img, np.asarray(mask.data, dtype=np.float32), planes))
        if not items:
            raise ValueError("no training subject left after holding one out")
        self.train_set = _CropDataset(items, self.patch_size, self.samples_per_epoch, self.seed, self.jitter)
        val_source = _CropDataset(items, self.patch_size, self.val_samples, self.seed + 10_000, self.jitter)
        self.val_items = [val_source[k] for k in range(self.val_samples)]
        self.test_items = [
            {"name": self.held_out, "variant": variant, "image": image, "mask": mask}
            for variant, image, mask in self.variants(self.held_out)
        ]
        log.info("cord U-Net: %d training volumes, held out %s", len(items), self.held_out)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        self.train_set.epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_items is not None
        return DataLoader(self.val_items, batch_size=self.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        assert self.test_items is not None
        return DataLoader(self.test_items, batch_size=1, shuffle=False, collate_fn=_first)
