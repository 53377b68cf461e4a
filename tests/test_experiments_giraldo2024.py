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


def planted_rows(order: dict[str, float]) -> pd.DataFrame:
    """One row per held-out volume and method; every metric = base + order[method] (PSNR in dB, others / 10)."""
    rows = []
    for held_out in ("flair", "t1"):
        for method, q in order.items():
            row = {"held_out": held_out, "method": method, "train_minutes": 10.0, "psnr_mask": 19 + q,
                   "ssim_mask": 0.6 + q / 10, "patch_psnr": 23 + q, "patch_slices": 100}  # fmt: skip
            row.update({f"patch_{m}": 0.5 + q / 10 for m in ("ssim", "vif_p", "fsim", "vsi", "haarpsi")})
            rows.append(row)
    return pd.DataFrame(rows)


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
    edsr = t3[(t3["method"] == "EDSR") & (t3["setting"] == "T1w")]
    assert edsr["PSNR brain (dB)"].item() == pytest.approx(20.0) and edsr["SSIM brain"].item() == pytest.approx(0.7)
    assert (tmp_path / "fig_table3_volume_metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert "\\bottomrule" in (tmp_path / "goals.tex").read_text()


def test_unknown_methods_and_missing_columns_are_refused(tables: dict):
    with pytest.raises(MrisrInputError, match="unknown methods"):
        tables["tidy"](planted_rows({"hat": 0.0}))
    with pytest.raises(MrisrInputError, match="missing"):
        tables["tidy"](pd.DataFrame({"held_out": ["flair"]}))
