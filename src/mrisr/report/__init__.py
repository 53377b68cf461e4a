"""``python -m mrisr.report runs=<run dirs | multirun dir | CSVs> output=<dir> [reference=cubic] [metrics=[…]]``.

Aggregates the tidy per-image result CSVs (``subject, setting, method, metric, value``) of many runs into benchmark
tables and figures:

* ``benchmark.md``, ``benchmark.tex`` (a booktabs ``tabular`` to ``\\input``) and ``summary.csv``: mean ± SD over
  subjects (and pooled runs) per run label × setting × metric (rows) and method (columns); the best mean of a row in
  bold; markers for a paired t-test (per run and subject) against the ``reference`` method;
* ``runs.csv``: every run found, its label and its tables;
* ``clinical.md``: the rows of ``clinical_stats.csv`` files when present
  (:class:`~mrisr.callbacks.clinical.ClinicalCorrelationCallback`);
* figures (PNG): ``boxplot_<metric>`` per setting (Dewey et al., Fig. 3); for metrics measured on HR as well
  (``hr_method``, e.g. MUCCA): ``correlation_<metric>`` heat maps across settings (Fig. 4), ``agreement_<metric>``
  scatter against HR with identity line, OLS fit and 95 % confidence band (Fig. 5), ``bland_altman_<metric>``; with a
  clinical table: ``clinical_<metric>`` scatter against each outcome (Fig. 6).

Runs are labelled by the Hydra overrides that differ between them (``.hydra/overrides.yaml``); runs that differ only
in ``pool`` keys (default ``seed``) or not at all are pooled. Metrics missing from some runs are left empty; extra
metrics are tabulated unless ``metrics`` restricts them. The last line printed is a JSON object listing the outputs.

Modules: :mod:`~mrisr.report.runs` (finding, labelling and loading runs), :mod:`~mrisr.report.summary` (statistics
per row), :mod:`~mrisr.report.tables` (Markdown/LaTeX tables), :mod:`~mrisr.report.figures` (box plots, clinical
scatter), :mod:`~mrisr.report.agreement` (figures against HR), :mod:`~mrisr.report.plotting` (shared figure helpers)
and :mod:`~mrisr.report.cli` (the command line). Separately, :mod:`~mrisr.report.qc` writes the static HTML
quality-control pages of an inference batch (one per volume, and an index; docs/qc.md).
"""

from __future__ import annotations

from mrisr.core.atomic import save_figure_atomic, write_rows_atomic, write_text_atomic
from mrisr.report.agreement import plot_agreement, plot_bland_altman, plot_correlation_heatmaps
from mrisr.report.cli import main
from mrisr.report.figures import plot_boxplots, plot_clinical
from mrisr.report.runs import Run, find_runs, label_runs, load_clinical_stats, load_runs
from mrisr.report.summary import summarize
from mrisr.report.tables import clinical_markdown, latex_escape, latex_table, markdown_table

__all__ = [
    "Run",
    "clinical_markdown",
    "find_runs",
    "label_runs",
    "latex_escape",
    "latex_table",
    "load_clinical_stats",
    "load_runs",
    "main",
    "markdown_table",
    "plot_agreement",
    "plot_bland_altman",
    "plot_boxplots",
    "plot_clinical",
    "plot_correlation_heatmaps",
    "save_figure_atomic",
    "summarize",
    "write_rows_atomic",
    "write_text_atomic",
]
