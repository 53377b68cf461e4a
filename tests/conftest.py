"""Shared fixtures: the real shared data (skipped cleanly when absent) and CLI runners."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The tests folder (fixtures of several test packages live in ``support/`` and ``golden/``).
TESTS_DIR = REPO_ROOT / "tests"


def pytest_configure(config: pytest.Config) -> None:
    """Under ``pytest -n N`` (pytest-xdist) each worker gets its share of the cores, for torch and for the processes it
    starts: N workers with a full thread pool each would oversubscribe the machine and slow every test down."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


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


#: Environment of every command a test runs: no display, no network logging, one-line errors.
TOOL_ENV = {"MPLBACKEND": "Agg", "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}


def run_command(
    args: list[str], cwd: Path = REPO_ROOT, timeout: float = 600, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python <args>`` with the test interpreter; returns the completed process (never raises on failure)."""
    env = {**os.environ, **TOOL_ENV, **(extra_env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


#: Entry point → module whose ``main(argv)`` it runs (``-m mrisr.cli.<tool>`` names its module itself).
ENTRY_POINTS = {"infer.py": "mrisr.app.infer", "train.py": "mrisr.app.train"}


def run_tool(args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command line as :func:`run_command` does, but in this process: the tool's ``main`` under
    :func:`mrisr.utils.cli.run_cli` (the code a console script runs), with stdout, stderr and log records captured and
    the exit status taken from ``SystemExit``. A command-line contract (exit status, one ``error:`` line, files
    written or not) costs no interpreter start; ``tests/cli/test_cli.py`` keeps one real process per entry point.

    Args:
        args: ``["infer.py", …]``, ``["train.py", …]`` or ``["-m", "mrisr.cli.<tool>", …]``.
        extra_env: environment variables set for the call (restored afterwards).
    """
    import contextlib
    import importlib
    import io
    import logging
    import traceback

    import torch

    from mrisr.utils.cli import run_cli

    module, argv = (args[1], args[2:]) if args[0] == "-m" else (ENTRY_POINTS[args[0]], args[1:])
    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root, mrisr_log = logging.getLogger(), logging.getLogger("mrisr")
    saved_level, saved_threads = mrisr_log.level, torch.get_num_threads()
    env = {**TOOL_ENV, **(extra_env or {})}
    saved_env = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    root.addHandler(handler)
    mrisr_log.setLevel(logging.INFO)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_cli(main, list(argv))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except Exception:  # what a process would print before dying with status 1
                traceback.print_exc()
                code = 1
    finally:
        root.removeHandler(handler)
        mrisr_log.setLevel(saved_level)
        torch.set_num_threads(saved_threads)
        torch.set_flush_denormal(False)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module: tiny nets gain nothing from intra-op threads, and on a shared machine thread
    contention slows them down (by up to 100×)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def last_json(stdout: str) -> dict:
    """The last line of a command's standard output, parsed as JSON (the result line of every mrisr tool)."""
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def t2_crop_lr(shared_data: Path) -> tuple:
    """A cropped real T2 spine (1 mm) and its simulated 3||1 acquisition along axis 2."""
    import nibabel as nib

    import mrisr

    hr = nib.load(shared_data / "fixtures" / "t2_crop" / "t2.nii.gz")
    return hr, mrisr.simulate(hr, thickness_mm=3.0, gap_mm=1.0, axis=2)


@pytest.fixture
def edsr_checkpoint(tmp_path: Path) -> Path:
    """A checkpoint of an untrained tiny EDSR (config + weights, as train.py writes them)."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from mrisr.utils.config import compose

    cfg = compose("train", ["model=edsr_small", "model.net.n_feats=4", "model.net.n_resblocks=1"])
    model = instantiate(cfg.model)
    path = tmp_path / "tiny.ckpt"
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    torch.save({"mrisr_config": {"model": model_cfg}, "state_dict": model.state_dict()}, path)
    return path
