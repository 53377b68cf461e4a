"""Pretraining data for a zero-shot prior: self-training pairs from HR volumes under random acquisitions.

A per-volume (SMORE-style) fit trains its network on pairs made from the input's own in-plane data
(:class:`mrisr.data.zero_shot.SelfTrainingPairs`, docs/models.md §1.2–§1.4). A prior for that fit is the same network
pretrained on the same kind of pairs, made from isotropic high-resolution volumes under many acquisitions, so that the
pretrained weights are directly the starting point of the per-volume fit. Every batch therefore has exactly the
format of the fit's batches (``lr (B, 1, lr_rows, cols)``, ``hr (B, 1, round(s·lr_rows), cols)``, min–max
normalised intensities) plus the factor ``scale`` = s of the batch.

Batches come in *episodes*: one HR volume, one of its axes playing the thick-slice axis, a few consecutive planes
across it, and one random acquisition — profile kind, thickness T (FWHM, mm) and gap g (mm), hence the separation
S = T + g and the factor s = S/Δ. The slice profile is :func:`mrisr.physics.profiles.slice_kernel` at
:func:`mrisr.physics.profiles.kernel_fwhm_voxels`, applied by :class:`SelfTrainingPairs` (the one kernel and the one
blur-and-sample operator of mrisr). Everything is drawn from ``seed`` and the batch's index, so an epoch's batches are
reproducible and independent of the order of workers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mrisr.core.errors import MrisrInputError
from mrisr.data.pairs import EpochSampler
from mrisr.data.sources import load_source, source_name
from mrisr.data.zero_shot import PatchGeometry, Sampling, SelfTrainingPairs
from mrisr.io.intensity import IntensityRule
from mrisr.physics.profiles import FWHMConvention, kernel_fwhm_voxels, slice_kernel

log = logging.getLogger(__name__)

#: Largest relative spread of the three voxel spacings of an HR source (its axes must be interchangeable).
ISOTROPY_TOLERANCE = 0.15


@dataclass(frozen=True)
class Acquisition:
    """One random acquisition of an episode.

    Attributes:
        kind: slice-profile kind.
        thickness_mm: slice thickness T (FWHM, mm).
        gap_mm: gap g = S − T (mm).
        spacing_mm: HR voxel spacing Δ (mm).
        scale: s = (T + g)/Δ.
        fwhm_voxels: kernel FWHM in HR voxels.
    """

    kind: str
    thickness_mm: float
    gap_mm: float
    spacing_mm: float
    scale: float
    fwhm_voxels: float


@dataclass
class HRSource:
    """A min–max normalised isotropic HR volume (float32) and its spacing Δ (mm)."""

    name: str
    data: np.ndarray
    spacing_mm: float


def load_hr_source(source: str, intensity: IntensityRule) -> HRSource:
    """Load one HR source (a NIfTI path or ``mni152``), scaled by ``intensity`` like the per-volume fit's input.

    Raises:
        MrisrInputError: the volume is not (near-)isotropic.
    """
    volume = load_source(source)
    spacing = np.sqrt((np.asarray(volume.affine)[:3, :3] ** 2).sum(0))
    if float(spacing.max() - spacing.min()) > ISOTROPY_TOLERANCE * float(spacing.min()):
        raise MrisrInputError(
            volume.path or source,
            f"voxel spacing {np.round(spacing, 3).tolist()} mm is not isotropic",
            "pretrain only on isotropic high-resolution volumes",
        )
    scaling = intensity.scaling(volume.data, source=volume.path)
    data = scaling.apply(volume.data.astype(np.float32)).astype(np.float32)
    return HRSource(source_name(source), np.ascontiguousarray(data), float(spacing.mean()))


class RandomProfileBatches(Dataset):
    """Map-style dataset whose item ``i`` is one ready batch (dict of tensors), a pure function of ``(seed, i)``.

    Args:
        sources: the HR volumes.
        profiles: candidate profile kinds (drawn uniformly).
        thickness_mm: range [lo, hi] of T (uniform, mm).
        gap_mm: range [lo, hi] of g (uniform, mm; negative = overlap).
        fwhm_convention: thickness → kernel FWHM convention (docs/physics.md §2.2), as in the per-volume fit.
        lr_patch_rows: LR rows per patch.
        patch_cols: columns per patch.
        batch_size: patches per batch.
        batches_per_episode: consecutive batches sharing one volume, axis, plane block and acquisition.
        planes_per_episode: consecutive planes across the thick-slice axis in an episode's block.
        sampling: patch-centre sampling of :class:`SelfTrainingPairs`.
        sampling_sigma: its Gaussian σ (voxels).
        length: number of items (batches per epoch).
        seed: base seed.
    """

    def __init__(
        self,
        sources: Sequence[HRSource],
        profiles: Sequence[str],
        thickness_mm: Sequence[float],
        gap_mm: Sequence[float],
        fwhm_convention: FWHMConvention,
        lr_patch_rows: int,
        patch_cols: int,
        batch_size: int,
        batches_per_episode: int,
        planes_per_episode: int,
        sampling: Sampling,
        sampling_sigma: float,
        length: int,
        seed: int,
    ) -> None:
        self.sources, self.profiles = list(sources), tuple(profiles)
        self.thickness_mm, self.gap_mm = (
            (float(thickness_mm[0]), float(thickness_mm[1])),
            (
                float(gap_mm[0]),
                float(gap_mm[1]),
            ),
        )
        self.fwhm_convention = fwhm_convention
        self.lr_patch_rows, self.patch_cols, self.batch_size = lr_patch_rows, patch_cols, batch_size
        self.batches_per_episode, self.planes_per_episode = batches_per_episode, planes_per_episode
        self.sampling, self.sampling_sigma = sampling, sampling_sigma
        self.length, self.seed = length, seed
        self._episode: tuple[int, SelfTrainingPairs, Acquisition] | None = None

    def __len__(self) -> int:
        return self.length

    def acquisition(self, rng: np.random.Generator, spacing_mm: float) -> Acquisition:
        """A random acquisition on an HR grid of spacing Δ = ``spacing_mm``."""
        kind = str(self.profiles[int(rng.integers(len(self.profiles)))])
        thickness = float(rng.uniform(*self.thickness_mm))
        gap = float(rng.uniform(*self.gap_mm))
        scale = (thickness + gap) / spacing_mm
        fwhm = kernel_fwhm_voxels(thickness, spacing_mm, self.fwhm_convention)
        return Acquisition(kind, thickness, gap, spacing_mm, scale, fwhm)

    def episode(self, index: int) -> tuple[SelfTrainingPairs, Acquisition]:
        """Pair synthesiser and acquisition of episode ``index`` (cached: consecutive items share it)."""
        if self._episode is not None and self._episode[0] == index:
            return self._episode[1], self._episode[2]
        rng = np.random.default_rng([self.seed, index])
        source = self.sources[int(rng.integers(len(self.sources)))]
        axis = int(rng.integers(3))  # any axis of an isotropic volume can play the thick-slice axis
        data = np.moveaxis(source.data, axis, -1)
        planes = min(self.planes_per_episode, data.shape[-1])
        start = int(rng.integers(data.shape[-1] - planes + 1))
        block = torch.from_numpy(np.ascontiguousarray(data[..., start : start + planes]))
        acq = self.acquisition(rng, source.spacing_mm)
        kernel = slice_kernel(acq.fwhm_voxels, acq.kind)  # type: ignore[arg-type]
        patch = PatchGeometry(
            self.lr_patch_rows, max(1, round(acq.scale * self.lr_patch_rows)), self.patch_cols, acq.scale
        )
        pairs = SelfTrainingPairs(block, kernel, patch, self.sampling, self.sampling_sigma)
        self._episode = (index, pairs, acq)
        return pairs, acq

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pairs, acq = self.episode(int(index) // self.batches_per_episode)
        generator = torch.Generator().manual_seed(
            int(np.random.default_rng([self.seed, int(index), 1]).integers(2**62))
        )
        lr, hr = pairs.batch(self.batch_size, generator)
        return {
            "lr": lr,
            "hr": hr,
            "scale": torch.tensor(acq.scale, dtype=torch.float64),
            "thickness_mm": torch.tensor(acq.thickness_mm, dtype=torch.float64),
            "gap_mm": torch.tensor(acq.gap_mm, dtype=torch.float64),
        }


class RandomProfilePairsDataModule(L.LightningDataModule):
    """Self-training batches from HR volumes under random profiles, thicknesses, gaps and factors (module docstring).

    Args:
        train: HR sources of the training batches (NIfTI paths or ``mni152``).
        val: HR sources of the fixed validation batches (a convergence monitor; drawn with another seed).
        profiles: candidate profile kinds (subset of ``slr``, ``gaussian``, ``rect``).
        thickness_mm: range [lo, hi] of the slice thickness T (mm).
        gap_mm: range [lo, hi] of the gap g (mm).
        fwhm_convention: thickness → kernel FWHM convention; must match the per-volume fit's.
        lr_patch_rows: LR rows per patch (the per-volume fit's ``lr_patch_rows``).
        patch_cols: columns per patch (the fit's ``patch_cols``).
        batch_size: patches per batch.
        batches_per_epoch: training batches per epoch.
        batches_per_episode: consecutive batches that share one volume block and acquisition.
        planes_per_episode: planes across the thick-slice axis per episode block.
        val_batches: number of fixed validation batches (one episode each).
        sampling: patch-centre sampling (``gradient`` as in the fit, or ``uniform``).
        sampling_sigma: Gaussian σ (voxels) of the gradient sampling.
        seed: base seed of all draws.
        intensity: the intensity rule of the per-volume fit (min–max to [0, 1], SMORE's), the system's.
    """

    def __init__(
        self,
        train: Sequence[str],
        val: Sequence[str],
        profiles: Sequence[str] = ("slr", "gaussian", "rect"),
        thickness_mm: Sequence[float] = (1.5, 5.0),
        gap_mm: Sequence[float] = (0.0, 1.0),
        fwhm_convention: FWHMConvention = "variance",
        lr_patch_rows: int = 12,
        patch_cols: int = 32,
        batch_size: int = 16,
        batches_per_epoch: int = 200,
        batches_per_episode: int = 16,
        planes_per_episode: int = 8,
        val_batches: int = 16,
        sampling: Sampling = "gradient",
        sampling_sigma: float = 1.0,
        seed: int = 0,
        intensity: IntensityRule | None = None,
    ) -> None:
        super().__init__()
        self.intensity = intensity if intensity is not None else IntensityRule(kind="minmax")
        if not train or not val:
            raise MrisrInputError(None, "the prior needs train and val HR sources", "list them in data.train/val")
        bad = [p for p in profiles if p not in ("slr", "gaussian", "rect")]
        if not profiles or bad:
            raise ValueError(f"profiles must be a non-empty subset of slr, gaussian, rect, got {list(profiles)}")
        for name, (lo, hi) in (("thickness_mm", thickness_mm), ("gap_mm", gap_mm)):
            if not lo <= hi:
                raise ValueError(f"{name} must be a range [lo, hi] with lo ≤ hi, got {list((lo, hi))}")
        if not thickness_mm[0] > 0:
            raise ValueError(f"thickness_mm must be > 0 mm, got {list(thickness_mm)}")
        if not thickness_mm[0] + gap_mm[0] > 0:
            raise ValueError("the separation T + g must be > 0 mm for every draw")
        for name, value in (
            ("batch_size", batch_size),
            ("batches_per_epoch", batches_per_epoch),
            ("batches_per_episode", batches_per_episode),
            ("planes_per_episode", planes_per_episode),
            ("val_batches", val_batches),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {value}")
        self.train_sources, self.val_sources = list(train), list(val)
        self.options = {
            "profiles": tuple(profiles),
            "thickness_mm": tuple(thickness_mm),
            "gap_mm": tuple(gap_mm),
            "fwhm_convention": fwhm_convention,
            "lr_patch_rows": int(lr_patch_rows),
            "patch_cols": int(patch_cols),
            "batch_size": int(batch_size),
            "batches_per_episode": int(batches_per_episode),
            "planes_per_episode": int(planes_per_episode),
            "sampling": sampling,
            "sampling_sigma": float(sampling_sigma),
        }
        self.batches_per_epoch, self.val_batches, self.seed = int(batches_per_epoch), int(val_batches), int(seed)
        self.train_set: RandomProfileBatches | None = None
        self.val_set: list[dict[str, torch.Tensor]] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        loaded: dict[str, HRSource] = {}
        for source in dict.fromkeys(self.train_sources + self.val_sources):
            loaded[source] = load_hr_source(source, self.intensity)
        self.train_set = RandomProfileBatches(
            [loaded[s] for s in self.train_sources], length=self.batches_per_epoch, seed=self.seed, **self.options
        )
        # Fixed validation batches: one per episode, from a seed disjoint from the training draws.
        val_options = {**self.options, "batches_per_episode": 1}
        val = RandomProfileBatches(
            [loaded[s] for s in self.val_sources], length=self.val_batches, seed=self.seed + 10_007, **val_options
        )
        self.val_set = [val[i] for i in range(len(val))]
        log.info(
            "prior pretraining: %d train sources (%s), %d val sources, %d batches/epoch",
            len(self.train_sources),
            ", ".join(loaded[s].name for s in self.train_sources),
            len(self.val_sources),
            self.batches_per_epoch,
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "setup() loads the sources"
        return DataLoader(self.train_set, batch_size=None, sampler=EpochSampler(len(self.train_set)), num_workers=0)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "setup() loads the sources"
        return DataLoader(self.val_set, batch_size=None, shuffle=False, num_workers=0)
