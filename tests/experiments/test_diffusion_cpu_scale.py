"""CPU-scale diffusion recipes and their learning-curve script (experiments/benchmarks/diffusion_cpu_scale.py)."""

from __future__ import annotations

import csv
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
import torch

from conftest import REPO_ROOT
from mrisr.utils.config import compose

SCRIPT = REPO_ROOT / "experiments" / "benchmarks" / "diffusion_cpu_scale.py"


@pytest.fixture(scope="module")
def scale() -> ModuleType:
    sys.path.insert(0, str(SCRIPT.parent))  # the recorder is instantiated by its module name, as in the script
    spec = importlib.util.spec_from_file_location(SCRIPT.stem, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[SCRIPT.stem] = module
    spec.loader.exec_module(module)
    return module


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(("experiment", "formulation"), [("palette_cpu", "ddpm"), ("palette_residual_cpu", "residual")])
def test_cpu_recipes_keep_the_test_subjects_out_and_select_by_sampled_psnr(experiment: str, formulation: str) -> None:
    cfg = compose("train", [f"experiment={experiment}"])
    sources = " ".join(cfg.data.train + cfg.data.val)
    assert "errsm_20" in sources and "errsm_22" in sources
    assert not any(s in sources for s in ("errsm_11", "errsm_18", "errsm_21"))
    assert cfg.model.get("formulation", "ddpm") == formulation and cfg.degradation.setting == "graf_row8"
    assert cfg.data.val_stack == "test" and cfg.num_threads == 1
    # Checkpoints are selected by the system's own metric: the PSNR of sampled validation crops, higher is better.
    from mrisr.systems.diffusion import DiffusionSR

    checkpoint = cfg.callbacks.model_checkpoint
    assert (checkpoint.monitor, checkpoint.mode) == DiffusionSR.monitor == ("val/psnr", "max")


def test_validation_crops_follow_the_test_time_acquisition(shared_data: Path) -> None:
    from hydra.utils import instantiate

    overrides = ["experiment=palette_residual_cpu", f"paths.data={shared_data}", "data.val_patches=2"]
    data = instantiate(compose("train", overrides).data)
    assert data.validation_degradation() is data.degradation.test_time
    assert data.validation_degradation().setting == "graf_eval"
    data.val_stack = "train"
    assert data.validation_degradation() is data.degradation


def test_curve_rows_per_validation_resume_and_merge(scale: ModuleType, shared_data: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    tiny = ("data.patch_size=32", "data.batch_size=2", "data.val_patches=2", "+trainer.num_sanity_val_steps=0")
    probe = scale.Probe("t", "residual", tiny, steps=4, val_every=2)
    curve = scale.run_probe(probe, tmp_path, shared_data)
    first = rows(curve)
    assert [int(r["step"]) for r in first] == [2, 4]
    assert float(first[1]["train_cpu_s"]) > float(first[0]["train_cpu_s"]) > 0
    for row in first:
        # The residual sampler is deterministic (σ = 0): the extra 1-step PSNR is the system's own val/psnr.
        assert float(row["psnr_residual1"]) == pytest.approx(float(row["psnr"]), abs=1e-3)
        assert float(row["gain"]) == pytest.approx(float(row["psnr"]) - float(row["psnr_input"]), abs=1e-3)
        assert all(f"x0_mse_ratio_t{b}" in row for b in ("0.00-0.25", "0.75-1.00"))
    assert scale.run_probe(probe, tmp_path, shared_data) == curve and rows(curve) == first  # complete: not rerun
    # A longer budget continues from last.ckpt, with the clock restored from the checkpoint.
    longer = scale.run_probe(replace(probe, steps=6), tmp_path, shared_data)
    again = rows(longer)
    assert [int(r["step"]) for r in again] == [2, 4, 6] and again[:2] == first
    assert float(again[2]["train_cpu_s"]) > float(first[1]["train_cpu_s"])
    out = tmp_path / "curves.csv"
    merged = scale.merge(tmp_path, [replace(probe, steps=6)], out)
    assert [(r["probe"], int(r["step"])) for r in merged] == [("t", 2), ("t", 4), ("t", 6)]
    assert [p.name for p in scale.plot(out)] == ["diffusion_cpu_scale_residual.png"]
