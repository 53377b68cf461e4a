"""Tables, figures and goal checks of the Dewey et al. (AJNR 2024) reproduction from the tidy rows of ``run.py``.

Written into ``results/<scale>/`` (or ``--out``):

* Fig. 3: ``fig3_boxplot_psnr.png``, ``fig3_boxplot_ssim.png``; ``table_image_metrics.{md,tex,csv}`` (mean ± SD,
  paired t-test of SR against LR per setting) and ``table_image_ttests.{md,tex,csv}`` (mean SR − LR, t, p, subjects
  with SR > LR);
* Fig. 4: ``fig4_mucca_correlation.png`` (Pearson r across HR and each method's settings) and
  ``table_mucca_correlation.{md,tex,csv}`` (the full HR / LR / SR × setting matrix);
* Fig. 5: ``fig5_mucca_agreement.png`` (against HR MUCCA, identity line, OLS fit with 95 % band) and
  ``table_mucca_identity.{md,tex,csv}`` (slope, p of slope = 1, R², Pearson r with Fisher CI);
* ``fig_bland_altman_mucca.png`` and ``table_bland_altman.{md,tex,csv}``;
* ``table_mucca.{md,tex,csv}`` (MUCCA per setting with paired t-tests against HR; the manual-mask reference) and
  ``table_consistency.{md,tex,csv}`` (SD and range of each subject's MUCCA across the four settings);
* ``goals.{md,csv}``: the reproduction goals, each with its measured values and pass/fail;
* SYNTHETIC (``mrisr.eval.cohort``, planted effects, no real subject): ``synthetic_clinical.{md,csv}`` and
  ``synthetic_fig6_clinical.png`` (partial correlations with EDSS / T25FW / 9HPT adjusted for age and sex,
  regression slopes, Williams' test against HR, bootstrap of 50-subject subsamples on the randomised-resolution
  cohort), ``synthetic_longitudinal.{md,csv}`` (T1w → T2w correction and mixed-effects atrophy models, Tables 1–2).

Reference rows (written by ``run.py``, scored by the same function, image metrics only): ``floor_zero`` and
``floor_mean`` (an all-zero output and the LR mean everywhere: what a model that learned nothing scores) and
``ceiling_bandlimit`` (HR band-limited to the setting's slice Nyquist frequency) appear in
``table_image_metrics`` and ``table_image_methods`` (mean PSNR / SSIM per setting and method with a ``degenerate``
column, ``k/n`` results flagged by :mod:`mrisr.report.guard`); they are never bold. Degenerate results are left out
of the goal checks, and the goals say how many and why.

Statistics: :mod:`mrisr.eval.stats`; tables and figures: :mod:`mrisr.report`. MUCCA comparisons use the MUCCA of
the classical segmenter on HR as reference (the same segmenter as LR and SR), as the paper compares SCT on HR.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mrisr import report
from mrisr.cli.longitudinal import fixed_effects_markdown
from mrisr.core.atomic import write_rows_atomic, write_text_atomic
from mrisr.eval import cohort, stats
from mrisr.eval.clinical import (
    STATS_FIELDS,
    clinical_correlation_rows,
    load_clinical_table,
    longitudinal_analysis,
)
from mrisr.experiment.helpers import label_rows, read_run_rows, table_parser, table_paths
from mrisr.io.rows import REFERENCE_METHODS
from mrisr.report.export import format_cell as _fmt
from mrisr.report.export import method_rows, write_frame_table
from mrisr.report.export import write_summary_table as write_summary
from mrisr.report.guard import degenerate_methods, degenerate_results, exclude_degenerate, exclusion_note, method_flags
from mrisr.report.summary import natural_key

HERE = Path(__file__).resolve().parent
LABEL = "dewey2024"
OUTCOMES = ("edss", "t25fw", "9hpt")


# ---------------------------------------------------------------------------------------------------------------
# Input and generic table writing
# ---------------------------------------------------------------------------------------------------------------


def load_rows(path: Path) -> pd.DataFrame:
    """Tidy rows of ``run.py`` read from ``path`` (:func:`prepare_rows`)."""
    return prepare_rows(read_run_rows(path, HERE), path)


def prepare_rows(rows: pd.DataFrame, path: Path | None = None) -> pd.DataFrame:
    """Rows with the ``label`` and ``run`` columns of :mod:`mrisr.report`, text keys, numeric values."""
    return label_rows(rows, LABEL, path)


def settings_of(rows: pd.DataFrame) -> list[str]:
    """Simulated settings present (HR rows excluded), in natural order (3||0, 3||0.3, 3||0.5, 3||1)."""
    return sorted((s for s in rows["setting"].unique() if s != "HR"), key=natural_key)


def write_table(frame: pd.DataFrame, stem: Path, caption: str) -> list[Path]:
    """``frame`` as ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex`` (:func:`mrisr.report.export.write_frame_table`)."""
    return write_frame_table(frame, stem, caption, source="experiments/dewey2024/tables.py")


# ---------------------------------------------------------------------------------------------------------------
# Real-data analyses
# ---------------------------------------------------------------------------------------------------------------


def wide(rows: pd.DataFrame, metric: str, methods: Sequence[str]) -> pd.DataFrame:
    """Per (subject, setting) one column per method of ``metric``."""
    sel = rows[(rows["metric"] == metric) & rows["method"].isin(methods)]
    return sel.pivot_table(index=["subject", "setting"], columns="method", values="value", aggfunc="mean")


def hr_wide(rows: pd.DataFrame, hr_method: str = "HR") -> pd.DataFrame:
    """MUCCA per subject × setting with columns LR, SR and the subject's HR (and manual) value beside them."""
    mucca = rows[rows["metric"] == "mucca_mm2"]
    per = wide(mucca[mucca["setting"] != "HR"], "mucca_mm2", ["LR", "SR"]).reset_index()
    ref = mucca[mucca["setting"] == "HR"].pivot_table(index="subject", columns="method", values="value")
    per = per.merge(ref.reset_index(), on="subject", how="inner")
    return per.dropna(subset=[hr_method])


def image_ttests(rows: pd.DataFrame) -> pd.DataFrame:
    """Paired t-test of SR against LR per setting and image metric; subjects with SR > LR."""
    records = []
    for metric in ("psnr", "ssim"):
        table = wide(rows, metric, ["LR", "SR"]).dropna()
        for setting in settings_of(table.reset_index()):
            pair = table.xs(setting, level="setting")
            rec: dict[str, object] = {"metric": metric, "setting": setting, "n": len(pair)}
            rec.update({"LR mean": pair["LR"].mean(), "SR mean": pair["SR"].mean()})
            rec["SR − LR"] = float((pair["SR"] - pair["LR"]).mean())
            if len(pair) >= 2:
                test = stats.paired_ttest(pair["SR"], pair["LR"])
                rec.update({"t": test.t, "p": test.p, "CI low": test.ci_low, "CI high": test.ci_high})
            rec["SR > LR (subjects)"] = f"{int((pair['SR'] > pair['LR']).sum())}/{len(pair)}"
            records.append(rec)
    return pd.DataFrame(records)


def mucca_table(rows: pd.DataFrame) -> pd.DataFrame:
    """MUCCA per setting: HR / LR / SR / manual means, errors against HR and manual, paired t-tests against HR.

    Each method's numbers use the subjects where both it and HR exist (``n LR``, ``n SR``).
    """
    per = hr_wide(rows)
    records = []
    for setting in settings_of(per):
        part = per[per["setting"] == setting]
        rec: dict[str, object] = {"setting": setting, "HR": part["HR"].mean()}
        if "manual" in part.columns:
            rec["manual"] = part["manual"].mean()
        stats_by_method: dict[str, dict[str, object]] = {}
        for method in ("LR", "SR"):
            pair = part.dropna(subset=[method])
            diff = pair[method] - pair["HR"]
            rec[method] = pair[method].mean() if len(pair) else math.nan
            stats_by_method[method] = {
                f"n {method}": len(pair),
                f"{method} − HR": diff.mean() if len(pair) else math.nan,
                f"|{method} − HR|": diff.abs().mean() if len(pair) else math.nan,
                f"p {method} vs HR": stats.paired_ttest(pair[method], pair["HR"]).p if len(pair) >= 2 else math.nan,
            }
            if "manual" in pair.columns:
                manual_error = (pair[method] - pair["manual"]).abs().mean() if len(pair) else math.nan
                stats_by_method[method][f"|{method} − manual|"] = manual_error
        for method in ("LR", "SR"):
            rec.update(stats_by_method[method])
        if "manual" in part.columns:
            rec["|HR − manual|"] = (part["HR"] - part["manual"]).abs().mean()
        records.append(rec)
    return pd.DataFrame(records)


def correlation_matrix(rows: pd.DataFrame) -> pd.DataFrame:
    """Pearson r between HR and every method × setting MUCCA (subjects as observations; Fig. 4 numbers)."""
    per = hr_wide(rows)
    columns = per.pivot_table(index="subject", columns="setting", values=["LR", "SR"])
    columns.columns = [f"{m} {s}" for m, s in columns.columns]
    order = [f"{m} {s}" for m in ("LR", "SR") for s in settings_of(per) if f"{m} {s}" in columns.columns]
    frame = pd.concat([per.groupby("subject")["HR"].first(), columns[order]], axis=1)
    corr = frame.corr(method="pearson", min_periods=3)
    return corr.reset_index(names="MUCCA")


def hr_pairs(rows: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """``(method, setting, frame of HR and method MUCCA per subject)`` for LR and SR at every setting."""
    per = hr_wide(rows)
    return [
        (method, setting, per.loc[per["setting"] == setting, ["HR", method]].dropna())
        for method in ("LR", "SR")
        for setting in settings_of(per)
    ]


def identity_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method and setting: OLS slope against HR, p(slope = 1), R², Pearson r with its Fisher CI (Fig. 5)."""
    records = []
    for method, setting, pair in hr_pairs(rows):
        rec: dict[str, object] = {"method": method, "setting": setting, "n": len(pair)}
        if len(pair) >= 3 and np.ptp(pair["HR"]) > 0:
            line = stats.identity_line_test(pair["HR"], pair[method])
            corr = stats.pearson_correlation(pair["HR"], pair[method])
            rec.update({"slope": line.slope, "intercept": line.intercept, "p (slope = 1)": line.p_slope,
                        "p (a = 0, b = 1)": line.p_joint, "R²": line.r2, "r": corr.r,
                        "r CI low": corr.ci_low, "r CI high": corr.ci_high})  # fmt: skip
        records.append(rec)
    return pd.DataFrame(records)


def bland_altman_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Bland–Altman bias and 95 % limits of agreement of LR and SR MUCCA against HR per setting."""
    records = []
    for method, setting, pair in hr_pairs(rows):
        rec: dict[str, object] = {"method": method, "setting": setting, "n": len(pair)}
        if len(pair) >= 2:
            ba = stats.bland_altman(pair[method], pair["HR"])
            rec.update({"bias": ba.bias, "bias CI low": ba.bias_ci_low, "bias CI high": ba.bias_ci_high,
                        "LoA low": ba.loa_low, "LoA high": ba.loa_high})  # fmt: skip
        records.append(rec)
    return pd.DataFrame(records)


def consistency_table(rows: pd.DataFrame) -> pd.DataFrame:
    """SD and range (mm²) of each subject's LR and SR MUCCA across the settings, plus the mean row."""
    per = hr_wide(rows)
    records = []
    for subject, part in per.groupby("subject"):
        rec: dict[str, object] = {"subject": subject, "settings": int(part["setting"].nunique())}
        for method in ("LR", "SR"):
            values = part[method].dropna()
            rec[f"{method} SD"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            rec[f"{method} range"] = float(np.ptp(values)) if len(values) else math.nan
        records.append(rec)
    table = pd.DataFrame(records)
    if len(table):
        mean = {"subject": "mean", "settings": int(table["settings"].min())}
        mean.update({c: table[c].mean() for c in table.columns if c not in mean})
        table = pd.concat([table, pd.DataFrame([mean])], ignore_index=True)
    return table


def goal_checks(rows: pd.DataFrame) -> pd.DataFrame:
    """The reproduction goals (docs: paper_targets §1) with the measured values and whether each holds.

    * ``image``: SR > LR in PSNR and in MSSIM for every subject and setting;
    * ``mucca_error`` (per setting): mean |MUCCA(SR) − MUCCA(HR)| ≤ ½ · mean |MUCCA(LR) − MUCCA(HR)|;
    * ``consistency``: mean over subjects of the SD of MUCCA across settings is smaller for SR than for LR.

    Degenerate results (:mod:`mrisr.report.guard`) are left out; ``excluded (degenerate)`` counts the LR and SR
    results left out in a goal's scope. A goal without data has ``passed`` = NA (missing, not failed).
    """
    kept, degenerate = exclude_degenerate(rows)
    goals = _goals(kept)
    judged = degenerate[degenerate["method"].isin(["LR", "SR"])] if not degenerate.empty else degenerate
    goals["excluded (degenerate)"] = [
        len(judged) if scope == "all" or "subjects" in str(scope) else int((judged["setting"] == scope).sum())
        for scope in goals["scope"]
    ]
    return goals


def image_methods_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean PSNR / SSIM per setting and method (LR, SR and the reference rows) with the ``degenerate`` count."""
    image = rows[rows["metric"].isin(["psnr", "ssim"]) & rows["method"].isin(["LR", "SR", *REFERENCE_METHODS])]
    summary = report.summarize(image, reference=None)
    frame = method_rows(summary, ["psnr", "ssim"], ["LR", "SR", *REFERENCE_METHODS])
    flags = method_flags(rows, degenerate_results(rows), by_setting=True)
    settings = frame["setting"] if "setting" in frame else pd.Series(settings_of(image) * len(frame), index=frame.index)
    keys = zip(settings.astype(str), frame["method"].astype(str), strict=True)
    return frame.assign(degenerate=[flags.get(key, "–") for key in keys])


def _goals(rows: pd.DataFrame) -> pd.DataFrame:
    records: list[dict[str, object]] = []
    for metric in ("psnr", "ssim"):
        table = wide(rows, metric, ["LR", "SR"]).dropna()
        better = table["SR"] > table["LR"]
        worst = (table["SR"] - table["LR"]).min() if len(table) else math.nan
        records.append({"goal": f"SR > LR in {metric} for every subject and setting", "scope": "all",
                        "SR": f"{int(better.sum())}/{len(table)} pairs", "LR": "",
                        "criterion": f"all pairs; smallest SR − LR = {_fmt(worst)}",
                        "passed": bool(better.all()) if len(table) else pd.NA})  # fmt: skip
    mucca = mucca_table(rows)
    for rec in mucca.to_dict("records"):
        sr, lr = rec.get("|SR − HR|", math.nan), rec.get("|LR − HR|", math.nan)
        ok = bool(sr <= 0.5 * lr) if np.isfinite(sr) and np.isfinite(lr) else pd.NA
        records.append({"goal": "mean |MUCCA SR − HR| ≤ ½ mean |MUCCA LR − HR|", "scope": rec["setting"],
                        "SR": sr, "LR": lr, "criterion": f"SR ≤ {_fmt(0.5 * lr)} mm²", "passed": ok})  # fmt: skip
    consistency = consistency_table(rows)
    subjects = consistency[consistency["subject"] != "mean"]
    subjects = subjects[subjects["settings"] >= 2]
    if len(subjects):
        sr_sd, lr_sd = subjects["SR SD"].mean(), subjects["LR SD"].mean()
        fewer = int((subjects["SR SD"] < subjects["LR SD"]).sum())
        records.append({"goal": "SR MUCCA more consistent across settings than LR (mean per-subject SD)",
                        "scope": f"{len(subjects)} subjects", "SR": sr_sd, "LR": lr_sd,
                        "criterion": f"SR < LR; subjects with smaller SR SD: {fewer}/{len(subjects)}",
                        "passed": bool(sr_sd < lr_sd)})  # fmt: skip
    else:
        records.append({"goal": "SR MUCCA more consistent across settings than LR (mean per-subject SD)",
                        "scope": "no subject with two settings", "SR": math.nan, "LR": math.nan,
                        "criterion": "SR < LR", "passed": pd.NA})  # fmt: skip
    return pd.DataFrame(records)


def real_data_outputs(rows: pd.DataFrame, out: Path) -> dict[str, list[str]]:
    """All tables and figures of the real (simulated thick-slice) spines."""
    written: dict[str, list[str]] = {}
    image = rows[rows["metric"].isin(["psnr", "ssim"]) & rows["method"].isin(["LR", "SR"])]
    degenerate = degenerate_results(rows)
    note = exclusion_note(degenerate)
    if not image.empty:
        written["fig3"] = [str(report.plot_boxplots(image, m, out / f"fig3_boxplot_{m}.png")) for m in ("psnr", "ssim")]
        with_refs = rows[rows["metric"].isin(["psnr", "ssim"]) & rows["method"].isin(["LR", "SR", *REFERENCE_METHODS])]
        unranked = [*REFERENCE_METHODS, *degenerate_methods(degenerate)]
        summary = report.summarize(with_refs, reference="LR", unranked_methods=unranked)
        written["fig3"] += map(str, write_summary(summary, out / "table_image_metrics", note))
        caption = ("Mean PSNR (dB) / SSIM per setting: LR (cubic), SR and the reference rows (floor_zero: all-zero "
                   "output, floor_mean: the LR mean everywhere, ceiling_bandlimit: HR band-limited to the LR Nyquist "
                   "frequency); degenerate = k/n results flagged. " + note)  # fmt: skip
        written["fig3"] += map(str, write_table(image_methods_table(rows), out / "table_image_methods", caption))
        caption = "Paired t-test of SR against LR per setting (subjects paired)."
        written["fig3"] += map(str, write_table(image_ttests(image), out / "table_image_ttests", caption))
    mucca = rows[(rows["metric"] == "mucca_mm2") & rows["method"].isin(["HR", "LR", "SR"])]
    if not mucca.empty and not hr_wide(rows).empty:
        caption = (
            "C2-referenced MUCCA (mm²) of the classical segmenter on HR, LR (cubic) and SR; p: paired t-test against "
            "HR; manual: MUCCA of the manual mask."
        )
        written["mucca"] = list(map(str, write_table(mucca_table(rows), out / "table_mucca", caption)))
        fig4 = report.plot_correlation_heatmaps(mucca, "mucca_mm2", "HR", out / "fig4_mucca_correlation.png")
        fig5 = report.plot_agreement(mucca, "mucca_mm2", "HR", out / "fig5_mucca_agreement.png")
        ba = report.plot_bland_altman(mucca, "mucca_mm2", "HR", out / "fig_bland_altman_mucca.png")
        written["fig4"] = [str(p) for p in (fig4,) if p is not None]
        caption = "Pearson r of MUCCA across subjects (NaN under 3 subjects)."
        written["fig4"] += map(str, write_table(correlation_matrix(rows), out / "table_mucca_correlation", caption))
        written["fig5"] = [str(p) for p in (fig5,) if p is not None]
        written["fig5"] += map(str, write_table(identity_table(rows), out / "table_mucca_identity",
                                                "OLS of LR/SR MUCCA on HR MUCCA: slope, p of slope = 1 (t, n − 2 df), "
                                                "R², Pearson r with Fisher 95 % CI."))  # fmt: skip
        written["bland_altman"] = [str(p) for p in (ba,) if p is not None]
        written["bland_altman"] += map(str, write_table(bland_altman_table(rows), out / "table_bland_altman",
                                                        "Bland–Altman of method − HR MUCCA (mm²): bias with 95 % CI, "
                                                        "limits of agreement ±1.96 SD."))  # fmt: skip
        written["consistency"] = list(map(str, write_table(consistency_table(rows), out / "table_consistency",
                                                           "SD and range (mm²) of each subject's MUCCA across the "
                                                           "simulated settings.")))  # fmt: skip
    goals = goal_checks(rows)
    caption = "Reproduction goals on the shared spines. " + exclusion_note(degenerate_results(rows))
    written["goals"] = list(map(str, write_table(goals, out / "goals", caption)))
    return written


# ---------------------------------------------------------------------------------------------------------------
# SYNTHETIC clinical and longitudinal analyses
# ---------------------------------------------------------------------------------------------------------------


def synthetic_outputs(out: Path, n_subjects: int, n_longitudinal: int, bootstrap: int, seed: int) -> dict[str, object]:
    """Clinical correlations and longitudinal atrophy models on SYNTHETIC cohorts with planted effects."""
    banner = (
        "**SYNTHETIC** — `mrisr.eval.cohort` draws these subjects from a generative model with planted effects "
        "(no real person, no clinical data); they exercise the statistics of Dewey et al., §1.4–1.6."
    )
    cross = cohort.simulate_synthetic_cohort(n_subjects=n_subjects, seed=seed)
    results = cross.results.assign(label="synthetic", run="synthetic")
    clinical = load_clinical_table(cross.clinical, outcomes=OUTCOMES)
    stat_rows = clinical_correlation_rows(
        results, clinical, OUTCOMES, bootstrap_samples=bootstrap, bootstrap_size=min(50, n_subjects), seed=seed
    )
    write_rows_atomic(stat_rows, out / "synthetic_clinical.csv", fields=STATS_FIELDS)
    frame = pd.DataFrame(stat_rows).assign(label="synthetic")
    random = frame[frame["setting"] == "random"]
    truth = pd.DataFrame(
        [{"outcome": o, "planted slope": v["slope"], "planted partial r": v["partial_r"]}
         for o, v in cross.truth["outcomes"].items()]
    )  # fmt: skip
    boot = random[(random["analysis"] == "bootstrap") & (random["statistic"] == "mean_p")]
    boot_lines = [f"- {r.outcome} / {r.method}: mean p {r.value:.3f}" for r in boot.itertuples()]
    text = "\n".join(
        [
            "# SYNTHETIC clinical correlations (randomised-resolution cohort)",
            "",
            banner,
            "",
            f"{n_subjects} synthetic subjects, four simulated settings; each subject keeps one drawn setting "
            "(`random`). Partial r adjusted for age and sex; Williams' test of r(outcome, HR) against "
            "r(outcome, method).",
            "",
            report.clinical_markdown(random),
            "Planted effects (HR MUCCA):",
            "",
            "| outcome | planted slope | planted partial r |",
            "|---|---|---|",
            *(f"| {r.outcome} | {r._2:.3f} | {r._3:.2f} |" for r in truth.itertuples()),
            "",
            f"Bootstrap ({bootstrap} subsamples of {min(50, n_subjects)} subjects), mean p:" if boot_lines else "",
            *boot_lines,
            "",
        ]
    )
    write_text_atomic(text, out / "synthetic_clinical.md")
    fig6 = report.plot_clinical(results, clinical, "mucca_mm2", OUTCOMES, out / "synthetic_fig6_clinical.png")

    longi = cohort.simulate_synthetic_longitudinal_cohort(n_subjects=n_longitudinal, seed=seed)
    visits = load_clinical_table(longi.clinical, longitudinal=True)
    result = longitudinal_analysis(longi.results, visits)
    write_rows_atomic(result.rows, out / "synthetic_longitudinal.csv", fields=STATS_FIELDS)
    planted = longi.truth
    recovered = {f"{v}{' + image_2d' if w else ''}": (float(f.coef("time")["coef"]), float(f.coef("time")["p"]))
                 for (v, w), f in result.fits.items()}  # fmt: skip
    text = "\n".join(
        [
            banner,
            "",
            fixed_effects_markdown(result, "mucca_mm2"),
            f"Planted: time {planted['time']:.3f} mm²/year, sex {planted['sex']:.3f}, age0 {planted['age0']:.3f}, "
            f"2-D bias SR {planted['image_2d_SR']:.3f} / LR {planted['image_2d_LR']:.3f}, "
            f"T1w offset {planted['t1w_offset_mm2']:.3f} mm².",
            "",
        ]
    )
    write_text_atomic(text, out / "synthetic_longitudinal.md")
    return {
        "clinical": [str(out / "synthetic_clinical.csv"), str(out / "synthetic_clinical.md"), str(fig6)],
        "longitudinal": [str(out / "synthetic_longitudinal.csv"), str(out / "synthetic_longitudinal.md")],
        "time_coef_p": recovered,
        "planted_time": planted["time"],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = table_parser(__doc__.splitlines()[0])
    parser.add_argument("--synthetic-subjects", type=int, default=200, help="cross-sectional cohort size (0: skip)")
    parser.add_argument("--synthetic-longitudinal", type=int, default=80, help="longitudinal cohort size")
    parser.add_argument("--bootstrap", type=int, default=100, help="bootstrap subsamples of the clinical analysis")
    parser.add_argument("--seed", type=int, default=0)
    return table_paths(parser.parse_args(argv), HERE)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = load_rows(args.csv)
    written: dict[str, object] = dict(real_data_outputs(rows, args.out))
    if args.synthetic_subjects > 0:
        written["synthetic"] = synthetic_outputs(
            args.out, args.synthetic_subjects, args.synthetic_longitudinal, args.bootstrap, args.seed
        )
    goals = pd.read_csv(args.out / "goals.csv")
    summary = {"out": str(args.out), "goals_passed": f"{int(goals['passed'].eq(True).sum())}/{len(goals)}"}
    print(json.dumps({**summary, "outputs": written}, default=str))
    return written


if __name__ == "__main__":
    main()
