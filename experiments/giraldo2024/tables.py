"""Tables, figure and goal checks of the Giraldo et al. (PRETTIER) reproduction from the rows of ``run.py``.

Written into ``results/<scale>/`` (or ``--out``):

* ``table2_patch_metrics.{md,tex,csv}`` (paper Table 2): per sequence, the offline piq patch metrics (PSNR, SSIM,
  VIF-p, FSIM, VSI, HaarPSI; DISTS needs weights that are not available offline) of bicubic, RealESRGAN, EDSR and the
  zero-shot model, mean over the HR slices along the degraded axis;
* ``table3_volume_metrics.{md,tex,csv}`` (paper Table 3): PSNR / SSIM inside the brain mask per sequence and method;
* ``fig_table3_volume_metrics.png``: the Table 3 numbers as bars;
* ``goals.{md,tex,csv}``: EDSR ≥ RealESRGAN ≥ bicubic on PSNR / SSIM (volume and patch), each pass/fail.

Every table carries the reference rows written by ``run.py`` (scored by the same function): ``floor (zeros)``,
``floor (mean)`` — what a model that learned nothing scores — and ``ceiling (band-limit)`` — HR band-limited to the
LR Nyquist frequency along the degraded axis; they are never bold. Results flagged degenerate
(:mod:`mrisr.report.guard`) are counted in a ``degenerate`` column (``k/n``) and a footnote, never bold, and left
out of the goal checks (the goals say how many and why).

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
from mrisr.experiment.helpers import check_table_columns, read_run_rows, table_parser, table_paths
from mrisr.report.export import method_rows, ordering_goals, write_frame_table, write_summary_table
from mrisr.report.guard import degenerate_methods, degenerate_results, exclude_degenerate, exclusion_note, method_flags
from mrisr.report.plotting import pyplot, save_and_close

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
    "floor_zero": "floor (zeros)",
    "floor_mean": "floor (mean)",
    "ceiling_bandlimit": "ceiling (band-limit)",
}
REFERENCES = ("floor (zeros)", "floor (mean)", "ceiling (band-limit)")
ORDER = ("bicubic", "RealESRGAN", "EDSR", "zero-shot", *REFERENCES)
PATCH = {"patch_psnr": "PSNR (dB)", "patch_ssim": "SSIM", "patch_vif_p": "VIF-p", "patch_fsim": "FSIM",
         "patch_haarpsi": "HaarPSI", "patch_vsi": "VSI"}  # fmt: skip
VOLUME = {"psnr_mask": "PSNR brain (dB)", "ssim_mask": "SSIM brain"}


def load_rows(path: Path) -> pd.DataFrame:
    """The tidy rows of ``run.py`` (:mod:`mrisr.io.rows`) prepared for the tables (:func:`tidy`)."""
    return tidy(read_run_rows(path, HERE), path)


def tidy(rows: pd.DataFrame, path: Path | None = None) -> pd.DataFrame:
    """Rows with ``label, run, subject, setting, method, metric, value`` and a ``degenerate`` flag per row.

    ``setting`` becomes the sequence (T2w FLAIR, T1w) of the held-out volume (``subject``), ``method`` the paper's
    name, ``metric`` the paper's IQM name; degenerate results (:mod:`mrisr.report.guard`, judged on the CSV's own
    names) are marked in the ``degenerate`` column.
    """
    check_table_columns(rows, path)
    unknown = sorted(set(rows["method"]) - set(METHODS))
    if unknown:
        raise MrisrInputError(path, f"unknown methods {unknown}", f"methods are {sorted(METHODS)}")
    rows = rows.assign(subject=rows["subject"].astype(str), setting=rows["setting"].astype(str))
    rows["value"] = pd.to_numeric(rows["value"], errors="coerce")
    bad = degenerate_results(rows)
    kept = exclude_degenerate(rows, bad)[0]
    names = {**PATCH, **VOLUME}
    long = rows[rows["metric"].isin(list(names))].copy()
    long["degenerate"] = ~long.index.isin(kept.index)
    long = long.assign(
        label=LABEL,
        run=LABEL,
        setting=long["subject"].map(SEQUENCES).fillna(long["subject"]),
        method=long["method"].map(METHODS),
        metric=long["metric"].map(names),
    )
    long["order"] = long["method"].map({m: i for i, m in enumerate(ORDER)})
    long = long.sort_values(["order", "setting"], kind="stable").drop(columns=["order"])
    long.attrs["degenerate"] = bad.assign(method=bad["method"].map(METHODS))
    long.attrs["flags"] = {METHODS[m]: f for m, f in method_flags(rows, bad).items()}
    return long


def table(long: pd.DataFrame, metrics: Sequence[str], methods: Sequence[str]) -> pd.DataFrame:
    """summarize over the chosen metrics and methods (reference bicubic), rows in paper order."""
    part = long[long["metric"].isin(metrics) & long["method"].isin(methods)]
    degenerate = long.attrs.get("degenerate")
    unranked = [*REFERENCES, *(degenerate_methods(degenerate) if degenerate is not None else [])]
    return report.summarize(part, reference="bicubic", metrics=list(metrics), unranked_methods=unranked)


def goal_checks(long: pd.DataFrame) -> pd.DataFrame:
    """EDSR ≥ RealESRGAN ≥ bicubic (and EDSR ≥ bicubic) on volume and patch PSNR / SSIM, per sequence."""
    metrics = ["PSNR brain (dB)", "SSIM brain", "PSNR (dB)", "SSIM"]
    kept = long[~long["degenerate"]]
    kept.attrs = dict(long.attrs)
    summary = table(kept, metrics, ORDER)
    chain = [("RealESRGAN", "≤", "EDSR"), ("bicubic", "≤", "RealESRGAN"), ("bicubic", "≤", "EDSR")]
    goals = ordering_goals(summary, chain, metrics, lower_is_better=())
    excluded = long[long["degenerate"]].drop_duplicates(["subject", "setting", "method"])
    counts = excluded.groupby(["setting", "method"]).size().to_dict()
    goals["excluded (degenerate)"] = [
        sum(counts.get((rec.setting, side.strip()), 0) for side in rec.goal.replace("≤", "<").split("<"))
        for rec in goals.itertuples()
    ]
    return goals


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
    note = exclusion_note(long.attrs["degenerate"])
    patch = table(long, list(PATCH.values()), ("bicubic", "RealESRGAN", "EDSR", "zero-shot", *REFERENCES))
    written["table2"] = list(map(str, write_summary_table(patch, args.out / "table2_patch_metrics", note)))
    table3_order = ("zero-shot", "RealESRGAN", "EDSR", "bicubic", *REFERENCES)
    volume = table(long, list(VOLUME.values()), table3_order)
    written["table3"] = list(map(str, write_summary_table(volume, args.out / "table3_volume_metrics", note)))
    caption = ("Table 3 layout: volume PSNR / SSIM inside the brain mask (FLAIR: voxels > 0; T1w: head mask); "
               "reference rows: floor = all-zero output / the LR mean everywhere, ceiling = HR band-limited to the LR "
               "Nyquist frequency along the degraded axis (never bold); degenerate = k/n results flagged. "
               + note)  # fmt: skip
    wide = method_rows(volume, list(VOLUME.values()), table3_order)
    flags = long.attrs["flags"]
    wide = wide.assign(degenerate=wide["method"].map(lambda m: flags.get(m, "–")))
    written["table3"] += map(str, write_frame_table(wide, args.out / "table3_by_method", caption, SOURCE))
    written["fig"] = [str(plot_volume_metrics(long, args.out / "fig_table3_volume_metrics.png"))]
    goals = goal_checks(long)
    caption = ("Goal: EDSR ≥ RealESRGAN ≥ bicubic on PSNR / SSIM (volume in the mask, patch mean over slices). "
               + note)  # fmt: skip
    written["goals"] = list(map(str, write_frame_table(goals, args.out / "goals", caption, SOURCE)))
    passed = f"{int(goals['passed'].eq(True).sum())}/{len(goals)}"
    print(json.dumps({"out": str(args.out), "goals_passed": passed, "outputs": written}))
    return written


if __name__ == "__main__":
    main()
