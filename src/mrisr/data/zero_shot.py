"""Self-training pairs from one thick-slice volume (SMORE: Zhao et al., IEEE TMI 2021; docs/models.md §1.2–§1.4).

The volume's own in-plane data play the role of the high-resolution truth: an in-plane axis is blurred with the
slice profile of the acquisition (the same :func:`mrisr.physics.slice_kernel` as every simulation) and sampled with
the slice separation, giving (LR, HR) patch pairs whose LR rows look like the through-plane axis.

Batches are synthesised in a few vectorised tensor operations:
1. once per volume: half-sample-symmetric padding in-plane, blur along each in-plane axis (the whole plane, so patch
   borders never see padding of the patch itself; docs/physics.md §7 "patch = crop of whole"), and the joint
   gradient-weighted sampling density of patch centres (§1.4);
2. per batch: centres drawn from the density, one of the 8 dihedral in-plane variants per sample (which in-plane axis
   plays the thick-slice axis, and row/column flips), a gather of the blurred window and the HR target, and one
   matrix product with the same-FOV cubic B-spline sampling matrix (docs/physics.md §3) that turns the window into the
   LR rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import lightning as L
import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import DataLoader, IterableDataset

from mrisr.physics.forward import blur_axis, reflect_indices
from mrisr.physics.resample import interpolation_matrix

Sampling = Literal["gradient", "uniform"]

# Rows of B-spline support kept around the blurred window so the spline prefilter of the window matches the whole
# plane's (docs/physics.md §7: m ≥ 8 for a prefiltered B-spline).
SPLINE_MARGIN = 8


@dataclass(frozen=True)
class PatchGeometry:
    """Row/column sizes of one training pair.

    Attributes:
        lr_rows: LR rows (thick-slice direction) fed to the network.
        hr_rows: HR target rows = round(s · lr_rows) (the network's output length).
        cols: columns (in-plane direction, untouched).
        scale: s = S / Δ.
    """

    lr_rows: int
    hr_rows: int
    cols: int
    scale: float

    @property
    def lr_positions(self) -> np.ndarray:
        """HR-row positions of the LR rows inside the target patch (same-FOV: p_j = c + (j − (H_lr − 1)/2)·s)."""
        j = np.arange(self.lr_rows, dtype=np.float64)
        return (self.hr_rows - 1) / 2 + (j - (self.lr_rows - 1) / 2) * self.scale

    @property
    def margin(self) -> int:
        """Window rows kept beyond the HR target on each side (reach of the LR positions + spline support)."""
        reach = max(0.0, -float(self.lr_positions[0]), float(self.lr_positions[-1]) - (self.hr_rows - 1))
        return int(np.ceil(reach)) + SPLINE_MARGIN


def gradient_density(volume: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Patch-centre density w = Σ_axes √|∂(G_σ ⊛ I)/∂axis| (central differences; docs/models.md §1.4), normalised."""
    smooth = ndimage.gaussian_filter(volume.astype(np.float64), sigma=sigma, mode="reflect")
    weight = np.zeros_like(smooth)
    for axis in range(volume.ndim):
        if volume.shape[axis] > 1:
            weight += np.sqrt(np.abs(np.gradient(smooth, axis=axis)))
    total = weight.sum()
    if not np.isfinite(total) or total <= 0:
        return np.full(volume.shape, 1.0 / volume.size)
    return weight / total


class SelfTrainingPairs:
    """Synthesises batches of (LR, HR) planes from one volume whose thick-slice axis is last.

    Args:
        volume: ``(X, Y, Z)`` normalised intensities, Z = the acquired thick-slice axis.
        kernel: slice-profile kernel in in-plane voxels (unit sum, odd length).
        patch: patch sizes.
        sampling: ``gradient`` (joint gradient-weighted centres) or ``uniform``.
        sigma: Gaussian smoothing (voxels) before the gradient.
        device: where batches are built.
    """

    def __init__(
        self,
        volume: torch.Tensor,
        kernel: np.ndarray,
        patch: PatchGeometry,
        sampling: Sampling = "gradient",
        sigma: float = 1.0,
        device: torch.device | str = "cpu",
    ) -> None:
        if volume.ndim != 3:
            raise ValueError(f"volume must be (X, Y, Z), got shape {tuple(volume.shape)}")
        self.patch = patch
        self.shape = tuple(volume.shape)
        self.pad = patch.hr_rows // 2 + patch.margin + max(patch.cols, patch.hr_rows)
        vol = volume.to(device=device, dtype=torch.float32)
        index_x = torch.as_tensor(reflect_indices(self.shape[0], self.pad), device=device)
        index_y = torch.as_tensor(reflect_indices(self.shape[1], self.pad), device=device)
        self.hr = vol.index_select(0, index_x).index_select(1, index_y).contiguous()  # (Xp, Yp, Z)
        # Whole-plane blur along each in-plane axis; stacked so one gather serves both orientations.
        self.blurred = torch.stack([blur_axis(self.hr, kernel, axis=0), blur_axis(self.hr, kernel, axis=1)])
        window = patch.hr_rows + 2 * patch.margin
        self.sampling_matrix = torch.as_tensor(
            np.array(interpolation_matrix(window, patch.lr_positions + patch.margin, order=3)),
            dtype=torch.float32,
            device=device,
        )
        if sampling == "gradient":
            density = gradient_density(volume.cpu().numpy(), sigma)
        elif sampling == "uniform":
            density = np.full(self.shape, 1.0 / np.prod(self.shape))
        else:
            raise ValueError(f"sampling must be 'gradient' or 'uniform', got {sampling!r}")
        self.cdf = torch.as_tensor(np.cumsum(density.ravel()), dtype=torch.float64, device=device)
        self.device = torch.device(device)

    def batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: ``lr (B, 1, lr_rows, cols)`` and ``hr (B, 1, hr_rows, cols)``.

        Centres are drawn from the density; each sample gets a random dihedral variant (thick-slice axis X or Y,
        rows and columns flipped or not). Randomness comes only from ``generator``.
        """
        dev = self.device
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64).to(dev)
        flat = torch.searchsorted(self.cdf, u * self.cdf[-1]).clamp_max(self.cdf.numel() - 1)
        _, ny, nz = self.shape
        centres = torch.stack([flat // (ny * nz), (flat // nz) % ny, flat % nz], dim=1)
        variant = torch.randint(0, 8, (batch_size,), generator=generator).to(dev)
        return self.assemble(centres, variant)

    def assemble(self, centres: torch.Tensor, variant: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs at given centres ``(B, 3)`` (voxel indices of the unpadded volume) and dihedral variants ``(B,)``.

        Variant bits: 1 → the thick-slice axis is Y (else X); 2 → rows flipped; 4 → columns flipped.
        """
        p, dev = self.patch, self.device
        centres, variant = centres.to(dev), variant.to(dev)
        cx, cy, cz = centres.unbind(1)
        along_y = (variant & 1).bool()  # thick-slice axis played by Y instead of X
        flip_rows, flip_cols = (variant & 2).bool(), (variant & 4).bool()

        rows = torch.arange(p.hr_rows + 2 * p.margin, device=dev) - (p.hr_rows // 2 + p.margin)
        cols = torch.arange(p.cols, device=dev) - p.cols // 2
        # A flip reads the same positions in reverse order; the LR positions are symmetric about the window centre,
        # so blurring/sampling commutes with it.
        rows = torch.where(flip_rows[:, None], rows.flip(0)[None, :], rows[None, :])
        cols = torch.where(flip_cols[:, None], cols.flip(0)[None, :], cols[None, :])
        row_centre = torch.where(along_y, cy, cx)[:, None] + self.pad
        col_centre = torch.where(along_y, cx, cy)[:, None] + self.pad
        r = (row_centre + rows)[:, :, None]  # (B, R, 1)
        c = (col_centre + cols)[:, None, :]  # (B, 1, W)
        ix = torch.where(along_y[:, None, None], c, r)
        iy = torch.where(along_y[:, None, None], r, c)
        iz = cz[:, None, None]
        window = self.blurred[along_y.long()[:, None, None], ix, iy, iz]  # (B, R, W)
        target = self.hr[ix, iy, iz][:, p.margin : p.margin + p.hr_rows]
        lr = torch.einsum("lr,brw->blw", self.sampling_matrix, window)
        return lr.unsqueeze(1), target.unsqueeze(1)


class _BatchStream(IterableDataset):
    """Endless stream of ready batches (the DataLoader does no collation)."""

    def __init__(self, pairs: SelfTrainingPairs, batch_size: int, seed: int) -> None:
        self.pairs, self.batch_size, self.seed = pairs, batch_size, seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            lr, hr = self.pairs.batch(self.batch_size, generator)
            yield {"lr": lr, "hr": hr}


class SingleVolumeDataModule(L.LightningDataModule):
    """Training data for a per-volume (zero-shot) fit: endless self-training batches from one volume."""

    def __init__(self, pairs: SelfTrainingPairs, batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.pairs, self.batch_size, self.seed = pairs, batch_size, seed

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_BatchStream(self.pairs, self.batch_size, self.seed), batch_size=None, num_workers=0)
