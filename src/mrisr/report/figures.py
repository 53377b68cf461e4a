"""Benchmark figures over all methods (PNG, 130 dpi), after Dewey et al. (AJNR 2024).

* :func:`plot_boxplots`: a metric per setting and method, subjects as dots (Fig. 3);
* :func:`plot_clinical`: clinical outcomes against the metric on the randomised-resolution cohort (Fig. 6).

The figures plotted against HR (Figs. 4 and 5, Bland–Altman) are in :mod:`mrisr.report.agreement`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mrisr.eval import stats
from mrisr.report.plotting import draw_fit, edge_labels, metric_label, pyplot, resolution_labels, save_and_close
from mrisr.report.summary import natural_key, ordered
from mrisr.report.tables import format_p

__all__ = ["plot_boxplots", "plot_clinical"]

log = logging.getLogger(__name__)


def plot_boxplots(rows: pd.DataFrame, metric: str, path: Path) -> Path:
    """Box plots of ``metric`` per setting (x) and method (colours), subjects as dots (Dewey et al., Fig. 3)."""
    plt = pyplot()
    data = rows[rows["metric"] == metric].assign(resolution=lambda d: resolution_labels(d, sep="\n"))
    groups = sorted(ordered(data["resolution"]), key=natural_key)
    methods = ordered(data["method"])
    width = 0.8 / len(methods)
    longest = max(len(line) for g in groups for line in str(g).splitlines())
    per_group = max(1.1 * max(1.0, len(methods) / 2.5), 0.085 * longest)
    fig, ax = plt.subplots(figsize=(max(5.0, per_group * len(groups) + 1.5), 4.2))
    colours = plt.get_cmap("tab10")
    rng = np.random.default_rng(0)
    for m_idx, method in enumerate(methods):
        positions, series = [], []
        for g_idx, group in enumerate(groups):
            values = data.loc[(data["resolution"] == group) & (data["method"] == method), "value"].dropna().to_numpy()
            if values.size:
                positions.append(g_idx + (m_idx - (len(methods) - 1) / 2) * width)
                series.append(values)
        if not series:
            continue
        colour = colours(m_idx % 10)
        box = ax.boxplot(series, positions=positions, widths=width * 0.8, patch_artist=True, showfliers=False)
        for patch in box["boxes"]:
            patch.set(facecolor=(*colour[:3], 0.35), edgecolor=colour)
        for part in ("whiskers", "caps", "medians"):
            for line in box[part]:
                line.set(color=colour, linewidth=1.2)
        for pos, values in zip(positions, series, strict=True):
            jitter = rng.uniform(-0.25, 0.25, values.size) * width
            ax.scatter(pos + jitter, values, s=12, color=colour, alpha=0.8, zorder=3, linewidths=0)
        ax.plot([], [], color=colour, linewidth=6, alpha=0.5, label=str(method))
    ax.set_xticks(range(len(groups)), [str(g) for g in groups], fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel(metric_label(metric))
    ax.set_xlabel("setting")
    ax.set_title(f"{metric_label(metric)} per setting")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="method", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_and_close(fig, path)


def plot_clinical(
    rows: pd.DataFrame,
    clinical: pd.DataFrame,
    metric: str,
    outcomes: Sequence[str],
    path: Path,
    covariates: Sequence[str] = ("age", "sex"),
    seed: int = 0,
) -> Path | None:
    """Outcome against the metric per method (Dewey et al., Fig. 6), on the randomised-resolution cohort.

    With several settings each subject keeps one drawn setting (:func:`~mrisr.eval.stats.random_resolution_cohort`);
    panels show the OLS line with 95 % band and the partial r (p) adjusted for ``covariates``.
    """
    data = rows[rows["metric"] == metric]
    outcomes = [o for o in outcomes if o in clinical.columns]
    if data.empty or not outcomes:
        log.info("clinical plot of %s skipped: no rows or no outcome column", metric)
        return None
    if data["setting"].nunique() > 1:
        data = stats.random_resolution_cohort(data, seed=seed)
    wide = data.groupby(["subject", "method"])["value"].mean().unstack("method").reset_index()
    merged = wide.merge(clinical, on="subject", how="inner")
    methods = [c for c in wide.columns if c != "subject"]
    if len(merged) < 3 or not methods:
        log.info("clinical plot of %s skipped: fewer than 3 subjects with clinical data", metric)
        return None
    plt = pyplot()
    fig, axes = plt.subplots(
        len(outcomes), len(methods), figsize=(2.9 * len(methods) + 0.5, 2.9 * len(outcomes) + 0.6),
        squeeze=False, sharex=True, sharey="row", layout="constrained",
    )  # fmt: skip
    cov = [c for c in covariates if c in merged.columns]
    for i, outcome in enumerate(outcomes):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            pair = merged[[method, outcome, *cov]].dropna()
            x, y = pair[method].to_numpy(), pair[outcome].to_numpy()
            ax.scatter(x, y, s=8, alpha=0.5, color=f"C{j}", linewidths=0)
            if len(pair) > len(cov) + 3 and np.ptp(x) > 0:
                draw_fit(ax, x, y, f"C{j}")
                c = stats.partial_correlation(pair, method, outcome, cov)
                ax.set_title(f"{method} · {outcome}\npartial r {c.r:.2f}, {format_p(c.p)}, n {c.n}", fontsize=7.5)
            ax.grid(alpha=0.3)
    edge_labels(axes, metric_label(metric), outcomes)
    adjusted = f"; partial r adjusted for {', '.join(cov)}" if cov else ""
    fig.suptitle(f"Clinical outcomes against {metric} (randomised-resolution cohort{adjusted})", fontsize=10)
    return save_and_close(fig, path)
