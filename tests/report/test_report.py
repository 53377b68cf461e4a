"""Benchmark report: tables, figures, labels, markers and robustness; a real smoke multirun end to end (slow)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mrisr import report
from mrisr.eval import cohort
from mrisr.utils.cli import run_cli
from support.reports import assert_png, run_report


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_table_compiles_with_booktabs(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rows = [(f"s{i}", s, m, k, 30.0 + i + (m == "my_model")) for i in range(5) for s in ("T3_S3", "3||0.5")
            for m in ("my_model", "cubic") for k in ("psnr", "ssim_%")]  # fmt: skip
    _fake_run(tmp_path / "runs", "0", ["model=my_model", "data.x=a_b"], _tidy(rows))
    _fake_run(tmp_path / "runs", "1", ["model=my_model", "data.x=c&d"], _tidy(rows))
    run_report([f"runs={tmp_path / 'runs'}", f"output={tmp_path}"], capsys)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{benchmark.tex}\n\\end{document}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def _tidy(rows: list[tuple[str, str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["subject", "setting", "method", "metric", "value"])


def _fake_run(root: Path, name: str, overrides: list[str], frame: pd.DataFrame) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    frame.to_csv(run / "test_metrics.csv", index=False)
    (run / "csv").mkdir()
    pd.DataFrame({"epoch": [0], "val/loss": [0.1]}).to_csv(run / "csv" / "metrics.csv", index=False)
    return run


def test_runs_are_labelled_by_differing_overrides_and_seeds_pooled(tmp_path: Path):
    rng = np.random.default_rng(0)

    def frame(shift: float) -> pd.DataFrame:
        return _tidy([(f"s{i}", "T3", m, "psnr", 30 + shift + rng.normal()) for i in range(4) for m in ("SR", "cubic")])

    common = ["experiment=smoke", f"paths.runs_dir={tmp_path}"]
    _fake_run(tmp_path / "multi", "0", [*common, "model=a", "seed=0"], frame(0))
    _fake_run(tmp_path / "multi", "1", [*common, "model=a", "seed=1"], frame(0))
    _fake_run(tmp_path / "multi", "2", [*common, "model=b", "seed=0"], frame(2))
    runs = report.label_runs(report.find_runs([tmp_path / "multi"]))
    assert [r.label for r in runs] == ["model=a", "model=a", "model=b"]  # csv/metrics.csv is not a run
    summary = report.summarize(report.load_runs(runs), reference="cubic")
    pooled = summary[(summary.label == "model=a") & (summary.method == "SR")]
    assert pooled["n"].tolist() == [8]
    no_pool = report.label_runs(report.find_runs([tmp_path / "multi"]), pool=())
    assert [r.label for r in no_pool] == ["model=a, seed=0", "model=a, seed=1", "model=b, seed=0"]


def test_markers_best_values_and_escaping(tmp_path: Path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(30):
        base = rng.normal(30, 2)
        rows += [(f"s{i}", "3||0.5", "my_model", "psnr", base + 1.0 + rng.normal(0, 0.3))]
        rows += [(f"s{i}", "3||0.5", "cubic", "psnr", base)]
        rows += [(f"s{i}", "3||0.5", "other", "psnr", base + rng.normal(0, 0.3))]
        rows += [(f"s{i}", "3||0.5", m, "lpips", 0.2 - (m == "my_model") * 0.05 + rng.normal(0, 0.01))
                 for m in ("my_model", "cubic", "other")]  # fmt: skip
    path = tmp_path / "bench.csv"
    _tidy(rows).to_csv(path, index=False)
    summary = report.summarize(report.load_runs(report.label_runs(report.find_runs([path]))), reference="cubic")
    mine = summary.set_index(["metric", "method"])
    assert mine.loc[("psnr", "my_model"), "marker"] == "***" and mine.loc[("psnr", "my_model"), "best"]
    assert mine.loc[("lpips", "my_model"), "best"] and mine.loc[("lpips", "my_model"), "direction"] == -1
    assert mine.loc[("psnr", "other"), "p_vs_reference"] > 0.001 and mine.loc[("psnr", "cubic"), "marker"] == ""
    latex = report.latex_table(summary)
    assert "my\\_model" in latex and "3\\textbar{}\\textbar{}0.5" in latex and "$^{***}$" in latex
    assert "\\textbf{31." in latex or "\\textbf{3" in latex
    markdown = report.markdown_table(summary)
    assert "3\\|\\|0.5" in markdown and "\\*\\*\\*" in markdown and "| **" in markdown


def test_report_tolerates_missing_and_extra_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    a = _tidy(
        [(f"s{i}", "T3", m, k, 1.0 + i) for i in range(3) for m in ("SR", "cubic") for k in ("psnr", "ssim", "dice")]
    )
    b = _tidy([(f"s{i}", "T5", m, "psnr", 2.0 + i) for i in range(3) for m in ("SR", "cubic")])
    _fake_run(tmp_path / "runs", "0", ["degradation=a"], a)
    _fake_run(tmp_path / "runs", "1", ["degradation=b"], b)
    out = tmp_path / "out"
    result = run_report([f"runs={tmp_path / 'runs'}", f"output={out}", "metrics=[psnr,ssim,lpips]"], capsys)
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["metric"]) == {"psnr", "ssim"}  # lpips absent everywhere, dice not requested
    assert {Path(f).name for f in result["figures"]} == {"boxplot_psnr.png", "boxplot_ssim.png"}
    everything = run_report([f"runs=[{tmp_path / 'runs' / '0'},{tmp_path / 'runs' / '1'}]", f"output={out}"], capsys)
    assert everything["runs"] == 2 and "dice" in (out / "benchmark.md").read_text()


def test_agreement_figures_need_three_subjects(tmp_path: Path):
    c = cohort.simulate_synthetic_cohort(n_subjects=2, seed=2)
    rows = c.results.assign(label="", run="synthetic")
    for plot in (report.plot_agreement, report.plot_bland_altman, report.plot_correlation_heatmaps):
        assert plot(rows, "mucca_mm2", "HR", tmp_path / "none.png") is None
    assert report.plot_clinical(rows, c.clinical, "mucca_mm2", ["edss"], tmp_path / "none.png") is None
    assert not list(tmp_path.iterdir())


def test_cli_reports_bad_runs_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "empty").mkdir()
    for runs in (tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(report.main, [f"runs={runs}", f"output={tmp_path / 'out'}"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and "Traceback" not in err
    assert "no tidy result CSV" in err


def test_report_cli_with_clinical_table_and_callback_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from mrisr.eval.clinical import clinical_correlation_rows

    c = cohort.simulate_synthetic_cohort(
        n_subjects=30, seed=5, settings=("3||0.0", "3||1.0"), sr_noise_mm2=(1.0, 1.8), lr_noise_mm2=(3.0, 4.5)
    )
    run = tmp_path / "synthetic_run"
    run.mkdir()
    c.results.to_csv(run / "test_metrics.csv", index=False)
    stats_rows = clinical_correlation_rows(c.results, c.clinical, ["edss"], bootstrap_samples=0)
    pd.DataFrame(stats_rows).to_csv(run / "clinical_stats.csv", index=False)
    c.clinical.to_csv(tmp_path / "clinical.csv", index=False)
    out = tmp_path / "out"
    result = run_report(
        [f"runs={run}", f"output={out}", "reference=LR", "metrics=[mucca_mm2]", f"clinical={tmp_path / 'clinical.csv'}",
         "outcomes=[edss,t25fw]"], capsys,
    )  # fmt: skip
    names = {Path(f).name for f in result["figures"]}
    assert names == {f"{k}_mucca_mm2.png" for k in ("boxplot", "correlation", "agreement", "bland_altman", "clinical")}
    for figure in result["figures"]:
        assert_png(Path(figure), 20000)
    assert not list(out.glob(".*"))  # no temporary files left behind
    table = (out / "clinical.md").read_text()
    assert "3\\|\\|1.0" in table and "random" in table and "Williams" in table
    # MUCCA has no "best" value: nothing in bold.
    assert not any("**" in line for line in (out / "benchmark.md").read_text().splitlines() if line.startswith("|"))
