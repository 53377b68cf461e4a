"""Small synthetic volumes and files shared by several test packages."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from mrisr.io.nifti import Volume
from mrisr.nets.edsr import EDSR
from mrisr.nets.rrdbnet import RRDBNet
from mrisr.physics.forward import simulate_thick_slices


def ball_phantom(shape: tuple[int, int, int] = (96, 96, 96), seed: int = 0) -> np.ndarray:
    """Isotropic 1 mm phantom of random balls (radius 2–8 mm, contrast 0.2–1) with a 0.5-voxel Gaussian PSF."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    volume = np.zeros(shape, dtype=np.float32)
    for _ in range(int(np.prod(shape) / 2500)):
        centre = rng.uniform(0, 1, 3) * np.array(shape)
        radius, value = rng.uniform(2.0, 8.0), rng.uniform(0.2, 1.0)
        lo = np.maximum((centre - radius - 1).astype(int), 0)
        hi = np.minimum((centre + radius + 2).astype(int), shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        volume[box] += value * (sum((grid[i][box] - centre[i]) ** 2 for i in range(3)) <= radius**2)
    return ndimage.gaussian_filter(volume.astype(np.float64), 0.5)


def thick_stack(volume: np.ndarray, thickness: float, separation: float, kind: str) -> np.ndarray:
    """Thick-slice stack of ``volume`` along axis 2 (1 mm voxels; thickness and separation in mm)."""
    return np.asarray(
        simulate_thick_slices(
            volume, axis=2, spacing_mm=1.0, thickness_mm=thickness, separation_mm=separation, profile=kind
        ).lr
    )


def thick_phantom(shape: tuple[int, int, int] = (40, 36, 10), spacing: tuple[float, ...] = (1.0, 1.0, 4.0)) -> Volume:
    """Smooth positive thick-slice volume (4 mm slices along axis 2 by default)."""
    rng = np.random.default_rng(0)
    data = ndimage.gaussian_filter(rng.random(shape), sigma=(3, 3, 1)).astype(np.float32) + 0.5
    return Volume(data=data, affine=np.diag([*spacing, 1.0]))


def axial_volume(shape: tuple[int, int, int] = (14, 12, 5), thickness: float = 3.0) -> Volume:
    """Smooth phantom on an axial (LAS-like) thick-slice grid: 1 mm in plane, ``thickness`` mm along axis 2."""
    grid = np.mgrid[0 : shape[0], 0 : shape[1], 0 : shape[2]].astype(np.float32)
    data = 100 + 50 * np.sin(grid[0] / 3) * np.cos(grid[1] / 4) + 10 * grid[2]
    affine = np.diag([-1.0, 1.0, thickness, 1.0])
    affine[:3, 3] = [20.0, -5.0, 12.0]
    return Volume(data=data.astype(np.float32), affine=affine, header=nib.Nifti1Header(), path=None)


def phantom_volume(shape: tuple[int, int, int] = (12, 10, 60), spacing: float = 1.0, seed: int = 0) -> Volume:
    """Positive smooth random phantom with an oblique affine (through-plane axis 2)."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(0.2, 1.0, size=shape)
    data = ndimage.gaussian_filter(data, 1.5) * 800.0
    affine = np.eye(4)
    theta = 0.3
    affine[:3, :3] = np.array(
        [[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]]
    )
    affine[:3, :3] = affine[:3, :3] * np.array([0.9, 0.9, spacing])[None, :]
    affine[:3, 3] = [-20.0, 13.5, 7.25]
    return Volume(data=data.astype(np.float32), affine=affine)


def bad_pretrained_files(tmp_path: Path) -> dict[str, Path]:
    """Pretrained-weight files a PRETTIER system must refuse: wrong layout, wrong channels, truncated."""
    files = {}
    files["layout"] = tmp_path / "rrdb.pt"
    torch.save(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).state_dict(), files["layout"])
    files["channels"] = tmp_path / "two_channel.pt"
    torch.save(EDSR(in_channels=2, out_channels=2, n_feats=8, n_resblocks=1, upscale=4).state_dict(), files["channels"])
    good = tmp_path / "good.pt"
    torch.save(EDSR(in_channels=3, out_channels=3, n_feats=8, n_resblocks=1, upscale=4).state_dict(), good)
    files["truncated"] = tmp_path / "truncated.pt"
    files["truncated"].write_bytes(good.read_bytes()[:200])
    return files
