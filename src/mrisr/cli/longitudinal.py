"""Longitudinal MUCCA atrophy model over the visits of a cohort.

Usage: ``mrisr-longitudinal table=per_image.csv clinical=visits.csv output=DIR``
(also ``mrisr longitudinal …`` or ``python -m mrisr.cli.longitudinal …``).

Fits the longitudinal MUCCA atrophy model of Dewey et al. (Tables 1–2;
:func:`mrisr.eval.clinical.longitudinal_analysis`) once per version of the 2-D images (LR, SR), without and with
the 2-D image-type term. Writes ``<output>/longitudinal_stats.csv`` (tidy statistic rows) and
``<output>/longitudinal.md`` (fixed-effects tables), and prints the atrophy slopes as one JSON object on the last
line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from mrisr.core.atomic import check_output_folder, write_rows_atomic, write_text_atomic
from mrisr.eval.clinical import (
    STATS_FIELDS,
    LongitudinalResult,
    load_clinical_table,
    load_results,
    longitudinal_analysis,
)
from mrisr.utils.cli import print_help, print_json_line, run_cli, wants_help
from mrisr.utils.config import compose

TERM_LABELS = {
    "sex": "Sex (M)",
    "image_2d": "Image type (2-D)",
    "age0": "Age (at first scan, years)",
    "time": "Time (from first scan, years)",
    "age0:time": "Age (at first scan) × Time",
    "Intercept": "Intercept",
}


#: Expected types of the options whose default (``null``/``???``) does not tell.
OPTION_TYPES: dict[str, type] = {"t1w_delta_mm2": float}


def as_paths(value: str | Sequence[str] | ListConfig) -> list[Path]:
    """One path or a list of paths from a config value."""
    if isinstance(value, (list, tuple, ListConfig)):
        return [Path(str(v)) for v in value]
    return [Path(str(value))]


def format_p(p: float) -> str:
    """p-value for tables: three decimals, ``< 0.001`` below."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fixed_effects_markdown(result: LongitudinalResult, metric: str) -> str:
    """Markdown tables of the fixed effects, versions side by side (as Dewey et al., Tables 1 and 2)."""
    lines = [f"# Longitudinal mixed-effects models of {metric}", ""]
    if result.correction is not None:
        c = result.correction
        lines += [
            f"T1w → T2w correction: δ = {c.delta:.3f} (95 % CI {c.delta_ci_low:.3f} to {c.delta_ci_high:.3f}), "
            f"r = {c.r:.3f}, corrected slope {c.slope:.3f} (p vs 1 = {format_p(c.p_slope)}), n = {c.n} pairs.",
            "",
        ]
    for with_2d in (False, True):
        fits = {v: f for (v, w), f in result.fits.items() if w == with_2d}
        if not fits:
            continue
        versions = list(fits)
        title = "with the 2-D image-type term" if with_2d else "without a 2-D image-type term"
        lines += [f"## Fixed effects {title}", ""]
        header = ["term"] + [f"{v} {col}" for v in versions for col in ("coefficient", "p")]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        terms = [
            t for t in TERM_LABELS if t != "Intercept" and any(t in set(f.fixed_effects["term"]) for f in fits.values())
        ]
        for term in terms:
            cells = [TERM_LABELS[term]]
            for v in versions:
                row = (
                    fits[v].fixed_effects.set_index("term").loc[term]
                    if term in set(fits[v].fixed_effects["term"])
                    else None
                )
                cells += ["–", "–"] if row is None else [f"{row['coef']:.3f}", format_p(float(row["p"]))]
            lines.append("| " + " | ".join(cells) + " |")
        models = ", ".join(f"{v}: {f.model} ({f.n_obs} images, {f.n_groups} subjects)" for v, f in fits.items())
        lines += ["", f"Models: {models}. p: Wald z (statsmodels MixedLM, REML).", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run the tool on the command line ``argv`` (Hydra-style ``key=value`` overrides); returns the exit status."""
    if wants_help(argv):
        return print_help(__doc__, "longitudinal", argv)
    cfg: DictConfig = compose("longitudinal", argv, types=OPTION_TYPES)
    output = Path(cfg.output)
    check_output_folder(output / "longitudinal_stats.csv")
    rename = OmegaConf.to_container(cfg.rename) if cfg.rename else {}
    visits = load_clinical_table(Path(cfg.clinical), longitudinal=True, rename=rename)
    results = load_results(as_paths(cfg.table))
    result = longitudinal_analysis(
        results,
        visits,
        metric=str(cfg.metric),
        versions=[str(v) for v in cfg.versions],
        native=str(cfg.native),
        t1w_delta_mm2=None if cfg.t1w_delta_mm2 is None else float(cfg.t1w_delta_mm2),
        image_2d_terms=[bool(b) for b in cfg.image_2d_terms],
        path=str(cfg.clinical),
    )
    csv_path = write_rows_atomic(result.rows, output / "longitudinal_stats.csv", fields=STATS_FIELDS)
    md_path = output / "longitudinal.md"
    write_text_atomic(fixed_effects_markdown(result, str(cfg.metric)), md_path)
    summary = {
        "stats": str(csv_path),
        "markdown": str(md_path),
        "time_coef": {
            f"{v}{'+image_2d' if w else ''}": float(f.coef("time")["coef"]) for (v, w), f in result.fits.items()
        },
        "time_p": {f"{v}{'+image_2d' if w else ''}": float(f.coef("time")["p"]) for (v, w), f in result.fits.items()},
        "models": {f"{v}{'+image_2d' if w else ''}": f.model for (v, w), f in result.fits.items()},
        "t1w_delta_mm2": None if result.correction is None else result.correction.delta,
    }
    print_json_line(summary)
    return 0


def run() -> None:
    """Console-script entry point: :func:`main` on ``sys.argv``, exiting with its status."""
    run_cli(main)


if __name__ == "__main__":
    run()
