"""Determinism and fault tolerance: bit-identical reruns, kill -9 + resume, no partial outputs after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, TESTS_DIR, run_command, run_tool

SUPPORT = str(TESTS_DIR / "support")


def train(runs: Path, *extra: str) -> subprocess.CompletedProcess:
    """Smoke training run; tests/support is importable so fault-injection callbacks can be configured."""
    python_path = os.pathsep.join(p for p in (SUPPORT, os.environ.get("PYTHONPATH")) if p)
    return run_command(
        ["train.py", "experiment=smoke", "test=false", f"paths.runs_dir={runs}", *extra],
        extra_env={"PYTHONPATH": python_path},
    )


def last_weights(runs: Path) -> dict[str, torch.Tensor]:
    run = sorted((runs / "train").iterdir())[-1]
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_supervised_training_is_bit_identical_under_a_seed(tmp_path: Path) -> None:
    for name in ("a", "b"):  # two fresh processes with the same seed
        proc = train(tmp_path / name, "seed=5")
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_weights(last_weights(tmp_path / "a"), last_weights(tmp_path / "b"))
    # Another seed need only give other weights: run in this process, no interpreter start.
    proc = run_tool(["train.py", "experiment=smoke", "test=false", f"paths.runs_dir={tmp_path / 'c'}", "seed=6"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not all(torch.equal(v, last_weights(tmp_path / "c")[k]) for k, v in last_weights(tmp_path / "a").items())


@pytest.mark.slow
def test_kill_during_training_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    epochs = "trainer.max_epochs=4"
    proc = train(tmp_path / "whole", epochs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 3 steps per epoch: the kill lands in the third epoch, after last.ckpt of the second epoch (step 6) exists.
    killed = train(
        tmp_path / "killed", epochs, "+callbacks.kill._target_=fault_injection.KillAtStep", "+callbacks.kill.step=7"
    )
    assert killed.returncode == -signal.SIGKILL
    run = sorted((tmp_path / "killed" / "train").iterdir())[-1]
    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 6
    resumed = train(tmp_path / "resumed", epochs, f"ckpt_path={ckpt}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(last_weights(tmp_path / "whole"), last_weights(tmp_path / "resumed"))


def test_kill_during_inference_leaves_no_output(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((40, 36, 10)).astype(np.float32) + 1
    lr = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])), lr)
    out = tmp_path / "sr.nii.gz"
    args = [sys.executable, "infer.py", f"input={lr}", f"output={out}", "model=smore_smoke",
            "budget.max_steps=100000", "budget.max_time=600", f"paths.runs_dir={tmp_path}"]  # fmt: skip
    process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(15)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not out.exists() and not (tmp_path / "sr.mrisr.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sr")]
