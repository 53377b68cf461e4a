"""Tables, figures and goal checks of the Graf et al. (MIDL 2024) reproduction from the tidy rows of ``run.py``.

Written into ``results/<scale>/`` (or ``--out``):

* ``table1_models.{md,tex,csv}`` (paper Table 1 layout: one row per model, mean over the test subjects of each
  measurable metric) and ``table1_summary.{md,tex,csv}`` (mean ± SD, best bold, paired t-tests against cubic);
* ``table2_ablation.{md,tex,csv}`` (paper Table 2 layout: one row per degradation preset; row 1 = cubic, rows 2–8 =
  the diffusion model trained with that preset) and ``table2_summary.{md,tex,csv}``;
* ``fig_table1_psnr.png``, ``fig_table1_cord_dice.png`` (box plots per model) and ``fig_table2_ablation.png``
  (metrics against the ablation row);
* ``goals.{md,tex,csv}``: cubic < RRDBNet ≤ diffusion on every measurable metric, and row 8 (full stack) ≥ row 1
  (cubic) in the ablation.

Every table carries the reference rows written by ``run.py`` (scored by the same function): ``floor (zeros)``,
``floor (mean)`` — what a model that learned nothing scores — and ``ceiling (band-limit)`` — HR band-limited to the
thick stack's Nyquist frequency along the I–S axis. A method with degenerate results (:mod:`mrisr.report.guard`:
near-constant output, or PSNR / SSIM at or below the floor) has them counted in the ``degenerate`` column
(``k/n``) and the footnote, is never bold, and its degenerate results are left out of the goal checks (the goals
say how many and why).

The paper's vertebra metrics (detection rate, Betti errors, axial vertebra Dice) need a vertebra segmenter that is
not available offline; the measurable ones are PSNR / SSIM (whole volume and thick-stack field of view), the
C2-referenced MUCCA error against HR and the cord Dice against the manual mask (classical segmenter).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mrisr import report
from mrisr.experiment.helpers import label_rows, read_run_rows, table_parser, table_paths
from mrisr.report.export import method_rows, ordering_goals, write_frame_table, write_summary_table
from mrisr.report.guard import (
    degenerate_methods,
    degenerate_results,
    exclude_degenerate,
    exclusion_note,
    method_flags,
)
from mrisr.report.plotting import metric_label, pyplot, save_and_close

HERE = Path(__file__).resolve().parent
LABEL = "graf2024"
SOURCE = "experiments/graf2024/tables.py"
#: Reference rows (run.py, :mod:`mrisr.eval.scoring`): CSV method → table name.
REFERENCES = {"floor_zero": "floor (zeros)", "floor_mean": "floor (mean)", "ceiling_bandlimit": "ceiling (band-limit)"}
#: Table 1: CSV method → paper name.
MODELS = {"cubic": "cubic", "rrdbnet": "RRDBNet (ESRGAN)", "edsr": "EDSR", "diffusion_row8": "diffusion (Palette)"}
#: Table 2: ablation row → (CSV method, degradations of the training preset).
ABLATION = {
    1: ("cubic", "cubic upscale (no model)"),
    2: ("diffusion_row2", "colour jitter + down/upscale"),
    3: ("diffusion_row3", "+ SMORE one PSF"),
    4: ("diffusion_row4", "colour jitter + down/up + SMORE multi PSF"),
    5: ("diffusion_row5", "+ interslice gap"),
    6: ("diffusion_row6", "+ movement (interlace) artefact"),
    7: ("diffusion_row7", "+ rescale, rotate"),
    8: ("diffusion_row8", "+ blur, bias field, noise (full)"),
}
METRICS = ("psnr", "ssim", "psnr_fov", "ssim_fov", "mucca_abs_err_mm2", "cord_dice_manual", "mucca_mm2")
GOAL_METRICS = ("psnr", "ssim", "mucca_abs_err_mm2", "cord_dice_manual")
LOWER_IS_BETTER = ("mucca_abs_err_mm2",)


def load_rows(path: Path) -> pd.DataFrame:
    """Tidy rows of ``run.py`` read from ``path`` (:func:`prepare_rows`)."""
    return prepare_rows(read_run_rows(path, HERE), path)


def prepare_rows(rows: pd.DataFrame, path: Path | None = None) -> pd.DataFrame:
    """Rows with the ``label`` and ``run`` columns of :mod:`mrisr.report`, text keys, numeric values."""
    return label_rows(rows, LABEL, path)


def all_names(names: dict[str, str]) -> dict[str, str]:
    """``names`` followed by the reference rows."""
    return {**names, **REFERENCES}


def summary_of(rows: pd.DataFrame, names: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(renamed rows of the chosen methods in order, their :func:`mrisr.report.summarize` against cubic)."""
    part = rows[rows["method"].isin(list(names))].copy()
    part["order"] = part["method"].map({m: i for i, m in enumerate(names)})
    part = part.sort_values("order", kind="stable").drop(columns="order")
    part["method"] = part["method"].map(names)
    metrics = [m for m in METRICS if m in set(part["metric"])]
    unranked = [*REFERENCES.values(), *(names.get(m, m) for m in degenerate_methods(degenerate_results(rows)))]
    summary = report.summarize(part, reference="cubic" if "cubic" in names.values() else None, metrics=metrics,
                               lower_is_better=LOWER_IS_BETTER, unranked_methods=unranked)  # fmt: skip
    return part, summary


def with_flags(frame: pd.DataFrame, rows: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """``frame`` (one row per method, named) with a ``degenerate`` column: k/n degenerate results (– for references)."""
    flags = {names.get(m, m): f for m, f in method_flags(rows, degenerate_results(rows)).items()}
    return frame.assign(degenerate=frame["method"].map(lambda m: flags.get(m, "–")))


def ablation_names() -> dict[str, str]:
    """CSV method → ``row N`` label of Table 2 (row 1 is cubic)."""
    return {method: ("cubic" if n == 1 else f"row {n}") for n, (method, _) in ABLATION.items()}


def table1(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Table 1 by model, its summary)."""
    names = all_names(MODELS)
    _, summary = summary_of(rows, names)
    frame = method_rows(summary, [m for m in METRICS if m in set(summary["metric"])], list(names.values()))
    return with_flags(frame, rows, names), summary


def table2(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Table 2 by ablation row with its degradations, its summary)."""
    names = all_names(ablation_names())
    _, summary = summary_of(rows, names)
    frame = method_rows(summary, [m for m in METRICS if m in set(summary["metric"])], list(names.values()))
    frame = with_flags(frame, rows, names)
    labels = {("cubic" if n == 1 else f"row {n}"): (n, text) for n, (_, text) in ABLATION.items()}
    labels.update({name: ("–", name) for name in REFERENCES.values()})
    frame.insert(0, "degradations", frame["method"].map(lambda m: labels[m][1]))
    frame.insert(0, "row", frame["method"].map(lambda m: labels[m][0]))
    return frame.drop(columns="method"), summary


def goal_checks(rows: pd.DataFrame) -> pd.DataFrame:
    """cubic < RRDBNet ≤ diffusion (Table 1) and row 8 ≥ row 1 (Table 2) on the measurable metrics.

    Degenerate results (:mod:`mrisr.report.guard`) are left out; ``excluded`` says how many of the compared
    methods' results were left out (a goal whose method has no result left is n/a).
    """
    kept, degenerate = exclude_degenerate(rows)
    goals = _goals(kept)
    counts = degenerate.groupby("method").size().to_dict() if not degenerate.empty else {}
    names = {**MODELS, **ablation_names()}
    by_name = {names[m]: n for m, n in counts.items() if m in names}
    goals["excluded (degenerate)"] = goals["goal"].map(
        lambda g: sum(by_name.get(side.strip(), 0) for side in g.replace("≤", "<").split("<"))
    )
    return goals


def _goals(rows: pd.DataFrame) -> pd.DataFrame:
    _, s1 = summary_of(rows, MODELS)
    chain = [("cubic", "<", "RRDBNet (ESRGAN)"), ("RRDBNet (ESRGAN)", "≤", "diffusion (Palette)")]
    models = ordering_goals(s1, chain, GOAL_METRICS, LOWER_IS_BETTER).assign(table="Table 1")
    _, s2 = summary_of(rows, ablation_names())
    ablation = ordering_goals(s2, [("cubic", "≤", "row 8")], GOAL_METRICS, LOWER_IS_BETTER).assign(table="Table 2")
    goals = pd.concat([models, ablation], ignore_index=True)
    return goals[["table", *[c for c in goals.columns if c != "table"]]]


def plot_ablation(summary: pd.DataFrame, path: Path) -> Path:
    """Mean ± SD of the goal metrics against the ablation row (row 1 = cubic)."""
    plt = pyplot()
    metrics = [m for m in GOAL_METRICS if m in set(summary["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.0))
    for ax, metric in zip(np.atleast_1d(axes), metrics, strict=True):
        part = summary[(summary["metric"] == metric) & ~summary["method"].isin(list(REFERENCES.values()))]
        x = [1 if m == "cubic" else int(m.split()[1]) for m in part["method"]]
        ax.errorbar(x, part["mean"], yerr=part["sd"].fillna(0.0), marker="o", capsize=3)
        ax.set_xticks(range(1, 9))
        ax.set_xlabel("Table 2 row")
        ax.set_title(metric_label(metric), fontsize=9)
    fig.tight_layout()
    return save_and_close(fig, path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = table_parser(__doc__.splitlines()[0])
    return table_paths(parser.parse_args(argv), HERE)


def main(argv: Sequence[str] | None = None) -> dict[str, list[str]]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(args.csv)
    written: dict[str, list[str]] = {}
    degenerate = degenerate_results(rows)
    names = {**MODELS, **ablation_names(), **REFERENCES}
    note = exclusion_note(degenerate, names)
    frame, summary = table1(rows)
    caption = ("Table 1 layout: mean over the test subjects; mucca_abs_err_mm2 = |MUCCA − MUCCA(HR)| (lower is "
               "better), cord_dice_manual = Dice of the classical cord mask against the manual mask; reference rows: "
               "floor = all-zero output / the input's mean everywhere, ceiling = HR band-limited to the LR Nyquist "
               "frequency along I–S (never bold). degenerate = k/n results flagged. " + note)  # fmt: skip
    written["table1"] = list(map(str, write_frame_table(frame, args.out / "table1_models", caption, SOURCE)))
    written["table1"] += map(str, write_summary_table(summary, args.out / "table1_summary", note))
    part, _ = summary_of(rows, MODELS)
    for metric, name in (("psnr", "psnr"), ("cord_dice_manual", "cord_dice")):
        if metric in set(part["metric"]):
            written["table1"].append(str(report.plot_boxplots(part, metric, args.out / f"fig_table1_{name}.png")))
    frame, summary = table2(rows)
    caption = ("Table 2 layout: every row tested on the same graf_eval inputs; row 1 is cubic interpolation; "
               "reference rows as Table 1. " + note)  # fmt: skip
    written["table2"] = list(map(str, write_frame_table(frame, args.out / "table2_ablation", caption, SOURCE)))
    written["table2"] += map(str, write_summary_table(summary, args.out / "table2_summary", note))
    written["table2"].append(str(plot_ablation(summary, args.out / "fig_table2_ablation.png")))
    goals = goal_checks(rows)
    caption = ("Goals: cubic < RRDBNet ≤ diffusion (Table 1); full stack (row 8) ≥ cubic (row 1) (Table 2). "
               + exclusion_note(degenerate, names))  # fmt: skip
    written["goals"] = list(map(str, write_frame_table(goals, args.out / "goals", caption, SOURCE)))
    passed = f"{int(goals['passed'].eq(True).sum())}/{len(goals)}"
    print(json.dumps({"out": str(args.out), "goals_passed": passed, "outputs": written}))
    return written


if __name__ == "__main__":
    main()
