"""Cord tools on the command line: mrisr-mucca with the classical segmenter, cord rows of the smoke experiment."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import last_json, run_tool


@pytest.mark.slow
def test_mucca_cli_subprocess_segments_with_classical_backend(shared_data: Path) -> None:
    """``python -m mrisr.cli.mucca image=… c2=…``: the built-in segmenter, JSON with ``mucca_mm2`` on the last line."""
    errsm = shared_data / "spine_hr" / "errsm_21"
    proc = run_tool(
        ["-m", "mrisr.cli.mucca", f"image={errsm / 't2.nii.gz'}", f"c2={errsm / 't2_landmarks_C2_T2_center.nii.gz'}"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = last_json(proc.stdout)
    assert result["backend"] == "classical" and result["status"] == "ok"
    assert result["mucca_mm2"] == pytest.approx(82.02, rel=0.05)  # manual-mask MUCCA ± 5 %


@pytest.mark.slow
def test_smoke_experiment_writes_cord_and_topology_rows(shared_data: Path, tmp_path: Path) -> None:
    """``train.py experiment=smoke data=spine eval=[image_metrics,cord,topology]``: rows in the run directory."""
    errsm_11 = shared_data / "spine_hr" / "errsm_11" / "t2.nii.gz"
    proc = run_tool(
        [
            "train.py",
            "experiment=smoke",
            "data=spine",
            f"paths.runs_dir={tmp_path}",
            f"data.test=[{errsm_11}]",
            "eval=[image_metrics,cord,topology]",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = sorted(p for p in (tmp_path / "train").iterdir() if p.is_dir())[-1]
    rows = list(csv.DictReader((run_dir / "cord_metrics.csv").open()))
    value = {(r["method"], r["metric"]): r for r in rows}
    # HR: the manual mask and C2 landmark supplied by the data module; LR and SR segmented on their own grids.
    assert float(value[("HR", "mucca_mm2")]["value"]) == pytest.approx(75.77, abs=0.1)
    assert {r["method"] for r in rows} >= {"HR", "LR", "edsr_small"}
    assert all(r["subject"] == "errsm_11/t2" for r in rows)
    assert (run_dir / "cord_perslice.csv").is_file() and (run_dir / "test_metrics.csv").is_file()
    assert "topology: no 'vertebrae' annotation" in proc.stderr + (run_dir / "train.log").read_text()
