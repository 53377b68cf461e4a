"""``mrisr-report`` over a Hydra multirun of train.py."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_tool
from support.reports import assert_png, run_report


@pytest.fixture(scope="module")
def smoke_multirun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two smoke trainings that differ in slice thickness, as one Hydra multirun (about 40 s of CPU on 2 cores)."""
    runs_dir = tmp_path_factory.mktemp("runs")
    proc = run_tool(
        [
            "train.py",
            "-m",
            "experiment=smoke",
            f"paths.runs_dir={runs_dir}",
            "degradation.thickness_mm=3,5",
            "~eval.montage",
            "logger=none",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    multiruns = sorted((runs_dir / "train").glob("multirun_*"))
    assert len(multiruns) == 1
    return multiruns[0]


@pytest.mark.slow
def test_report_of_smoke_multirun(smoke_multirun: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "report"
    result = run_report([f"runs={smoke_multirun}", f"output={out}", "reference=cubic"], capsys)
    labels = ["degradation.thickness_mm=3", "degradation.thickness_mm=5"]
    assert result["runs"] == 2 and result["labels"] == labels

    markdown = (out / "benchmark.md").read_text()
    header = markdown.splitlines()[0]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == ["Run", "Setting", "Metric", "edsr_small", "nearest", "linear", "cubic"]
    for label in labels:
        assert sum(line.startswith(f"| {label} |") for line in markdown.splitlines()) == 2  # psnr and ssim rows
    assert markdown.count("**") >= 8  # one bold best per row
    assert "against cubic" in markdown

    latex = (out / "benchmark.tex").read_text()
    for command in ("\\begin{tabular}", "\\toprule", "\\midrule", "\\bottomrule", "\\textbf{", "thickness\\_mm=3"):
        assert command in latex
    body = [line for line in latex.splitlines() if not line.startswith("%")]
    assert not any(re.search(r"(?<!\\)_", line) for line in body), "unescaped underscore"

    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 * 2 * 4 and set(summary["label"]) == set(labels)
    assert summary.groupby(["label", "metric"])["best"].sum().eq(1).all()
    assert (summary["n"] == 1).all()
    runs = pd.read_csv(out / "runs.csv")
    assert runs["overrides"].str.contains("degradation.thickness_mm").all()

    assert {Path(f).name for f in result["figures"]} == {"boxplot_psnr.png", "boxplot_ssim.png"}
    for figure in result["figures"]:
        assert_png(Path(figure))
