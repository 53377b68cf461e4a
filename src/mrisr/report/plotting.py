"""Shared helpers of the report figures: headless pyplot, atomic saving, labels, panel grids and fitted lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mrisr.core.atomic import save_figure_atomic
from mrisr.eval import stats

__all__ = ["METRIC_LABELS", "draw_fit", "edge_labels", "metric_label", "pyplot", "resolution_labels", "save_and_close"]

METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mucca_mm2": "MUCCA (mm²)", "csa_mm2": "CSA (mm²)"}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_and_close(figure: Any, path: Path) -> Path:
    """Save a report figure atomically (PNG, 130 dpi) and close it."""
    try:
        return save_figure_atomic(figure, path, dpi=130)
    finally:
        pyplot().close(figure)


def metric_label(metric: str) -> str:
    """Axis label of a metric with its unit (``mucca_mm2`` → ``MUCCA (mm²)``); the name itself when unknown."""
    return METRIC_LABELS.get(metric, metric)


def _short_label(label: str) -> str:
    """Figure label of a run: ``a.b.key=value, c.other=v`` → ``key=value, other=v``."""
    parts = [p.strip() for p in str(label).split(", ") if p.strip()]
    return ", ".join(
        p.split("=", 1)[0].rsplit(".", 1)[-1] + ("=" + p.split("=", 1)[1] if "=" in p else "") for p in parts
    )


def resolution_labels(rows: pd.DataFrame, sep: str = " | ") -> pd.Series:
    """One label per (run label, setting): the setting, prefixed by the short run label when there are several."""
    labels = rows["label"].astype(str).map(_short_label)
    settings = rows["setting"].astype(str)
    if labels.nunique() > 1:
        return pd.Series(np.where(settings != "", labels + sep + settings, labels), index=rows.index)
    return settings.where(settings != "", labels)


def edge_labels(axes: np.ndarray, xlabel: str, ylabels: Sequence[str]) -> None:
    """Axis labels of a panel grid: ``xlabel`` under the bottom row, one y label per row on the left column."""
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=8)
    for ax, ylabel in zip(axes[:, 0], ylabels, strict=True):
        ax.set_ylabel(ylabel, fontsize=8)


def draw_fit(ax: Any, x: np.ndarray, y: np.ndarray, colour: str, label: str | None = None) -> None:
    """OLS line of y on x over the range of x with its 95 % confidence band (:func:`~mrisr.eval.stats.ols_fit_band`)."""
    band = stats.ols_fit_band(x, y, np.linspace(x.min(), x.max(), 50))
    ax.fill_between(band.grid, band.low, band.high, color=colour, alpha=0.2, linewidth=0)
    ax.plot(band.grid, band.fit, color=colour, linewidth=1.3, label=label)
