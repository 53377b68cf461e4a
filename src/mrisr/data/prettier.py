"""PRETTIER training pairs: thick-slice LR patches on their own grid and 3-slice pseudo-RGB (docs/models.md §2.4).

For every HR volume and every through-plane axis in ``axes`` (PRETTIER simulates axial, sagittal and coronal
acquisitions), the thick-slice acquisition is simulated once on the LR grid: no interpolation back onto the HR grid,
because the network upsamples the thick-slice axis itself. A sample is a stack of ``in_channels`` contiguous planes
along a slicing axis ``b`` (an in-plane axis of the LR volume), each plane with the through-plane axis ``a`` along its
rows and the remaining axis along its columns: HR ``(C, P, P)`` and LR ``(C, P / f, P)`` with ``f`` = separation /
HR spacing (96 × 96 and 16 × 96 for 6 mm on 1 mm). Both are scaled by the intensity rule applied to the LR volume
(PRETTIER's inference rule, 1.25 × the LR foreground P99.5, :data:`~mrisr.io.intensity.PRETTIER_RULE`, used for
training too).

Non-integer ratios (e.g. 6 mm slices on a 0.88 mm HR grid, 6.82 voxels): the HR volume is first resampled along the
through-plane axis only, by cubic B-spline (:func:`mrisr.io.regrid.resample_to_reference`), onto the grid of spacing
separation / f with f = ⌈separation / spacing⌉ (6 / 7 = 0.857 mm; never coarser than the input), whose first voxel's
outer edge coincides with the input's and whose affine is exact (:func:`axis_spacing_grid`); the pair is then
simulated on that grid. All pairs of a dataset need the same f (a 1 mm and a 0.88 mm volume give 6 and 7).
This adds one interpolation of the training targets, a small smoothing, and changes the through-plane voxel size of
the HR patches by |f − ratio| / ratio (2.6 % for 0.88 mm). Test items keep the HR volume as it is (the systems'
output grids take any factor).

Alignment: the HR volume is cropped (from index 0) to a multiple of ``f`` voxels along every axis, so that LR slice
``j`` covers HR voxels ``f·j … f·j + f − 1`` exactly (same-FOV rule, docs/physics.md §3) and an LR row block
``j0 : j0 + P/f`` covers the HR rows ``f·j0 : f·j0 + P``.

Random acquisitions for training (pretraining data, ``train_degradation``): instead of the one precomputed LR
volume, each training patch gets its own draw of a random :class:`~mrisr.degradations.stack.DegradationStack` (e.g.
:class:`~mrisr.degradations.RandomSliceProfile` — slr / gaussian / rect, thickness on a grid — followed by
:class:`~mrisr.degradations.Downsample` at the target separation, preset ``prettier_random``), applied by its
:meth:`~mrisr.degradations.stack.DegradationStack.degrade` to the HR block of the patch's planes, extended by
``margin_slices`` LR slices on each side (clipped to the volume) so that the blur and the B-spline sampling see the
same neighbourhood as on the whole volume: the patch's LR equals the crop of the whole-volume simulation with the
same parameters (to float32 rounding; tested). The separation must stay the target's (f·Δ): the network always
maps ``P/f`` LR rows to ``P`` HR rows, and the gap varies as S − T with the drawn thickness T. Validation patches
and test volumes keep the target acquisition.

Patch centres are drawn from the foreground (HR voxels above ``foreground_threshold`` after scaling), so patches
are mostly tissue. Test items are whole volumes (the LR on its own grid, geometry and output grid), exactly as
:class:`mrisr.data.pairs.SimulatedPairsDataModule` produces them.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from mrisr.core.errors import MrisrInputError
from mrisr.data.pairs import FixedPatchDataset, SimulatedPairsDataModule, crop_volume
from mrisr.data.sources import MNI152
from mrisr.degradations.stack import DegradationStack
from mrisr.io.intensity import PRETTIER_RULE, IntensityRule
from mrisr.io.nifti import Volume
from mrisr.io.regrid import resample_isotropic, resample_to_reference

__all__ = [
    "PrettierPairsDataModule",
    "RandomAcquisitionPatchDataset",
    "ThickSlicePair",
    "ThickSlicePatchDataset",
    "axis_spacing_grid",
    "thick_slice_pair",
]

log = logging.getLogger(__name__)

#: Foreground voxels kept per volume as candidate patch centres (a random subset bounds memory).
_MAX_CENTRES = 200_000


@dataclass
class ThickSlicePair:
    """One HR volume and its simulated LR volume along ``axis``, both divided by the same intensity scale.

    Attributes:
        name: subject-like name and axis.
        hr: ``(X, Y, Z)`` float32, cropped to a multiple of ``factor`` along every axis.
        lr: LR volume, the HR shape with ``axis`` divided by ``factor``.
        axis: through-plane axis of the simulated acquisition.
        factor: integer ratio separation / HR spacing.
        scale: raw intensity mapped to 1.
        centres: ``(K, 3)`` int foreground voxel indices of ``hr`` (candidate patch centres).
        spacing_mm: HR voxel size along ``axis`` (mm; separation / factor), None when unknown.
    """

    name: str
    hr: np.ndarray
    lr: np.ndarray
    axis: int
    factor: int
    scale: float
    centres: np.ndarray
    spacing_mm: float | None = None


def axis_spacing_grid(volume: Volume, axis: int, spacing_mm: float) -> Volume:
    """An empty volume on ``volume``'s grid with voxel size ``spacing_mm`` along ``axis`` (same field of view start).

    The affine column of ``axis`` is its unit direction × ``spacing_mm`` (exact); the outer edge of voxel 0 along
    ``axis`` coincides with the input's, so voxel ``k`` lies at input voxel ``(k + 0.5) · spacing / Δ − 0.5``; the
    grid has ``floor(n · Δ / spacing_mm)`` voxels along ``axis`` (it never extends beyond the input), the other axes
    are unchanged.
    """
    zoom = float(volume.zooms[axis])
    n = int(np.floor(volume.shape[axis] * zoom / spacing_mm + 1e-6))
    if n < 1 or spacing_mm <= 0:
        raise ValueError(f"spacing {spacing_mm} mm does not fit {volume.shape[axis]} voxels of {zoom} mm")
    affine = np.array(volume.affine, dtype=np.float64)
    column = affine[:3, axis] / zoom
    affine[:3, 3] += affine[:3, axis] * (0.5 * spacing_mm / zoom - 0.5)  # voxel 0's outer edge stays in place
    affine[:3, axis] = column * spacing_mm
    shape = list(volume.shape)
    shape[axis] = n
    return Volume(data=np.zeros(shape, dtype=np.float32), affine=affine)


def thick_slice_pair(
    name: str,
    volume: Volume,
    degradation: DegradationStack,
    axis: int,
    seed: int,
    intensity: IntensityRule = PRETTIER_RULE,
    foreground_threshold: float = 0.1,
) -> ThickSlicePair:
    """Simulate the thick-slice LR of ``volume`` along ``axis`` on the LR grid and scale both (see module docstring).

    A separation that is not an integer multiple of the HR spacing along ``axis`` resamples the HR volume first
    (module docstring).

    Raises:
        MrisrInputError: a random separation, a separation smaller than the HR spacing, or an HR volume with fewer
            voxels than one LR slice along an axis.
    """
    separation = degradation.separation
    if separation is None:
        raise MrisrInputError(
            volume.path, "PRETTIER pairs need a fixed slice separation", "use a degradation preset such as prettier"
        )
    spacing = float(volume.zooms[axis])
    ratio = float(separation) / spacing
    # The nearest integer when the ratio is one, else the next integer up: resampled HR targets are never coarser.
    factor = round(ratio) if abs(ratio - round(ratio)) <= 1e-3 else math.ceil(ratio)
    if ratio < 1 - 1e-3:
        raise MrisrInputError(
            volume.path,
            f"separation {separation:g} mm is below the HR spacing {spacing:g} mm (axis {axis})",
            "use HR volumes finer than the simulated slice separation",
        )
    if abs(ratio - factor) > 1e-3:
        grid = axis_spacing_grid(volume, axis, float(separation) / factor)
        log.info(
            "%s: %g mm / %g mm is not an integer; HR resampled to %.4g mm along axis %d (factor %d)",
            name,
            separation,
            spacing,
            float(separation) / factor,
            axis,
            factor,
        )
        data = resample_to_reference(volume, grid, order=3).astype(np.float32)
        volume = Volume(data=data, affine=grid.affine, header=None, path=volume.path)
    for d in range(3):
        keep = (volume.shape[d] // factor) * factor
        if keep == 0:
            raise MrisrInputError(
                volume.path, f"axis {d} has {volume.shape[d]} voxels < {factor}", "use a larger volume"
            )
        if keep != volume.shape[d]:
            volume = crop_volume(volume, d, 0, keep)
    lr = degradation.with_axis(axis)(volume, seed=seed)
    if lr.shape[axis] * factor != volume.shape[axis]:
        raise ValueError(
            f"{name}: LR has {lr.shape[axis]} slices for {volume.shape[axis]} HR voxels at factor {factor}; "
            "the degradation must end on the LR grid (Downsample)"
        )
    scaling = intensity.scaling(lr.data, source=volume.path)
    hr = scaling.apply(volume.data).astype(np.float32)
    centres = np.argwhere(hr > foreground_threshold)
    if len(centres) == 0:
        centres = np.argwhere(hr > 0)
    if len(centres) > _MAX_CENTRES:
        pick = np.random.default_rng([seed, axis, 7]).choice(len(centres), _MAX_CENTRES, replace=False)
        centres = centres[np.sort(pick)]
    return ThickSlicePair(
        name=f"{name}[axis {axis}]",
        hr=hr,
        lr=scaling.apply(lr.data).astype(np.float32),
        axis=axis,
        factor=factor,
        scale=scaling.scale,
        centres=centres.astype(np.int64),
        spacing_mm=float(volume.zooms[axis]),
    )


class ThickSlicePatchDataset(Dataset):
    """Random PRETTIER patch pairs; sample ``k`` is a pure function of ``(seed, k)``.

    Args:
        pairs: thick-slice pairs (all with the same ``factor``).
        hr_patch: HR patch side P (voxels); must be a multiple of the factor.
        in_channels: contiguous planes per sample (1, or 3 for pseudo-RGB).
        length: nominal samples per epoch.
        seed: base seed.
        flips: random flips of rows and columns (and of the plane order), symmetries of the forward model.

    Items: ``{"hr": (C, P, P), "lr": (C, P / f, P)}`` float32, rows along the through-plane axis.
    """

    def __init__(
        self,
        pairs: Sequence[ThickSlicePair],
        hr_patch: int,
        in_channels: int,
        length: int,
        seed: int,
        flips: bool = True,
    ) -> None:
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        factors = {p.factor for p in pairs}
        if len(factors) != 1:
            raise ValueError(f"all pairs need the same separation / spacing factor, got {sorted(factors)}")
        self.factor = factors.pop()
        if hr_patch % self.factor:
            raise ValueError(f"hr_patch {hr_patch} must be a multiple of the factor {self.factor}")
        self.hr_patch, self.lr_rows = hr_patch, hr_patch // self.factor
        self.in_channels, self.length, self.seed, self.flips = in_channels, length, seed, flips
        self.pairs: list[ThickSlicePair] = []
        self.slicing_axes: list[list[int]] = []
        for pair in pairs:
            a = pair.axis
            valid = [
                b
                for b in range(3)
                if b != a and pair.hr.shape[b] >= in_channels and pair.hr.shape[3 - a - b] >= hr_patch
            ]
            if pair.hr.shape[a] >= hr_patch and valid:
                self.pairs.append(pair)
                self.slicing_axes.append(valid)
        if not self.pairs:
            raise ValueError(
                f"no volume is large enough for {hr_patch}-voxel patches: {[p.hr.shape for p in pairs]}; "
                "lower data.hr_patch"
            )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(k)])
        which = int(rng.integers(len(self.pairs)))
        pair, axes = self.pairs[which], self.slicing_axes[which]
        a = pair.axis
        b = axes[int(rng.integers(len(axes)))]
        c = 3 - a - b
        centre = pair.centres[int(rng.integers(len(pair.centres)))]
        half = self.in_channels // 2
        p, r, f = self.hr_patch, self.lr_rows, pair.factor
        i0 = int(np.clip(centre[b] - half, 0, pair.hr.shape[b] - self.in_channels))
        j0 = int(np.clip(round(centre[a] / f - r / 2), 0, pair.lr.shape[a] - r))
        c0 = int(np.clip(centre[c] - p // 2, 0, pair.hr.shape[c] - p))
        hr = self._planes(pair.hr, a, b, c, i0, slice(f * j0, f * j0 + p), c0)
        lr, extras = self._lr_block(k, pair, (a, b, c), i0, j0, c0)
        if self.flips:
            for dim in (0, 1, 2):  # plane order, rows, columns
                if rng.random() < 0.5:
                    hr, lr = np.flip(hr, dim), np.flip(lr, dim)
        return {
            "hr": torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32)),
            "lr": torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)),
            **extras,
        }

    def _planes(self, data: np.ndarray, a: int, b: int, c: int, i0: int, rows: slice, c0: int) -> np.ndarray:
        """``(C, rows, P)`` block: planes ``i0 …`` along ``b``, rows along ``a``, columns along ``c``."""
        index = [slice(None)] * 3
        index[b] = slice(i0, i0 + self.in_channels)
        index[a] = rows
        index[c] = slice(c0, c0 + self.hr_patch)
        return np.transpose(data[tuple(index)], (b, a, c))

    def _lr_block(
        self, k: int, pair: ThickSlicePair, axes: tuple[int, int, int], i0: int, j0: int, c0: int
    ) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """LR ``(C, P / f, P)`` of sample ``k`` (LR rows ``j0 …`` of the pair's LR volume) and extra item entries."""
        a, b, c = axes
        return self._planes(pair.lr, a, b, c, i0, slice(j0, j0 + self.lr_rows), c0), {}


class RandomAcquisitionPatchDataset(ThickSlicePatchDataset):
    """PRETTIER patches whose LR is simulated per sample by a random degradation (module docstring).

    Sample ``k`` has the same location, planes and flips as in :class:`ThickSlicePatchDataset` with the same seed; its
    LR is ``degradation.degrade`` of the HR block of LR slices ``j0 − margin_slices … j0 + P/f + margin_slices``
    (clipped to the volume), with one draw of the parameters shared by the ``C`` planes, from a generator seeded by
    ``(seed, k)``. Item keys: ``hr``, ``lr`` as in the parent, plus ``thickness_mm`` and ``separation_mm`` of the draw
    (float64 scalars; NaN when the stack has no slice-profile step).

    Args:
        pairs, hr_patch, in_channels, length, seed, flips: see :class:`ThickSlicePatchDataset` (the pairs give the HR
            volumes, factor, intensity scale and patch centres; their precomputed LR is not used).
        degradation: the random acquisition; its sampling step must be the pairs' factor (``Downsample`` with the
            target's ``separation_mm``).
        margin_slices: LR slices of context on each side of the patch; at least the half-length of the widest
            slice-profile kernel plus about 12 voxels for the B-spline sampling, in LR slices (4 × 6 mm = 24 mm for
            the ``prettier_random`` preset, whose kernels reach 10 voxels).

    Raises:
        ValueError: a pair without ``spacing_mm``, or (per sample) a draw whose LR row count is not the block's / f.
    """

    def __init__(
        self,
        pairs: Sequence[ThickSlicePair],
        hr_patch: int,
        in_channels: int,
        length: int,
        seed: int,
        degradation: DegradationStack,
        flips: bool = True,
        margin_slices: int = 4,
    ) -> None:
        super().__init__(pairs, hr_patch, in_channels, length, seed, flips)
        if any(p.spacing_mm is None for p in self.pairs):
            raise ValueError("random acquisitions need the HR spacing of every pair (thick_slice_pair sets it)")
        if margin_slices < 0:
            raise ValueError(f"margin_slices must be ≥ 0, got {margin_slices}")
        self.degradation = degradation
        self.margin_slices = int(margin_slices)

    def _lr_block(
        self, k: int, pair: ThickSlicePair, axes: tuple[int, int, int], i0: int, j0: int, c0: int
    ) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        a, b, c = axes
        f, r, m = pair.factor, self.lr_rows, self.margin_slices
        lo, hi = max(0, j0 - m), min(pair.lr.shape[a], j0 + r + m)
        block = self._planes(pair.hr, a, b, c, i0, slice(f * lo, f * hi), c0)  # (C, f·(hi − lo), P)
        generator = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, int(k), 1]).integers(2**62)))
        x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))[None]
        result = self.degradation.degrade(x, float(pair.spacing_mm), generator, axis=0)
        lr = result.lr[0].numpy()
        if lr.shape[1] != hi - lo:
            raise ValueError(
                f"{pair.name}: the random degradation gave {lr.shape[1]} LR rows for {f * (hi - lo)} HR rows; "
                f"its separation must be the target's ({f} × {pair.spacing_mm:g} mm): set Downsample.separation_mm"
            )
        thickness, separation = result.geometry.thickness_mm, result.geometry.separation_mm
        extras = {
            "thickness_mm": torch.tensor(float("nan") if thickness is None else thickness, dtype=torch.float64),
            "separation_mm": torch.tensor(float("nan") if separation is None else separation, dtype=torch.float64),
        }
        return lr[:, j0 - lo : j0 - lo + r], extras


class PrettierPairsDataModule(SimulatedPairsDataModule):
    """HR volumes → PRETTIER thick-slice patch pairs (training, validation) and whole test volumes.

    Train/val/test splits are by source (subject); a source listed in several splits (the single MNI152 template)
    is cut into disjoint slabs as in :class:`~mrisr.data.pairs.SimulatedPairsDataModule`.

    Args:
        train, val, test: sources (NIfTI paths or ``"mni152"``).
        degradation: the thick-slice acquisition (e.g. the ``prettier`` preset, 5 mm / 6 mm); its ``axis`` is the
            through-plane axis of the test items.
        hr_patch: HR patch side (voxels; PRETTIER 96, giving 16-row LR patches at 6 mm / 1 mm).
        in_channels: contiguous planes per sample, 1 or 3 (pseudo-RGB).
        axes: through-plane axes simulated for training and validation (PRETTIER: all three).
        batch_size: patches per batch (PRETTIER 6).
        patches_per_epoch: training samples per epoch.
        val_patches: fixed validation patches.
        slab_axis, slab_fractions: splitting of a source shared by several splits.
        intensity: the intensity rule of the LR side (PRETTIER: 1.25 × the LR foreground P99.5,
            ``conf/intensity/prettier.yaml``); shared with the system through the config.
        foreground_threshold: minimum scaled HR intensity of a patch centre.
        num_workers: DataLoader workers.
        seed: seed of the degradation and of patch sampling.
        test_annotations: see :class:`~mrisr.data.pairs.SimulatedPairsDataModule`.
        train_degradation: random acquisition simulated per training patch (:class:`RandomAcquisitionPatchDataset`,
            e.g. the ``prettier_random`` preset); None = the LR of ``degradation`` precomputed per volume.
        margin_slices: LR slices of context of the per-patch simulation.
        exclude: sources removed from ``train`` and ``val`` (the held-out volume of a leave-one-out run), matched by
            their resolved file path or, for ``mni152``, by name.
        isotropic_mm: resample every source whose voxel size differs from this isotropic spacing by more than 1 %
            onto the isotropic grid of that spacing (cubic B-spline, :func:`mrisr.io.regrid.resample_isotropic`)
            before simulating, so that volumes of any resolution (e.g. a 0.88 mm T1) share one factor f; None =
            keep every volume as it is.
    """

    def __init__(
        self,
        train: Sequence[str],
        val: Sequence[str],
        test: Sequence[str],
        degradation: DegradationStack,
        hr_patch: int = 96,
        in_channels: int = 3,
        axes: Sequence[int] = (0, 1, 2),
        batch_size: int = 6,
        patches_per_epoch: int = 1024,
        val_patches: int = 64,
        slab_axis: int = 1,
        slab_fractions: Sequence[float] = (0.7, 0.1, 0.2),
        intensity: IntensityRule | None = None,
        foreground_threshold: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
        test_annotations: Mapping[str, Mapping[str, str]] | None = None,
        train_degradation: DegradationStack | None = None,
        margin_slices: int = 4,
        exclude: Sequence[str] = (),
        isotropic_mm: float | None = None,
    ) -> None:
        excluded = {_source_key(x) for x in exclude}
        kept_train = [x for x in train if _source_key(x) not in excluded]
        kept_val = [x for x in val if _source_key(x) not in excluded]
        if exclude and (not kept_train or not kept_val):
            raise MrisrInputError(
                None,
                f"excluding {list(exclude)} leaves {len(kept_train)} train and {len(kept_val)} val sources",
                "list other volumes in data.train / data.val",
            )
        if isotropic_mm is not None and not isotropic_mm > 0:
            raise ValueError(f"isotropic_mm must be > 0 or None, got {isotropic_mm}")
        super().__init__(
            kept_train,
            kept_val,
            test,
            degradation,
            patch_size=hr_patch,
            batch_size=batch_size,
            patches_per_epoch=patches_per_epoch,
            val_patches=val_patches,
            slab_axis=slab_axis,
            slab_fractions=slab_fractions,
            intensity=intensity if intensity is not None else PRETTIER_RULE,
            num_workers=num_workers,
            seed=seed,
            test_annotations=test_annotations,
        )
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {axes}")
        self.hr_patch = hr_patch
        self.in_channels = in_channels
        self.axes = tuple(int(a) for a in axes)
        self.foreground_threshold = foreground_threshold
        self.train_degradation = train_degradation
        self.margin_slices = int(margin_slices)
        self.excluded = [x for x in [*train, *val] if _source_key(x) in excluded]
        self.isotropic_mm = None if isotropic_mm is None else float(isotropic_mm)
        if self.excluded:
            log.info("PRETTIER pairs: excluded from train/val: %s", self.excluded)

    def _split_volumes(self) -> dict[str, dict[str, Volume]]:
        fresh = not self._volumes
        volumes = super()._split_volumes()
        if fresh and self.isotropic_mm is not None:
            for split in volumes.values():
                for name, volume in split.items():
                    zooms = np.asarray(volume.zooms, dtype=np.float64)
                    if np.max(np.abs(zooms / self.isotropic_mm - 1.0)) > 0.01:
                        log.info("%s: %s mm resampled to %g mm", name, np.round(zooms, 3).tolist(), self.isotropic_mm)
                        split[name] = resample_isotropic(volume, self.isotropic_mm)
        return volumes

    def _pairs(self, volumes: Mapping[str, Volume], seed: int) -> list[ThickSlicePair]:
        return [
            thick_slice_pair(
                name,
                volume,
                self.degradation,
                axis,
                seed=seed + 100 * i + axis,
                intensity=self.intensity,
                foreground_threshold=self.foreground_threshold,
            )
            for i, (name, volume) in enumerate(volumes.items())
            for axis in self.axes
        ]

    def setup(self, stage: str | None = None) -> None:
        volumes = self._split_volumes()
        if stage in (None, "fit", "validate") and self.train_set is None:
            train_pairs = self._pairs(volumes["train"], self.seed)
            val_pairs = self._pairs(volumes["val"], self.seed + 1)
            if not train_pairs or not val_pairs:
                raise ValueError("data: the train and val splits need at least one source each")
            if self.train_degradation is None:
                self.train_set = ThickSlicePatchDataset(
                    train_pairs, self.hr_patch, self.in_channels, self.patches_per_epoch, self.seed
                )
            else:
                self.train_set = RandomAcquisitionPatchDataset(
                    train_pairs,
                    self.hr_patch,
                    self.in_channels,
                    self.patches_per_epoch,
                    self.seed,
                    self.train_degradation,
                    margin_slices=self.margin_slices,
                )
            val_source = ThickSlicePatchDataset(
                val_pairs, self.hr_patch, self.in_channels, self.val_patches, self.seed + 10_000
            )
            self.val_set = FixedPatchDataset(val_source, self.val_patches)
            log.info("PRETTIER pairs: train %s; val %s", [p.name for p in train_pairs], [p.name for p in val_pairs])
        if stage in (None, "test") and self.test_items is None:
            self.test_items = [
                self.test_item(n, v, seed=self.seed + 20_000 + i) for i, (n, v) in enumerate(volumes["test"].items())
            ]


def _source_key(source: str) -> str:
    """Identity of a source for exclusion: ``mni152``, else the resolved path of the file."""
    return source if source == MNI152 else os.path.realpath(source)
