"""Experiment scripts: the Dewey et al. tables on small planted tidy CSVs (goal checks that pass and that fail)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT

DEWEY = REPO_ROOT / "experiments" / "dewey2024"
SETTINGS = ("3||0", "3||0.3", "3||0.5", "3||1")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tables() -> dict:
    """The namespace of ``experiments/dewey2024/tables.py`` (run as a file: experiments are not a package)."""
    return runpy.run_path(str(DEWEY / "tables.py"), run_name="dewey2024_tables")


def planted_rows(sr_better: bool, n_mucca: int = 4, n_image_only: int = 1, seed: int = 0) -> pd.DataFrame:
    """Tidy rows as ``run.py`` writes them, with planted effects.

    HR MUCCA 66 + 4·i mm²; LR under-segments by 6 mm² plus 1.5 mm² per setting index (so LR varies across settings);
    SR is HR ± 0.3 mm² when ``sr_better`` else LR − 2 − 0.5·k mm² (worse, and more variable than LR). PSNR/SSIM of
    SR are above LR by 1 dB / 0.01 when ``sr_better`` and below by the same margins otherwise.
    """
    rng = np.random.default_rng(seed)
    rows = []

    def add(subject: str, setting: str, method: str, metric: str, value: float) -> None:
        steps = 300 if method == "SR" else None
        rows.append({"subject": subject, "setting": setting, "method": method, "metric": metric, "value": value,
                     "status": "ok", "backend": "test", "seconds": 1.0, "steps": steps})  # fmt: skip

    sign = 1.0 if sr_better else -1.0
    for i in range(n_mucca + n_image_only):
        subject = f"s{i:02d}"
        hr = 66.0 + 4.0 * i
        if i < n_mucca:
            add(subject, "HR", "HR", "mucca_mm2", hr)
            add(subject, "HR", "manual", "mucca_mm2", hr + 1.0)
        for k, setting in enumerate(SETTINGS):
            psnr_lr, ssim_lr = 31.0 - 0.5 * k + rng.normal(0, 0.2), 0.93 - 0.005 * k
            add(subject, setting, "LR", "psnr", psnr_lr)
            add(subject, setting, "LR", "ssim", ssim_lr)
            add(subject, setting, "SR", "psnr", psnr_lr + sign * 1.0)
            add(subject, setting, "SR", "ssim", ssim_lr + sign * 0.01)
            if i < n_mucca:
                lr = hr - 6.0 - 1.5 * k + rng.normal(0, 0.2)
                add(subject, setting, "LR", "mucca_mm2", lr)
                sr = hr + rng.uniform(-0.3, 0.3) if sr_better else lr - 2.0 - 0.5 * k
                add(subject, setting, "SR", "mucca_mm2", sr)
    return pd.DataFrame(rows)


def test_goal_checks_pass_when_sr_is_better(tables: dict):
    goals = tables["goal_checks"](tables["prepare_rows"](planted_rows(sr_better=True)))
    assert len(goals) == 2 + len(SETTINGS) + 1
    assert goals["passed"].eq(True).all(), goals
    consistency = goals.iloc[-1]
    assert consistency["SR"] < 0.3 < 1.0 < consistency["LR"]  # planted: SR SD ≈ 0.2, LR SD ≈ 1.9 mm²


def test_goal_checks_fail_when_sr_is_worse(tables: dict):
    goals = tables["goal_checks"](tables["prepare_rows"](planted_rows(sr_better=False)))
    image = goals[goals["goal"].str.startswith("SR > LR")]
    assert image["passed"].eq(False).all() and image["SR"].eq("0/20 pairs").all()
    mucca = goals[goals["goal"].str.startswith("mean |MUCCA")]
    assert mucca["passed"].eq(False).all()
    assert np.allclose(mucca["SR"] - mucca["LR"], [2.0, 2.5, 3.0, 3.5])  # |SR − HR| = |LR − HR| + 2 + 0.5·k mm²
    assert not goals.iloc[-1]["passed"] and goals.iloc[-1]["SR"] > goals.iloc[-1]["LR"]


def test_one_failing_subject_fails_the_image_goal(tables: dict):
    rows = planted_rows(sr_better=True)
    hit = (rows["subject"] == "s01") & (rows["setting"] == "3||0.5") & (rows["method"] == "SR")
    rows.loc[hit & (rows["metric"] == "psnr"), "value"] -= 5.0
    goals = tables["goal_checks"](tables["prepare_rows"](rows)).set_index("goal")
    assert goals.loc["SR > LR in psnr for every subject and setting", "passed"] == False  # noqa: E712
    assert goals.loc["SR > LR in psnr for every subject and setting", "SR"] == "19/20 pairs"
    assert goals.loc["SR > LR in ssim for every subject and setting", "passed"] == True  # noqa: E712


def test_tables_script_writes_tables_and_figures(tables: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    csv = tmp_path / "rows.csv"
    planted_rows(sr_better=True).to_csv(csv, index=False)
    out = tmp_path / "results"
    tables["main"](["--csv", str(csv), "--out", str(out), "--synthetic-subjects", "0"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["goals_passed"] == f"{2 + len(SETTINGS) + 1}/{2 + len(SETTINGS) + 1}"
    for name in ("fig3_boxplot_psnr", "fig3_boxplot_ssim", "fig4_mucca_correlation", "fig5_mucca_agreement",
                 "fig_bland_altman_mucca"):  # fmt: skip
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
    for stem in ("table_image_metrics", "table_image_ttests", "table_mucca", "table_mucca_correlation",
                 "table_mucca_identity", "table_bland_altman", "table_consistency", "goals"):  # fmt: skip
        for suffix in (".md", ".tex", ".csv"):
            assert (out / f"{stem}{suffix}").stat().st_size > 50, stem + suffix
    ttests = pd.read_csv(out / "table_image_ttests.csv")
    assert np.allclose(ttests.loc[ttests["metric"] == "psnr", "SR − LR"], 1.0)
    identity = pd.read_csv(out / "table_mucca_identity.csv").set_index(["method", "setting"])
    assert identity.loc[("SR", "3||0"), "R²"] > 0.99 and abs(identity.loc[("SR", "3||0"), "slope"] - 1) < 0.05
    mucca = pd.read_csv(out / "table_mucca.csv").set_index("setting")
    assert np.allclose(mucca["LR − HR"], [-6.0, -7.5, -9.0, -10.5], atol=0.3)  # the planted under-segmentation
    assert np.allclose(mucca["|HR − manual|"], 1.0)
    latex = (out / "table_mucca.tex").read_text()
    assert "\\toprule" in latex and "3\\textbar{}\\textbar{}0.3" in latex


def test_synthetic_analyses_are_labelled_and_recover_planted_effects(tables: dict, tmp_path: Path):
    result = tables["synthetic_outputs"](tmp_path, n_subjects=120, n_longitudinal=40, bootstrap=5, seed=0)
    clinical = (tmp_path / "synthetic_clinical.md").read_text()
    assert clinical.count("SYNTHETIC") >= 2 and "Williams p vs ref." in clinical
    rows = pd.read_csv(tmp_path / "synthetic_clinical.csv")
    random = rows[(rows["setting"] == "random") & (rows["analysis"] == "partial_correlation")]
    r = random[(random["statistic"] == "r") & (random["outcome"] == "9hpt")].set_index("method")["value"]
    assert r["HR"] < -0.2 and r["SR"] < -0.2  # planted partial r −0.38
    assert "SYNTHETIC" in (tmp_path / "synthetic_longitudinal.md").read_text()
    coef, _ = result["time_coef_p"]["SR + image_2d"]
    assert abs(coef - result["planted_time"]) < 0.6  # planted −0.8 mm²/year


def test_a_degenerate_sr_result_is_flagged_and_left_out_of_the_goals(tables: dict, tmp_path: Path):
    rows = planted_rows(sr_better=True)
    extra = []
    for (subject, setting), _ in rows[rows["setting"] != "HR"].groupby(["subject", "setting"]):
        for method, psnr, ssim in (("floor_zero", 12.0, 0.2), ("floor_mean", 14.0, 0.3)):
            for metric, value in (("psnr", psnr), ("ssim", ssim), ("fg_std_ratio", 0.0)):
                extra.append({"subject": subject, "setting": setting, "method": method, "metric": metric,
                              "value": value, "status": "ok"})  # fmt: skip
    rows = pd.concat([rows, pd.DataFrame(extra)], ignore_index=True)
    # The SR of s00 at 3||1 is a constant volume: PSNR at the floor. It would fail "SR > LR for every pair".
    hit = (rows["subject"] == "s00") & (rows["setting"] == "3||1") & (rows["method"] == "SR")
    rows.loc[hit & (rows["metric"] == "psnr"), "value"] = 12.0
    rows = pd.concat([rows, pd.DataFrame([{"subject": "s00", "setting": "3||1", "method": "SR",
                                           "metric": "fg_std_ratio", "value": 0.0, "status": "ok"}])])  # fmt: skip
    prepared = tables["prepare_rows"](rows)
    goals = tables["goal_checks"](prepared).set_index("goal")
    image = goals.loc["SR > LR in psnr for every subject and setting"]
    assert image["passed"] == True and image["SR"] == "19/19 pairs"  # noqa: E712 — the degenerate pair is left out
    assert image["excluded (degenerate)"] == 1
    methods = tables["image_methods_table"](prepared).set_index(["setting", "method"])
    assert methods.loc[("3||1", "SR"), "degenerate"] == "1/5" and methods.loc[("3||0", "SR"), "degenerate"] == "0/5"
    assert methods.loc[("3||1", "LR"), "degenerate"] == "0/5"
    assert methods.loc[("3||1", "floor_zero"), "degenerate"] == "–"
    csv = tmp_path / "rows.csv"
    rows.to_csv(csv, index=False)
    tables["main"](["--csv", str(csv), "--out", str(tmp_path), "--synthetic-subjects", "0"])
    assert "1 degenerate result(s)" in (tmp_path / "goals.md").read_text()
    summary = pd.read_csv(tmp_path / "table_image_metrics.csv")
    assert not summary.loc[summary["method"].isin(["SR", "floor_zero", "floor_mean"]), "best"].any()


def test_qualitative_montage_of_a_real_thick_scan_records_its_fit(shared_data: Path, tmp_path: Path):
    """``qualitative.py`` end to end on one real thick input with a 2-step fit: PNG, and a JSON with the fit's steps
    and the thickness it used (estimated: no thickness in the header)."""
    qualitative = runpy.run_path(str(DEWEY / "qualitative.py"), run_name="dewey2024_qualitative")
    out = tmp_path / "montage.png"
    args = ["--inputs", "t1w_axial_5mm.nii.gz", "--max-steps", "2", "--data", str(shared_data), "--out", str(out)]
    qualitative["main"](args)
    assert out.read_bytes()[:8] == PNG_MAGIC
    (entry,) = json.loads(out.with_suffix(".json").read_text())["inputs"]
    assert entry["steps"] == 2 and entry["thickness_source"] == "estimate" and entry["thickness_mm"] > 0
