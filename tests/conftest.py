"""Shared fixtures: the real shared data (skipped cleanly when absent) and CLI runners."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
