"""``infer.py`` model options on the command line: budgets and checkpoint-model options, refused with one line."""

from __future__ import annotations

from pathlib import Path

from conftest import run_tool
from support.volumes import thick_phantom


def test_negative_budget_on_the_command_line_is_one_clear_error(tmp_path: Path) -> None:
    lr = thick_phantom().to_nifti()
    source = tmp_path / "lr.nii.gz"
    lr.to_filename(source)
    out = tmp_path / "sr.nii.gz"
    proc = run_tool(["infer.py", f"input={source}", f"output={out}", "model=smore_smoke", "budget.max_time=-5"])
    assert proc.returncode != 0
    assert "budget.max_time" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_command_line_model_options_reach_a_checkpoint_model(edsr_checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "lr.nii.gz"
    thick_phantom().to_nifti().to_filename(source)
    out = tmp_path / "sr.nii.gz"
    common = ["infer.py", f"input={source}", f"output={out}", f"ckpt_path={edsr_checkpoint}", "model=edsr_small"]
    proc = run_tool([*common, "model.inference_batch_size=2"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file()
    refused = run_tool([*common, f"output={tmp_path / 'b.nii.gz'}", "model.net.n_feats=8"])
    assert refused.returncode != 0 and "model.net.n_feats is not an inference option" in refused.stderr
    assert not (tmp_path / "b.nii.gz").exists()
