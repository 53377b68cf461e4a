"""Training scaffolding end to end: smoke experiment, checkpoint → infer, resume, config composition."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import run_command, run_tool


def find_run_dir(runs_dir: Path) -> Path:
    runs = sorted(p for p in (runs_dir / "train").iterdir() if p.is_dir())
    assert runs, f"no run directory under {runs_dir}"
    return runs[-1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs_dir = tmp_path_factory.mktemp("runs")
    # In this process: train.py's real process is covered by its --help (test_cli) and the reruns of test_reliability.
    proc = run_tool(["train.py", "experiment=smoke", f"paths.runs_dir={runs_dir}"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    return find_run_dir(runs_dir)


def test_smoke_run_writes_metrics_checkpoint_and_montage(smoke_run: Path) -> None:
    rows = list(csv.DictReader((smoke_run / "test_metrics.csv").open()))
    methods = {row["method"] for row in rows}
    assert {"edsr_small", "nearest", "linear", "cubic"} <= methods
    assert {row["metric"] for row in rows} == {"psnr", "ssim", "fg_std_ratio"}  # the last feeds the degenerate guard
    for row in rows:
        assert np.isfinite(float(row["value"]))
    psnr = {row["method"]: float(row["value"]) for row in rows if row["metric"] == "psnr"}
    # Physics sanity on the held-out slab: cubic B-spline beats nearest neighbour.
    assert psnr["cubic"] > psnr["nearest"]
    assert (smoke_run / "checkpoints" / "last.ckpt").is_file()
    pngs = list(smoke_run.glob("montage_*.png"))
    assert pngs and pngs[0].stat().st_size > 5000
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    assert "test/psnr" in metrics and "val/loss" in metrics
    assert (smoke_run / ".hydra" / "config.yaml").is_file()


def test_checkpoint_alone_rebuilds_model_for_infer(smoke_run: Path, tmp_path: Path) -> None:
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    stored = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert stored["mrisr_config"]["model"]["_target_"] == "mrisr.systems.supervised.SupervisedSR"
    # A synthetic thick-slice input: 2 mm slices of a smooth 1 mm in-plane phantom.
    grid = np.mgrid[0:40, 0:36, 0:12].astype(np.float32)
    data = 100 + 50 * np.sin(grid[0] / 6) * np.cos(grid[1] / 5) + 10 * grid[2]
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    lr_path = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), lr_path)
    out = tmp_path / "sr.nii.gz"
    proc = run_tool(
        ["infer.py", f"input={lr_path}", f"output={out}", f"ckpt_path={ckpt}", f"paths.runs_dir={tmp_path}"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sr = nib.load(out)
    assert sr.shape == (40, 36, 24)
    np.testing.assert_allclose(sr.affine[:3, 3], [0, 0, -0.5], atol=1e-6)
    assert np.isfinite(sr.get_fdata()).all()


def test_network_model_without_checkpoint_is_refused(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((20, 20, 6)).astype(np.float32) + 1
    lr_path = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])), lr_path)
    proc = run_tool(
        [
            "infer.py",
            f"input={lr_path}",
            f"output={tmp_path / 'o.nii.gz'}",
            "model=edsr_small",
            f"paths.runs_dir={tmp_path}",
        ]
    )
    assert proc.returncode != 0 and "ckpt_path" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.nii.gz").exists()


def test_resume_from_checkpoint_continues_training(smoke_run: Path, tmp_path: Path) -> None:
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    proc = run_tool(
        [
            "train.py",
            "experiment=smoke",
            f"paths.runs_dir={tmp_path}",
            f"ckpt_path={ckpt}",
            "trainer.max_epochs=2",
            "test=false",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = torch.load(find_run_dir(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 6


def test_spine_data_option_trains_on_shared_spines(shared_data: Path, tmp_path: Path) -> None:
    errsm_11 = shared_data / "spine_hr" / "errsm_11" / "t2.nii.gz"
    proc = run_tool(
        [
            "train.py",
            "experiment=smoke",
            "data=spine",
            f"paths.runs_dir={tmp_path}",
            f"data.test=[{errsm_11}]",
            "eval=image_metrics",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((find_run_dir(tmp_path) / "test_metrics.csv").open()))
    assert {row["subject"] for row in rows} == {"errsm_11/t2"}
    psnr = {row["method"]: float(row["value"]) for row in rows if row["metric"] == "psnr"}
    assert psnr["cubic"] > psnr["nearest"]


@pytest.mark.slow
def test_two_process_ddp_validation_equals_single_process(smoke_run: Path, tmp_path: Path) -> None:
    """trainer=ddp_cpu (2 gloo processes) reports the same validation metrics as one process for the same weights."""
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    results = {}
    for name, extra in (("single", []), ("ddp", ["trainer=ddp_cpu"])):
        runs = tmp_path / name
        proc = run_command(
            [
                "train.py",
                "experiment=smoke",
                *extra,
                "train=false",
                "test=false",
                f"ckpt_path={ckpt}",
                f"paths.runs_dir={runs}",
            ]
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = json.loads((find_run_dir(runs) / "metrics.json").read_text())
    for key in ("val/loss", "val/psnr", "val/psnr_input"):
        assert results["ddp"][key] == pytest.approx(results["single"][key], rel=1e-6)


def test_slurm_launcher_config_composes() -> None:
    proc = run_tool(["train.py", "hydra/launcher=slurm", "--cfg", "hydra"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in proc.stdout
