"""Supervised training pairs simulated from high-resolution volumes.

For every HR volume the thick-slice acquisition (:class:`mrisr.degradations.ThickSlice`) is simulated once, the LR
volume is brought back onto the HR grid with the same cubic B-spline used at inference
(:func:`mrisr.inference.interpolate_volume`), and training samples are random 2-D patches of planes that contain
the through-plane axis (rows) and one in-plane axis (columns). Validation patches are fixed; test items are whole
volumes with their simulated LR on its own grid, so test metrics are computed exactly as a user would at inference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mrisr.data.sources import load_source, source_name
from mrisr.degradations.stack import DegradationStack
from mrisr.degradations.thick_slice import ThickSlice
from mrisr.inference import OutputGrid, interpolate_volume, output_grid
from mrisr.io.geometry import SliceGeometry, detect_slice_axis
from mrisr.io.intensity import IntensityRule
from mrisr.io.nifti import Volume, load_volume

log = logging.getLogger(__name__)


def crop_volume(volume: Volume, axis: int, start: int, stop: int) -> Volume:
    """Crop ``volume`` to voxels ``start:stop`` along ``axis``, keeping world positions (affine origin shifted)."""
    index = [slice(None)] * 3
    index[axis] = slice(start, stop)
    affine = volume.affine.copy()
    affine[:3, 3] = affine[:3, 3] + affine[:3, axis] * start
    return Volume(
        data=np.ascontiguousarray(volume.data[tuple(index)]),
        affine=affine,
        header=volume.header.copy(),
        path=volume.path,
    )


def foreground_extent(data: np.ndarray, axis: int, threshold: float = 0.05) -> tuple[int, int]:
    """Index range ``[lo, hi)`` along ``axis`` of voxels above ``threshold`` × the maximum (the object's extent)."""
    other = tuple(d for d in range(data.ndim) if d != axis)
    profile = np.max(data, axis=other)
    inside = np.flatnonzero(profile > threshold * float(profile.max()))
    if inside.size == 0:
        return 0, data.shape[axis]
    return int(inside[0]), int(inside[-1]) + 1


@dataclass
class TrainingPair:
    """One HR volume and its LR counterpart on the HR grid (precomputed for deterministic degradations), both
    scaled by the intensity rule of the LR side (for random degradations, by the HR volume's until each plane's
    LR side is simulated and the rule's plane correction applied)."""

    name: str
    hr: np.ndarray  # (X, Y, Z) float32
    lr_on_hr_grid: np.ndarray | None  # (X, Y, Z) float32; None = degraded per sample (random degradations)
    axis: int
    spacing_mm: float


class EpochSampler(Sampler[int]):
    """Yields ``epoch · n + i`` for ``i < n`` so every epoch draws fresh, reproducible random patches."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.epoch * self.n, (self.epoch + 1) * self.n))

    def __len__(self) -> int:
        return self.n


class PlanePatchDataset(Dataset):
    """Random 2-D patches of planes containing the through-plane axis; patch ``k`` is a pure function of ``(seed, k)``.

    Args:
        pairs: training pairs.
        patch_size: patch side in voxels (rows along the through-plane axis, columns along an in-plane axis).
        length: nominal number of samples per epoch.
        seed: base seed.
        min_foreground: minimum mean HR intensity of a patch (retries up to 20 draws, then accepts the best).
        flips: random flips of rows and columns (the forward model is symmetric).
        degradation: random degradation (``sample_pair_with_reference``) applied per sample to pairs without
            precomputed LR.
        intensity: intensity rule whose plane correction (:meth:`~mrisr.io.intensity.IntensityRule.plane_correction`)
            gives per-sample degraded pairs the scale of their LR side, as at inference (the HR side: that of the
            LR side before random gain changes, ``sample_pair_with_reference``).
    """

    def __init__(
        self,
        pairs: Sequence[TrainingPair],
        patch_size: int,
        length: int,
        seed: int,
        min_foreground: float = 0.05,
        flips: bool = True,
        degradation: Any = None,
        intensity: IntensityRule | None = None,
    ) -> None:
        self.pairs = list(pairs)
        self.degradation = degradation
        self.intensity = intensity if intensity is not None else IntensityRule()
        if any(pair.lr_on_hr_grid is None for pair in self.pairs) and degradation is None:
            raise ValueError("pairs without precomputed LR need a degradation with sample_pair_with_reference()")
        self.patch_size = patch_size
        self.length = length
        self.seed = seed
        self.min_foreground = min_foreground
        self.flips = flips
        # Plane orientations (stack axis) whose column axis is long enough for a patch, per pair.
        self.stack_axes: list[list[int]] = []
        for pair in self.pairs:
            others = [d for d in range(3) if d != pair.axis]
            valid = [b for b in others if pair.hr.shape[next(d for d in others if d != b)] >= patch_size]
            if pair.hr.shape[pair.axis] < patch_size or not valid:
                raise ValueError(
                    f"{pair.name}: shape {pair.hr.shape} is smaller than patch_size={patch_size} along the "
                    "through-plane axis or both in-plane axes; lower data.patch_size"
                )
            self.stack_axes.append(valid)

    def __len__(self) -> int:
        return self.length

    def _draw(self, rng: np.random.Generator) -> tuple[TrainingPair, tuple, int, int, float]:
        """A patch location: (pair, plane index, first row, first column, mean HR intensity of the patch)."""
        which = int(rng.integers(len(self.pairs)))
        pair, stack_axes = self.pairs[which], self.stack_axes[which]
        axis = pair.axis
        stack_axis = stack_axes[int(rng.integers(len(stack_axes)))]
        column_axis = 3 - axis - stack_axis
        p = self.patch_size
        plane = [slice(None)] * 3
        plane[stack_axis] = int(rng.integers(pair.hr.shape[stack_axis]))
        r0 = int(rng.integers(pair.hr.shape[axis] - p + 1))
        c0 = int(rng.integers(pair.hr.shape[column_axis] - p + 1))
        hr_plane = self._rows_first(pair.hr[tuple(plane)], axis, column_axis)
        return pair, (tuple(plane), column_axis), r0, c0, float(hr_plane[r0 : r0 + p, c0 : c0 + p].mean())

    @staticmethod
    def _rows_first(plane: np.ndarray, axis: int, column_axis: int) -> np.ndarray:
        return plane.T if axis > column_axis else plane  # rows must run along the through-plane axis

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(k)])
        best = None
        for _ in range(20):
            draw = self._draw(rng)
            if best is None or draw[-1] > best[-1]:
                best = draw
            if draw[-1] >= self.min_foreground:
                break
        pair, (plane, column_axis), r0, c0, _ = best
        p = self.patch_size
        hr_plane = self._rows_first(pair.hr[plane], pair.axis, column_axis)
        if pair.lr_on_hr_grid is not None:
            lr_plane = self._rows_first(pair.lr_on_hr_grid[plane], pair.axis, column_axis)
        else:
            # Random degradation of the whole plane (so patch borders see no padding of the patch), then the crop.
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            hr_t, lr_t, reference_t = self.degradation.sample_pair_with_reference(
                torch.from_numpy(np.ascontiguousarray(hr_plane))[None], pair.spacing_mm, generator
            )
            hr_plane, lr_plane, reference = hr_t[0].numpy(), lr_t[0].numpy(), reference_t[0].numpy()
            # The LR side follows the intensity rule, as the LR volume does at inference. The HR side is scaled by
            # the LR branch as acquired (before colour jitter and bias field): the acquisition's own change of the
            # statistic (blur lowers the 99.5th percentile) carries over to the target, as it does at inference,
            # while the random gain of the jitter does not: dividing the HR side by it would give the target a random
            # gain (±20 % for Graf's jitter) that no network can infer from its normalised input.
            lr_correction = self.intensity.plane_correction(hr_plane, lr_plane)
            # Without a gain step the reference is the LR side itself: one correction serves both.
            no_gain_step = reference_t is lr_t
            hr_correction = lr_correction if no_gain_step else self.intensity.plane_correction(hr_plane, reference)
            hr_plane, lr_plane = hr_plane / hr_correction, lr_plane / lr_correction
        hr, lr = hr_plane[r0 : r0 + p, c0 : c0 + p], lr_plane[r0 : r0 + p, c0 : c0 + p]
        if self.flips:
            if rng.random() < 0.5:
                hr, lr = hr[::-1], lr[::-1]
            if rng.random() < 0.5:
                hr, lr = hr[:, ::-1], lr[:, ::-1]
        return {
            "hr": torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32)).unsqueeze(0),
            "lr": torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)).unsqueeze(0),
        }


class FixedPatchDataset(Dataset):
    """A frozen list of patches (validation): identical for every epoch and every model."""

    def __init__(self, source: PlanePatchDataset, count: int) -> None:
        self.items = [source[k] for k in range(count)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.items[k]


def _first(batch: list[Any]) -> Any:
    return batch[0]


class SimulatedPairsDataModule(L.LightningDataModule):
    """HR volumes → simulated thick-slice pairs for supervised training, validation and whole-volume testing.

    A source listed in several splits (e.g. the single MNI152 template) is cut into disjoint slabs along
    ``slab_axis`` in the proportions ``slab_fractions`` (train, val, test) of the object's extent along that axis,
    so no voxel is shared between splits and every slab contains anatomy.

    Args:
        train: training sources (NIfTI paths or ``"mni152"``).
        val: validation sources.
        test: test sources.
        degradation: the thick-slice acquisition to simulate (its ``axis`` is the through-plane axis).
        patch_size: training/validation patch side (voxels).
        batch_size: patches per training batch.
        patches_per_epoch: training samples per epoch.
        val_patches: fixed validation patches.
        slab_axis: axis along which a shared source is split; must differ from the degradation axis.
        slab_fractions: train/val/test fractions of a shared source.
        intensity: the intensity rule of the network input (LR side), shared with the system through the config.
        num_workers: DataLoader workers.
        seed: seed of patch sampling and noise.
        test_annotations: per test source, files on its HR grid passed to evaluation callbacks as
            ``annotations`` (e.g. ``{path: {cord_mask: ..., landmarks: ...}}``).
        val_stack: how the validation crops are degraded: ``"train"`` (the training stack, train-only steps
            included) or ``"test"`` (the acquisition of the test volumes: the stack's ``test_time`` stack when it
            has one, e.g. ``graf_eval`` for the Graf presets, else its steps without the train-only ones), so that
            the metric that selects the checkpoint is measured on the inputs the model will be applied to.
    """

    def __init__(
        self,
        train: Sequence[str],
        val: Sequence[str],
        test: Sequence[str],
        degradation: ThickSlice | DegradationStack,
        patch_size: int = 64,
        batch_size: int = 16,
        patches_per_epoch: int = 1024,
        val_patches: int = 64,
        slab_axis: int = 1,
        slab_fractions: Sequence[float] = (0.7, 0.1, 0.2),
        intensity: IntensityRule | None = None,
        num_workers: int = 0,
        seed: int = 0,
        test_annotations: Mapping[str, Mapping[str, str]] | None = None,
        val_stack: str = "train",
    ) -> None:
        super().__init__()
        if val_stack not in ("train", "test"):
            raise ValueError(f"val_stack must be 'train' or 'test', got {val_stack!r}")
        if slab_axis == degradation.axis:
            raise ValueError("slab_axis must differ from the degradation's through-plane axis")
        if len(slab_fractions) != 3 or abs(sum(slab_fractions) - 1) > 1e-6 or min(slab_fractions) <= 0:
            raise ValueError(f"slab_fractions must be three positive numbers summing to 1, got {slab_fractions}")
        self.splits = {"train": list(train), "val": list(val), "test": list(test)}
        self.degradation = degradation
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.patches_per_epoch = patches_per_epoch
        self.val_patches = val_patches
        self.slab_axis = slab_axis
        self.slab_fractions = tuple(slab_fractions)
        self.intensity = intensity if intensity is not None else IntensityRule()
        self.num_workers = num_workers
        self.seed = seed
        self.test_annotations = {source_name(k): dict(v) for k, v in (test_annotations or {}).items()}
        self.val_stack = val_stack
        unused = set(self.test_annotations) - {source_name(s) for s in self.splits["test"]}
        if unused:
            log.info("test_annotations of sources outside the test split are not used: %s", sorted(unused))
        self._volumes: dict[str, dict[str, Volume]] = {}
        self.train_set: PlanePatchDataset | None = None
        self.val_set: FixedPatchDataset | None = None
        self.test_items: list[dict[str, Any]] | None = None

    # ---------------------------------------------------------------- volumes per split
    def _split_volumes(self) -> dict[str, dict[str, Volume]]:
        if self._volumes:
            return self._volumes
        loaded: dict[str, Volume] = {}
        for sources in self.splits.values():
            for source in sources:
                if source not in loaded:
                    loaded[source] = load_source(source)
        names = ("train", "val", "test")
        out: dict[str, dict[str, Volume]] = {name: {} for name in names}
        for source, volume in loaded.items():
            used_in = [name for name in names if source in self.splits[name]]
            if len(used_in) == 1:
                out[used_in[0]][source_name(source)] = volume
                continue
            n = volume.shape[self.slab_axis]
            lo, hi = foreground_extent(volume.data, self.slab_axis)
            bounds = np.round(lo + np.cumsum((0.0, *self.slab_fractions)) * (hi - lo)).astype(int)
            bounds[0], bounds[-1] = 0, n  # background beyond the head stays with the outer slabs
            for i, name in enumerate(names):
                if name in used_in:
                    start, stop = int(bounds[i]), int(bounds[i + 1])
                    out[name][f"{source_name(source)}[{name} slab {start}:{stop}]"] = crop_volume(
                        volume, self.slab_axis, start, stop
                    )
        self._volumes = out
        return out

    def _pair(self, name: str, volume: Volume, seed: int) -> TrainingPair:
        axis = self.degradation.axis
        spacing = float(volume.zooms[axis])
        if self.degradation.is_random:
            scaling = self.intensity.scaling(volume.data, source=volume.path)
            return TrainingPair(name, scaling.apply(volume.data).astype(np.float32), None, axis, spacing)
        lr = self.degradation(volume, seed=seed)
        if getattr(self.degradation, "output_grid", "lr") == "hr":
            lr_up = lr
        else:
            geometry = detect_slice_axis(lr, axis=axis)
            grid = OutputGrid(
                axis=axis, step=spacing / geometry.separation_mm, length=volume.shape[axis], spacing_mm=spacing
            )
            lr_up = interpolate_volume(lr, grid, order=3)
        scaling = self.intensity.scaling(lr.data, source=volume.path)
        return TrainingPair(
            name=name,
            hr=scaling.apply(volume.data).astype(np.float32),
            lr_on_hr_grid=scaling.apply(lr_up.data).astype(np.float32),
            axis=axis,
            spacing_mm=spacing,
        )

    def test_item(self, name: str, hr: Volume, seed: int) -> dict[str, Any]:
        """Whole-volume test item: HR, its simulated LR (own grid), LR geometry and the SR output grid."""
        lr = self.degradation(hr, seed=seed)
        geometry: SliceGeometry = detect_slice_axis(lr, axis=self.degradation.axis)
        grid = output_grid(geometry, lr.shape[geometry.axis], target_spacing_mm=float(hr.zooms[geometry.axis]))
        setting = self.degradation.setting
        annotations = {
            kind: load_volume(path, allow_constant=True) for kind, path in self.test_annotations.get(name, {}).items()
        }
        return {
            "name": name,
            "setting": setting,
            "hr": hr,
            "lr": lr,
            "geometry": geometry,
            "grid": grid,
            "annotations": annotations,
        }

    def validation_degradation(self) -> Any:
        """The degradation of the validation crops (``val_stack``; crops are degraded with ``sample_pair``)."""
        if self.val_stack == "train" or not isinstance(self.degradation, DegradationStack):
            return self.degradation
        if self.degradation.test_time is not None:
            return self.degradation.test_time
        steps = [s for s in self.degradation.steps if not getattr(s, "train_only", False)]
        return DegradationStack(steps, axis=self.degradation.axis, setting=f"{self.degradation.setting}_test")

    def setup(self, stage: str | None = None) -> None:
        volumes = self._split_volumes()
        if stage in (None, "fit", "validate") and self.train_set is None:
            train_pairs = [self._pair(n, v, self.seed) for n, v in volumes["train"].items()]
            val_pairs = [self._pair(n, v, self.seed + 1) for n, v in volumes["val"].items()]
            if not train_pairs or not val_pairs:
                raise ValueError("data: the train and val splits need at least one source each")
            self.train_set = PlanePatchDataset(
                train_pairs,
                self.patch_size,
                self.patches_per_epoch,
                self.seed,
                degradation=self.degradation,
                intensity=self.intensity,
            )
            val_source = PlanePatchDataset(
                val_pairs,
                self.patch_size,
                self.val_patches,
                self.seed + 10_000,
                degradation=self.validation_degradation(),
                intensity=self.intensity,
            )
            self.val_set = FixedPatchDataset(val_source, self.val_patches)
            log.info(
                "training pairs: %s; validation: %s",
                [p.name for p in train_pairs],
                [p.name for p in val_pairs],
            )
        if stage in (None, "test") and self.test_items is None:
            self.test_items = [
                self.test_item(n, v, seed=self.seed + 20_000 + i) for i, (n, v) in enumerate(volumes["test"].items())
            ]

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=EpochSampler(len(self.train_set)),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=True,
        )

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=0)

    def test_dataloader(self) -> DataLoader:
        assert self.test_items is not None
        return DataLoader(self.test_items, batch_size=1, shuffle=False, collate_fn=_first, num_workers=0)
