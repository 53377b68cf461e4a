"""Tables, figure and goal checks of the Giraldo et al. (PRETTIER) reproduction from the rows of ``run.py``.

Written into ``results/<scale>/`` (or ``--out``):

* ``table2_patch_metrics.{md,tex,csv}`` (paper Table 2): per sequence, the offline piq patch metrics (PSNR, SSIM,
  VIF-p, FSIM, VSI, HaarPSI; DISTS needs weights that are not available offline) of bicubic, RealESRGAN, EDSR and the
  zero-shot model, mean over the HR slices along the degraded axis;
* ``table3_volume_metrics.{md,tex,csv}`` (paper Table 3): PSNR / SSIM inside the brain mask per sequence and method;
* ``fig_table3_volume_metrics.png``: the Table 3 numbers as bars;
* ``goals.{md,tex,csv}``: EDSR ≥ RealESRGAN ≥ bicubic on PSNR / SSIM (volume and patch), each pass/fail.

Tables go through :func:`mrisr.report.summarize` and :mod:`mrisr.report.export`; with one volume per sequence there
is no SD and no paired test (n = 1).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mrisr import report
from mrisr.core.errors import MrisrInputError
from mrisr.report.export import method_rows, ordering_goals, write_frame_table, write_summary_table
from mrisr.report.plotting import pyplot, save_and_close
from mrisr.utils.experiments import table_parser, table_paths

HERE = Path(__file__).resolve().parent
LABEL = "giraldo2024"
SOURCE = "experiments/giraldo2024/tables.py"
SEQUENCES = {"flair": "T2w FLAIR", "t1": "T1w"}
#: CSV method label → paper name (smoke and paper model configs).
METHODS = {
    "cubic": "bicubic",
    "realesrgan_smoke": "RealESRGAN",
    "realesrgan": "RealESRGAN",
    "edsr_smoke": "EDSR",
    "edsr": "EDSR",
    "smore_fast": "zero-shot",
}
ORDER = ("bicubic", "RealESRGAN", "EDSR", "zero-shot")
PATCH = {"patch_psnr": "PSNR (dB)", "patch_ssim": "SSIM", "patch_vif_p": "VIF-p", "patch_fsim": "FSIM",
         "patch_haarpsi": "HaarPSI", "patch_vsi": "VSI"}  # fmt: skip
VOLUME = {"psnr_mask": "PSNR brain (dB)", "ssim_mask": "SSIM brain"}
REQUIRED = ("held_out", "method", *PATCH, *VOLUME)


def load_rows(path: Path) -> pd.DataFrame:
    """The rows of ``run.py`` (the PRETTIER benchmark's CSV layout) as tidy rows (:func:`tidy`)."""
    if not path.exists():
        raise MrisrInputError(path, "no such rows file", "run experiments/giraldo2024/run.py first or pass --csv")
    return tidy(pd.read_csv(path), path)


def tidy(rows: pd.DataFrame, path: Path | None = None) -> pd.DataFrame:
    """One row per held-out volume, method and metric: ``label, run, subject, setting, method, metric, value``.

    ``setting`` is the sequence (T2w FLAIR, T1w), ``method`` the paper's name, ``metric`` the paper's IQM name.
    """
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise MrisrInputError(path, f"columns {missing} are missing", "pass the rows.csv written by run.py")
    unknown = sorted(set(rows["method"]) - set(METHODS))
    if unknown:
        raise MrisrInputError(path, f"unknown methods {unknown}", f"methods are {sorted(METHODS)}")
    names = {**PATCH, **VOLUME}
    long = rows.melt(id_vars=["held_out", "method"], value_vars=list(names), var_name="metric", value_name="value")
    long = long.assign(
        label=LABEL,
        run=LABEL,
        subject=long["held_out"].astype(str),
        setting=long["held_out"].map(SEQUENCES).fillna(long["held_out"].astype(str)),
        method=long["method"].map(METHODS),
        metric=long["metric"].map(names),
        value=pd.to_numeric(long["value"], errors="coerce"),
    )
    long["order"] = long["method"].map({m: i for i, m in enumerate(ORDER)})
    return long.sort_values(["order", "setting"], kind="stable").drop(columns=["order", "held_out"])


def table(long: pd.DataFrame, metrics: Sequence[str], methods: Sequence[str]) -> pd.DataFrame:
    """summarize over the chosen metrics and methods (reference bicubic), rows in paper order."""
    part = long[long["metric"].isin(metrics) & long["method"].isin(methods)]
    return report.summarize(part, reference="bicubic", metrics=list(metrics))


def goal_checks(long: pd.DataFrame) -> pd.DataFrame:
    """EDSR ≥ RealESRGAN ≥ bicubic (and EDSR ≥ bicubic) on volume and patch PSNR / SSIM, per sequence."""
    metrics = ["PSNR brain (dB)", "SSIM brain", "PSNR (dB)", "SSIM"]
    summary = table(long, metrics, ORDER)
    chain = [("RealESRGAN", "≤", "EDSR"), ("bicubic", "≤", "RealESRGAN"), ("bicubic", "≤", "EDSR")]
    return ordering_goals(summary, chain, metrics, lower_is_better=())


def plot_volume_metrics(long: pd.DataFrame, path: Path) -> Path:
    """Grouped bars of Table 3: one panel per metric, sequences on the x axis, one bar per method."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(VOLUME), figsize=(4.2 * len(VOLUME), 3.2))
    methods = [m for m in ORDER if m in set(long["method"])]
    settings = list(dict.fromkeys(long["setting"]))
    width = 0.8 / max(len(methods), 1)
    for ax, metric in zip(np.atleast_1d(axes), VOLUME.values(), strict=True):
        for k, method in enumerate(methods):
            sel = long[(long["metric"] == metric) & (long["method"] == method)]
            means = [sel.loc[sel["setting"] == s, "value"].mean() for s in settings]
            ax.bar(np.arange(len(settings)) + (k - (len(methods) - 1) / 2) * width, means, width, label=method)
        ax.set_xticks(np.arange(len(settings)), settings)
        ax.set_title(metric)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    return save_and_close(fig, path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = table_parser(__doc__.splitlines()[0])
    return table_paths(parser.parse_args(argv), HERE)


def main(argv: Sequence[str] | None = None) -> dict[str, list[str]]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    long = load_rows(args.csv)
    written: dict[str, list[str]] = {}
    patch = table(long, list(PATCH.values()), ("bicubic", "RealESRGAN", "EDSR", "zero-shot"))
    written["table2"] = list(map(str, write_summary_table(patch, args.out / "table2_patch_metrics")))
    volume = table(long, list(VOLUME.values()), ("zero-shot", "RealESRGAN", "EDSR", "bicubic"))
    written["table3"] = list(map(str, write_summary_table(volume, args.out / "table3_volume_metrics")))
    caption = "Table 3 layout: volume PSNR / SSIM inside the brain mask (FLAIR: voxels > 0; T1w: head mask)."
    wide = method_rows(volume, list(VOLUME.values()), ("zero-shot", "RealESRGAN", "EDSR", "bicubic"))
    written["table3"] += map(str, write_frame_table(wide, args.out / "table3_by_method", caption, SOURCE))
    written["fig"] = [str(plot_volume_metrics(long, args.out / "fig_table3_volume_metrics.png"))]
    goals = goal_checks(long)
    caption = "Goal: EDSR ≥ RealESRGAN ≥ bicubic on PSNR / SSIM (volume in the mask, patch mean over slices)."
    written["goals"] = list(map(str, write_frame_table(goals, args.out / "goals", caption, SOURCE)))
    passed = f"{int(goals['passed'].eq(True).sum())}/{len(goals)}"
    print(json.dumps({"out": str(args.out), "goals_passed": passed, "outputs": written}))
    return written


if __name__ == "__main__":
    main()
