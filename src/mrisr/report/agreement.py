"""Benchmark figures of a metric measured on HR as well (e.g. MUCCA), each method against HR (PNG, 130 dpi).

* :func:`plot_correlation_heatmaps`: Pearson r between HR and each method across settings (Dewey et al., Fig. 4);
* :func:`plot_agreement`: each method against HR with identity line, OLS fit and 95 % confidence band (Fig. 5);
* :func:`plot_bland_altman`: difference to HR against the mean, with bias and limits of agreement.

Each returns None (and logs why) when fewer than three subjects have the values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mrisr.eval import stats
from mrisr.report.plotting import draw_fit, edge_labels, metric_label, pyplot, resolution_labels, save_and_close
from mrisr.report.summary import natural_key, ordered
from mrisr.report.tables import format_p

__all__ = ["plot_agreement", "plot_bland_altman", "plot_correlation_heatmaps"]

log = logging.getLogger(__name__)


def _hr_wide(rows: pd.DataFrame, metric: str, hr_method: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Per-subject frame with ``HR`` and ``<method> @ <resolution>`` columns, plus resolutions and methods."""
    data = rows[rows["metric"] == metric].assign(resolution=lambda d: resolution_labels(d))
    keys = ["subject"] + (["session"] if "session" in data.columns else [])
    hr = data[data["method"] == hr_method].groupby(keys)["value"].mean().rename(hr_method)
    others = data[data["method"] != hr_method]
    wide = others.pivot_table(index=keys, columns=["method", "resolution"], values="value", aggfunc="mean")
    wide.columns = [f"{m} @ {r}" for m, r in wide.columns]
    frame = pd.concat([hr, wide], axis=1)
    resolutions = sorted(ordered(others["resolution"]), key=natural_key)
    return frame, resolutions, ordered(others["method"])


def plot_correlation_heatmaps(rows: pd.DataFrame, metric: str, hr_method: str, path: Path) -> Path | None:
    """Pearson r between HR and each method across settings, one heat map per method (Dewey et al., Fig. 4).

    Returns None (and logs why) when fewer than three subjects have the values.
    """
    plt = pyplot()
    frame, resolutions, methods = _hr_wide(rows, metric, hr_method)
    if len(frame.dropna(how="all")) < 3 or not methods:
        log.info("correlation heat map of %s skipped: fewer than 3 subjects or no method besides %s", metric, hr_method)
        return None
    n_cols = 1 + len(resolutions)
    size = 0.75 * n_cols + 1.6
    fig, axes = plt.subplots(1, len(methods), figsize=(size * len(methods) + 0.8, size), squeeze=False)
    image = None
    for ax, method in zip(axes[0], methods, strict=True):
        cols = [hr_method] + [f"{method} @ {r}" for r in resolutions]
        cols = [c for c in cols if c in frame.columns]
        corr = frame[cols].corr(method="pearson", min_periods=3).to_numpy()
        names = [hr_method] + [c.split(" @ ", 1)[1] for c in cols[1:]]
        image = ax.imshow(corr, vmin=np.nanmin([np.nanmin(corr), 0.8]), vmax=1.0, cmap="viridis")
        for i in range(len(cols)):
            for j in range(len(cols)):
                if np.isfinite(corr[i, j]):
                    shade = (corr[i, j] - image.norm.vmin) / max(image.norm.vmax - image.norm.vmin, 1e-9)
                    ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if shade > 0.6 else "white")  # fmt: skip
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_title(f"{method}: {metric}", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="Pearson r")
    return save_and_close(fig, path)


@dataclass(frozen=True)
class _Panel:
    """One panel of a method × setting grid against HR: complete HR/method pairs (None: no such column)."""

    ax: Any
    row: int
    title: str
    hr: np.ndarray | None
    values: np.ndarray | None


def _hr_grid(
    rows: pd.DataFrame, metric: str, hr_method: str, what: str
) -> tuple[Any, np.ndarray, pd.DataFrame, list[str], list[_Panel]] | None:
    """Figure, axes (methods × settings), wide frame, methods and panels; None (logged) under three HR subjects."""
    frame, resolutions, methods = _hr_wide(rows, metric, hr_method)
    if hr_method not in frame.columns or len(frame) < 3:
        log.info("%s of %s skipped: fewer than 3 subjects with %s", what, metric, hr_method)
        return None
    plt = pyplot()
    fig, axes = plt.subplots(
        len(methods), len(resolutions), figsize=(2.8 * len(resolutions) + 0.6, 3.15 * len(methods) + 0.5),
        squeeze=False, sharex=True, sharey=True, layout="constrained",
    )  # fmt: skip
    panels = []
    for i, method in enumerate(methods):
        for j, res in enumerate(resolutions):
            column = f"{method} @ {res}"
            pair = frame[[hr_method, column]].dropna() if column in frame.columns else None
            hr, values = (None, None) if pair is None else (pair[hr_method].to_numpy(), pair[column].to_numpy())
            panels.append(_Panel(axes[i, j], i, f"{method} · {res}", hr, values))
    return fig, axes, frame, methods, panels


def plot_agreement(rows: pd.DataFrame, metric: str, hr_method: str, path: Path) -> Path | None:
    """Each method against HR per setting: identity line, OLS fit with 95 % band, r, R² and identity p (Fig. 5)."""
    grid = _hr_grid(rows, metric, hr_method, "agreement plot")
    if grid is None:
        return None
    fig, axes, frame, methods, panels = grid
    all_values = frame.to_numpy(dtype=float)
    lo, hi = np.nanmin(all_values), np.nanmax(all_values)
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    lims = (lo - pad, hi + pad)
    for panel in panels:
        ax, title, colour = panel.ax, panel.title, f"C{panel.row}"
        ax.plot(lims, lims, "--", color="0.5", linewidth=1, label="identity")
        if panel.hr is not None:
            x, y = panel.hr, panel.values
            ax.scatter(x, y, s=9, alpha=0.6, color=colour, linewidths=0)
            if x.size >= 3 and np.ptp(x) > 0:
                draw_fit(ax, x, y, colour, label="OLS fit, 95 % CI")
                test = stats.identity_line_test(x, y)
                r = stats.pearson_correlation(x, y).r
                p_text = format_p(test.p_slope).removeprefix("p ")
                title += f"\nr {r:.3f}, R² {test.r2:.2f}, n {test.n}\nslope {test.slope:.2f}, p(slope = 1) {p_text}"
        ax.set_title(title, fontsize=7.5)
        ax.set_xlim(lims)
        ax.set_ylim(lims)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    edge_labels(axes, f"{hr_method} {metric_label(metric)}", [f"{m} {metric_label(metric)}" for m in methods])
    axes[0, 0].legend(loc="lower right", fontsize=7, frameon=False)
    fig.suptitle(f"{metric}: methods against {hr_method}", fontsize=10)
    return save_and_close(fig, path)


def plot_bland_altman(rows: pd.DataFrame, metric: str, hr_method: str, path: Path) -> Path | None:
    """Bland–Altman plots (method − HR against their mean) per method and setting, with bias and 95 % limits."""
    grid = _hr_grid(rows, metric, hr_method, "Bland-Altman plot")
    if grid is None:
        return None
    fig, axes, _, methods, panels = grid
    for panel in panels:
        ax, title, colour = panel.ax, panel.title, f"C{panel.row}"
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        if panel.values is not None and panel.values.size >= 2:
            a, b = panel.values, panel.hr
            ba = stats.bland_altman(a, b)
            ax.scatter((a + b) / 2, a - b, s=9, alpha=0.6, color=colour, linewidths=0)
            ax.axhline(ba.bias, color=colour, linewidth=1.3)
            for limit in (ba.loa_low, ba.loa_high):
                ax.axhline(limit, color=colour, linestyle="--", linewidth=1)
            title += f"\nbias {ba.bias:.2f} [{ba.bias_ci_low:.2f}, {ba.bias_ci_high:.2f}], n {ba.n}"
            title += f"\nLoA {ba.loa_low:.2f} to {ba.loa_high:.2f}"
        ax.set_title(title, fontsize=7.5)
        ax.grid(alpha=0.3)
    edge_labels(axes, f"mean of method and {hr_method}", [f"{m} − {hr_method}" for m in methods])
    fig.suptitle(f"{metric}: Bland–Altman against {hr_method} (solid: bias, dashed: ±1.96 SD)", fontsize=10)
    return save_and_close(fig, path)
