"""The paper experiments' runners on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_graf_run_writes_a_qc_page_per_scored_output(shared_data: Path, tmp_path: Path):
    from conftest import REPO_ROOT, run_command

    out, qc = tmp_path / "rows.csv", tmp_path / "qc"
    args = [
        "--methods",
        "cubic",
        "--subjects",
        "errsm_11",
        "--out",
        str(out),
        "--qc",
        str(qc),
        "--data",
        str(shared_data),
    ]
    proc = run_command([str(REPO_ROOT / "experiments" / "graf2024" / "run.py"), *args])
    assert proc.returncode == 0, proc.stderr[-2000:]
    (page,) = qc.glob("*/qc.json")
    record = json.loads(page.read_text())["record"]
    assert record["subject"] == "errsm_11" and record["model"] == "cubic"
    assert record["thickness_mm"] == record["acquisition"]["thickness_mm"]
    assert (page.parent / "csa.png").is_file() and "errsm_11" in (qc / "index.html").read_text()
