"""Giraldo et al. tables (experiments/giraldo2024/tables.py) on planted rows in the PRETTIER benchmark's CSV layout."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO_ROOT
from mrisr.core.errors import MrisrInputError

GIRALDO = REPO_ROOT / "experiments" / "giraldo2024"


@pytest.fixture(scope="module")
def tables() -> dict:
    return runpy.run_path(str(GIRALDO / "tables.py"), run_name="giraldo2024_tables")


def planted_rows(order: dict[str, float], references: bool = True) -> pd.DataFrame:
    """Tidy rows (mrisr.io.rows) per held-out volume and method; every metric = base + order[method] (PSNR in
    dB, others / 10), foreground SD ratio 0.9. References: floors at PSNR 5 / 8 dB, SSIM 0.1 / 0.2 (SD ratio 0)."""
    rows = []
    planted = dict(order)
    for held_out in ("flair", "t1"):
        for method, q in planted.items():
            values = {"psnr_mask": 19 + q, "ssim_mask": 0.6 + q / 10, "patch_psnr": 23 + q, "patch_slices": 100,
                      "psnr": 20 + q, "ssim": 0.6 + q / 10, "fg_std_ratio": 0.9}  # fmt: skip
            values.update({f"patch_{m}": 0.5 + q / 10 for m in ("ssim", "vif_p", "fsim", "vsi", "haarpsi")})
            rows += [row(held_out, method, k, v) for k, v in values.items()]
        if references:
            for method, (psnr, ssim) in {"floor_zero": (5.0, 0.1), "floor_mean": (8.0, 0.2)}.items():
                for metric, value in (("psnr", psnr), ("ssim", ssim), ("psnr_mask", psnr), ("ssim_mask", ssim),
                                      ("fg_std_ratio", 0.0)):  # fmt: skip
                    rows.append(row(held_out, method, metric, value))
    return pd.DataFrame(rows)


def row(subject: str, method: str, metric: str, value: float) -> dict[str, object]:
    return {"subject": subject, "setting": "prettier", "method": method, "metric": metric, "value": value,
            "status": "ok", "backend": "test", "seconds": 1.0, "steps": 150}  # fmt: skip


EXPECTED = {"cubic": 0.0, "smore_fast": 0.3, "realesrgan_smoke": 0.5, "edsr_smoke": 1.0}


def test_goals_hold_for_the_expected_ordering_and_fail_when_reversed(tables: dict):
    good = tables["goal_checks"](tables["tidy"](planted_rows(EXPECTED)))
    assert len(good) == 24 and good["passed"].all()  # 2 sequences × 4 metrics × 3 pairs
    reversed_ = {m: -q for m, q in EXPECTED.items()}
    assert not tables["goal_checks"](tables["tidy"](planted_rows(reversed_)))["passed"].any()


def test_equal_methods_satisfy_at_least_as_good(tables: dict):
    goals = tables["goal_checks"](tables["tidy"](planted_rows({"cubic": 0.0, "realesrgan": 0.0, "edsr": 0.0})))
    assert goals["passed"].all()


def test_tables_have_the_paper_layout(tables: dict, tmp_path: Path, capsys):
    csv = tmp_path / "rows.csv"
    planted_rows(EXPECTED).to_csv(csv, index=False)
    tables["main"](["--csv", str(csv), "--out", str(tmp_path)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["goals_passed"] == "24/24"
    t2 = pd.read_csv(tmp_path / "table2_patch_metrics.csv")
    assert set(t2["metric"]) == {"PSNR (dB)", "SSIM", "VIF-p", "FSIM", "VSI", "HaarPSI"}
    assert set(t2["setting"]) == {"T2w FLAIR", "T1w"}
    md = (tmp_path / "table2_patch_metrics.md").read_text().splitlines()[0]
    assert md.index("bicubic") < md.index("RealESRGAN") < md.index("EDSR")  # paper column order
    t3 = pd.read_csv(tmp_path / "table3_by_method.csv")
    assert {"floor (zeros)", "floor (mean)"} <= set(t3["method"]) and set(t3["degenerate"].dropna()) >= {"0/2", "–"}
    edsr = t3[(t3["method"] == "EDSR") & (t3["setting"] == "T1w")]
    assert edsr["PSNR brain (dB)"].item() == pytest.approx(20.0) and edsr["SSIM brain"].item() == pytest.approx(0.7)
    assert (tmp_path / "fig_table3_volume_metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert "\\bottomrule" in (tmp_path / "goals.tex").read_text()


def test_unknown_methods_and_missing_columns_are_refused(tables: dict):
    with pytest.raises(MrisrInputError, match="unknown methods"):
        tables["tidy"](planted_rows({"hat": 0.0}))
    with pytest.raises(MrisrInputError, match="missing"):
        tables["tidy"](pd.DataFrame({"subject": ["flair"]}))


def test_a_degenerate_result_is_flagged_and_left_out_of_the_goals(tables: dict, tmp_path: Path, capsys):
    rows = planted_rows(EXPECTED)
    # EDSR outputs zeros on the FLAIR volume (SD ratio 0, PSNR at the floor): flagged, excluded; T1 stays healthy.
    hit = (rows["method"] == "edsr_smoke") & (rows["subject"] == "flair")
    rows.loc[hit & (rows["metric"] == "fg_std_ratio"), "value"] = 0.0
    rows.loc[hit & rows["metric"].isin(["psnr", "psnr_mask"]), "value"] = 5.0
    long = tables["tidy"](rows)
    assert long.loc[(long["method"] == "EDSR") & (long["setting"] == "T2w FLAIR"), "degenerate"].all()
    assert not long.loc[(long["method"] == "EDSR") & (long["setting"] == "T1w"), "degenerate"].any()
    assert long.attrs["flags"]["EDSR"] == "1/2" and long.attrs["flags"]["RealESRGAN"] == "0/2"
    goals = tables["goal_checks"](long)
    flair = goals[goals["setting"] == "T2w FLAIR"]
    edsr = flair[flair["goal"].str.contains("EDSR")]
    assert edsr["passed"].isna().all() and (edsr["excluded (degenerate)"] == 1).all()  # no EDSR result left: n/a
    assert goals.loc[goals["setting"] == "T1w", "passed"].all()
    csv = tmp_path / "rows.csv"
    rows.to_csv(csv, index=False)
    tables["main"](["--csv", str(csv), "--out", str(tmp_path)])
    assert "1 degenerate result(s)" in (tmp_path / "goals.md").read_text()
    t3 = pd.read_csv(tmp_path / "table3_by_method.csv")
    assert set(t3.loc[t3["method"] == "EDSR", "degenerate"]) == {"1/2"}
    volume = pd.read_csv(tmp_path / "table3_volume_metrics.csv")
    assert not volume.loc[volume["method"] == "EDSR", "best"].any()
