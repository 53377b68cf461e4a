"""Command line of the benchmark report: ``python -m mrisr.report runs=… output=…`` (see :mod:`mrisr.report`).

The options are those of ``conf/report.yaml``; the last line printed is a JSON object listing the outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mrisr.core.atomic import write_rows_atomic, write_text_atomic
from mrisr.eval.clinical import load_clinical_table
from mrisr.report.agreement import plot_agreement, plot_bland_altman, plot_correlation_heatmaps
from mrisr.report.figures import plot_boxplots, plot_clinical
from mrisr.report.runs import Run, find_runs, label_runs, load_clinical_stats, load_runs
from mrisr.report.summary import ordered, summarize
from mrisr.report.tables import clinical_markdown, latex_table, markdown_table

__all__ = ["main"]

log = logging.getLogger(__name__)


def _as_list(value: Any) -> list[str]:
    from omegaconf import ListConfig

    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value]
    return [str(value)]


def _write_tables(cfg: Any, runs: Sequence[Run], summary: pd.DataFrame, output: Path) -> dict[str, str]:
    """``runs.csv``, ``summary.csv``, ``benchmark.md``, ``benchmark.tex`` and, with callback rows, ``clinical.md``."""
    run_rows = [{"label": r.label, "path": str(r.path), "overrides": " ".join(r.overrides),
                 "tables": " ".join(t.name for t in r.tables)} for r in runs]  # fmt: skip
    write_rows_atomic(run_rows, output / "runs.csv", fields=("label", "path", "overrides", "tables"))
    write_rows_atomic(summary.to_dict("records"), output / "summary.csv", fields=list(summary.columns))
    written = {
        "markdown": str(write_text_atomic(markdown_table(summary, float(cfg.alpha)), output / "benchmark.md")),
        "latex": str(write_text_atomic(latex_table(summary, float(cfg.alpha)), output / "benchmark.tex")),
        "csv": str(output / "summary.csv"),
    }
    clinical_rows = load_clinical_stats(runs)
    if clinical_rows is not None:
        written["clinical_markdown"] = str(write_text_atomic(clinical_markdown(clinical_rows), output / "clinical.md"))
    return written


def _write_figures(cfg: Any, rows: pd.DataFrame, metrics: Sequence[str], output: Path) -> list[str]:
    """Box plots per metric; figures against ``hr_method`` where it was measured; the clinical scatter if asked."""
    from omegaconf import OmegaConf

    figures: list[str] = []
    for metric in metrics:
        figures.append(str(plot_boxplots(rows, metric, output / f"boxplot_{metric}.png")))
        if cfg.hr_method in set(rows.loc[rows["metric"] == metric, "method"]):
            for name, plot in (
                ("correlation", plot_correlation_heatmaps),
                ("agreement", plot_agreement),
                ("bland_altman", plot_bland_altman),
            ):
                path = plot(rows, metric, str(cfg.hr_method), output / f"{name}_{metric}.png")
                if path is not None:
                    figures.append(str(path))
    if cfg.clinical:
        rename = OmegaConf.to_container(cfg.rename) if cfg.rename else {}
        outcomes = _as_list(cfg.outcomes)
        clinical = load_clinical_table(Path(cfg.clinical), outcomes, rename=rename)
        metric = str(cfg.clinical_metric)
        path = plot_clinical(rows, clinical, metric, outcomes, output / f"clinical_{metric}.png", seed=int(cfg.seed))
        if path is not None:
            figures.append(str(path))
    return figures


def main(argv: list[str]) -> int:
    """Compose ``conf/report.yaml`` with the ``argv`` overrides and write the tables and figures; returns 0."""
    from mrisr.utils.cli import print_json_line
    from mrisr.utils.config import compose

    cfg = compose("report", argv)
    output = Path(cfg.output)
    runs = label_runs(find_runs(_as_list(cfg.runs)), pool=_as_list(cfg.pool))
    rows = load_runs(runs)
    summary = summarize(
        rows,
        reference=cfg.reference,
        metrics=_as_list(cfg.metrics) or None,
        lower_is_better=_as_list(cfg.lower_is_better),
        unranked=_as_list(cfg.unranked),
        alpha=float(cfg.alpha),
    )
    if cfg.reference and cfg.reference not in set(rows["method"]):
        log.warning("reference method %r is not in the runs (methods: %s)", cfg.reference, ordered(rows["method"]))
    written: dict[str, Any] = {"runs": len(runs), "labels": ordered(r.label for r in runs)}
    written |= _write_tables(cfg, runs, summary, output)
    written["figures"] = _write_figures(cfg, rows, ordered(summary["metric"]), output)
    print_json_line(written)
    return 0
