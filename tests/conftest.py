"""Shared fixtures: the real shared data (skipped cleanly when absent) and CLI runners."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$MRISR_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("MRISR_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "spine_hr").is_dir():
        pytest.skip(f"shared MRI data not found at {path} (set MRISR_DATA)")
    return path


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_command(
    args: list[str], cwd: Path = REPO_ROOT, timeout: float = 600, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python <args>`` with the test interpreter; returns the completed process (never raises on failure)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0", **(extra_env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def phantom(shape: tuple[int, int, int] = (48, 42, 54), seed: int = 0) -> np.ndarray:
    """Smooth textured ellipsoid (about a quarter of the box), zero outside."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = (grid**2).sum(0) < 0.6
    texture = ndimage.gaussian_filter(rng.random(shape), 2.0)
    return (inside * (100.0 + 400.0 * (texture - texture.min()) / np.ptp(texture))).astype(np.float32)


@pytest.fixture
def hr_files(tmp_path: Path) -> list[str]:
    """Three phantom HR volumes (1 mm isotropic) as NIfTI files ``sub<i>/hr.nii.gz``."""
    from mrisr.io.nifti import save_volume

    paths = []
    for i in range(3):
        path = tmp_path / f"sub{i}" / "hr.nii.gz"
        save_volume(phantom(seed=i), path, affine=np.eye(4))
        paths.append(str(path))
    return paths
