"""Graf et al. tables (experiments/graf2024/tables.py) on planted tidy rows: layouts, goals that hold and fail."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT

GRAF = REPO_ROOT / "experiments" / "graf2024"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tables() -> dict:
    """The namespace of ``experiments/graf2024/tables.py`` (experiments are files, not a package)."""
    return runpy.run_path(str(GRAF / "tables.py"), run_name="graf2024_tables")


def planted_rows(better: bool, subjects: int = 3, seed: int = 0) -> pd.DataFrame:
    """Rows as ``run.py`` writes them. Quality q per method (cubic 0, RRDBNet 1, EDSR 1, diffusion rows 2…8: 1 + row/8);
    ``better=False`` reverses it. PSNR = 27 + q, SSIM = 0.8 + 0.02 q, MUCCA error = 3 − q, cord Dice = 0.8 + 0.02 q;
    every output has foreground SD ratio 0.9. Reference rows: floors at PSNR 10 / 12 dB, SSIM 0.05 / 0.1 (SD ratio
    0), a ceiling at PSNR 40 dB, SSIM 0.99."""
    rng = np.random.default_rng(seed)
    quality = {"cubic": 0.0, "rrdbnet": 1.0, "edsr": 1.0, **{f"diffusion_row{n}": 1.0 + n / 8 for n in range(2, 9)}}
    rows = []
    for i in range(subjects):
        for method, q in quality.items():
            q = q if better else -q
            values = {
                "psnr": 27 + q,
                "ssim": 0.8 + 0.02 * q,
                "psnr_fov": 27.1 + q,
                "ssim_fov": 0.8 + 0.02 * q,
                "cord_dice_manual": 0.8 + 0.02 * q,
                "mucca_mm2": 78 + (3 - q),
                "mucca_abs_err_mm2": 3 - q + 0.1 * i,
                "fg_std_ratio": 0.9,
            }
            for metric, value in values.items():
                rows.append(row(f"s{i}", method, metric, value + rng.normal(0, 1e-3)))
        references = {
            "floor_zero": (10.0, 0.05, 0.0),
            "floor_mean": (12.0, 0.1, 0.0),
            "ceiling_bandlimit": (40.0, 0.99, 0.8),
        }
        for method, (psnr, ssim, ratio) in references.items():
            for metric, value in (("psnr", psnr), ("ssim", ssim), ("fg_std_ratio", ratio)):
                rows.append(row(f"s{i}", method, metric, value))
    return pd.DataFrame(rows)  # fmt: skip


def row(subject: str, method: str, metric: str, value: float) -> dict[str, object]:
    """One row of the tidy schema (mrisr.io.rows.ROW_FIELDS)."""
    return {"subject": subject, "setting": "graf_eval", "method": method, "metric": metric, "value": value,
            "status": "ok", "backend": "test", "seconds": 1.0, "steps": 300}  # fmt: skip


def test_goals_pass_when_models_beat_cubic_and_fail_when_reversed(tables: dict):
    good = tables["goal_checks"](tables["prepare_rows"](planted_rows(True)))
    assert len(good) == 12 and good["passed"].all()  # 2 orderings × 4 metrics + 1 ablation goal × 4 metrics
    bad = tables["goal_checks"](tables["prepare_rows"](planted_rows(False)))
    assert not bad["passed"].any()


def test_lower_error_counts_as_better_and_missing_method_is_na(tables: dict):
    rows = planted_rows(True)
    rows.loc[(rows["method"] == "rrdbnet") & (rows["metric"] == "mucca_abs_err_mm2"), "value"] = 5.0  # worse than cubic
    rows = rows[~((rows["method"] == "diffusion_row8") & (rows["metric"] == "cord_dice_manual"))]
    goals = tables["goal_checks"](tables["prepare_rows"](rows)).set_index(["goal", "metric", "table"])
    assert not goals.loc[("cubic < RRDBNet (ESRGAN)", "mucca_abs_err_mm2", "Table 1"), "passed"]
    assert goals.loc[("cubic < RRDBNet (ESRGAN)", "psnr", "Table 1"), "passed"]
    assert goals.loc[("cubic ≤ row 8", "cord_dice_manual", "Table 2"), "passed"] is pd.NA


def test_table_layouts_follow_the_paper(tables: dict):
    rows = tables["prepare_rows"](planted_rows(True))
    t1, _ = tables["table1"](rows)
    assert list(t1["method"]) == ["cubic", "RRDBNet (ESRGAN)", "EDSR", "diffusion (Palette)", "floor (zeros)",
                                  "floor (mean)", "ceiling (band-limit)"]  # fmt: skip
    assert list(t1["degenerate"]) == ["0/3"] * 4 + ["–"] * 3
    assert t1.loc[t1["method"] == "cubic", "psnr"].item() == pytest.approx(27.0, abs=0.01)
    assert set(t1["n"]) == {3}
    t2, _ = tables["table2"](rows)
    assert list(t2["row"]) == [*range(1, 9), "–", "–", "–"] and t2["degradations"].iloc[7].endswith("(full)")
    # Planted: row N has PSNR 28 + N/8, so the table increases down the rows after row 1 (cubic, 27).
    assert np.all(np.diff(t2["psnr"].to_numpy()[:8]) > 0)


def test_degenerate_results_are_flagged_never_bold_and_left_out_of_the_goals(tables: dict, tmp_path: Path):
    rows = planted_rows(True)
    # RRDBNet outputs a constant on s0 (SD ratio 0) and scores below the floor on s1: both degenerate; EDSR stays
    # healthy. Its PSNR on s0 is planted high, so only the guard keeps it from being the best of Table 1.
    rrdb = rows["method"] == "rrdbnet"
    rows.loc[rrdb & (rows["subject"] == "s0") & (rows["metric"] == "fg_std_ratio"), "value"] = 0.0
    rows.loc[rrdb & (rows["subject"] == "s0") & (rows["metric"] == "psnr"), "value"] = 90.0
    rows.loc[rrdb & (rows["subject"] == "s1") & (rows["metric"] == "psnr"), "value"] = 11.0
    prepared = tables["prepare_rows"](rows)
    t1, summary = tables["table1"](prepared)
    flags = dict(zip(t1["method"], t1["degenerate"], strict=True))
    assert flags["RRDBNet (ESRGAN)"] == "2/3" and flags["EDSR"] == "0/3" and flags["cubic"] == "0/3"
    psnr = summary[summary["metric"] == "psnr"].set_index("method")
    assert psnr.loc["RRDBNet (ESRGAN)", "mean"] > psnr["mean"].drop("RRDBNet (ESRGAN)").max()  # the highest mean…
    assert not psnr.loc["RRDBNet (ESRGAN)", "best"] and not psnr.loc["ceiling (band-limit)", "best"]  # …never bold
    assert psnr["best"].sum() == 1 and psnr.loc["diffusion (Palette)", "best"]
    goals = tables["goal_checks"](prepared).set_index(["goal", "metric", "table"])
    # Only s2 of RRDBNet is left: its goals are computed on one subject and say that 2 results were left out.
    assert goals.loc[("cubic < RRDBNet (ESRGAN)", "psnr", "Table 1"), "excluded (degenerate)"] == 2
    assert goals.loc[("cubic < RRDBNet (ESRGAN)", "psnr", "Table 1"), "second mean"] == pytest.approx(28.0, abs=0.01)
    assert goals.loc[("cubic ≤ row 8", "psnr", "Table 2"), "excluded (degenerate)"] == 0
    csv = tmp_path / "rows.csv"
    rows.to_csv(csv, index=False)
    tables["main"](["--csv", str(csv), "--out", str(tmp_path)])
    goals_md = (tmp_path / "goals.md").read_text()
    assert "2 degenerate result(s)" in goals_md and "near-constant output" in goals_md and "≤ floor" in goals_md
    assert "floor (zeros)" in (tmp_path / "table1_models.md").read_text()


def test_tables_script_writes_markdown_latex_csv_and_figures(tables: dict, tmp_path: Path, capsys):
    csv = tmp_path / "rows.csv"
    planted_rows(True).to_csv(csv, index=False)
    tables["main"](["--csv", str(csv), "--out", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["goals_passed"] == "12/12"
    for stem in ("table1_models", "table1_summary", "table2_ablation", "table2_summary", "goals"):
        for suffix in (".md", ".tex", ".csv"):
            assert (tmp_path / f"{stem}{suffix}").stat().st_size > 0
    assert "\\toprule" in (tmp_path / "table2_ablation.tex").read_text()
    for png in ("fig_table1_psnr.png", "fig_table1_cord_dice.png", "fig_table2_ablation.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG_MAGIC


def test_missing_columns_are_refused(tables: dict):
    from mrisr.core.errors import MrisrInputError

    with pytest.raises(MrisrInputError, match="missing"):
        tables["prepare_rows"](pd.DataFrame({"subject": ["a"], "value": [1.0]}))


def test_healthy_rows_have_no_degenerate_result(tables: dict):
    from mrisr.report.guard import degenerate_results

    assert degenerate_results(tables["prepare_rows"](planted_rows(True))).empty
