"""Benchmark summary: mean ± SD per run label × setting × metric × method, the best method and paired-test markers."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mrisr.core.errors import MrisrInputError
from mrisr.eval import stats

__all__ = ["KEY_COLUMNS", "natural_key", "ordered", "summarize"]

log = logging.getLogger(__name__)

KEY_COLUMNS = ("label", "setting", "metric")


def ordered(values: Iterable[Any]) -> list[Any]:
    """The distinct values in order of first appearance."""
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def natural_key(text: str) -> list[Any]:
    """Sort key comparing digit runs as numbers (``T3`` before ``T10``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def _direction(metric: str, lower_is_better: Sequence[str], unranked: Sequence[str]) -> int:
    """+1 when higher is better, −1 when lower is better, 0 when there is no best (e.g. MUCCA)."""
    name = metric.lower()
    if any(u.lower() == name for u in unranked):
        return 0
    return -1 if any(token.lower() in name for token in lower_is_better) else 1


def _marker(p: float, alpha: float) -> str:
    """Significance marker of a paired-test p: ``*`` (p < alpha), ``**`` (p < 0.01), ``***`` (p < 0.001)."""
    if not np.isfinite(p):
        return ""
    if p < 0.001:
        return "***"
    if p < 0.01:
        return "**"
    return "*" if p < alpha else ""


#: Metrics written for the degenerate-result guard, not scores: tabulated only when asked for by name.
DIAGNOSTIC_METRICS = ("fg_std_ratio",)


def _chosen_metrics(available: list[str], metrics: Sequence[str] | None) -> list[str]:
    """``metrics`` present in the rows (when None, all but :data:`DIAGNOSTIC_METRICS`); warns about absent ones,
    fails when none is left."""
    if metrics is None:
        return [m for m in available if m not in DIAGNOSTIC_METRICS] or available
    chosen = [m for m in metrics if m in available]
    absent = [m for m in metrics if m not in available]
    if absent:
        log.warning("metrics %s are not in any run (present: %s)", absent, available)
    if not chosen:
        raise MrisrInputError(None, f"none of the metrics {list(metrics)} is in the runs", f"choose among {available}")
    return chosen


def summarize(
    rows: pd.DataFrame,
    reference: str | None = "cubic",
    metrics: Sequence[str] | None = None,
    lower_is_better: Sequence[str] = ("mae", "mse", "rmse", "lpips", "err", "loss", "hd95"),
    unranked: Sequence[str] = ("mucca_mm2", "csa_mm2"),
    alpha: float = 0.05,
    unranked_methods: Sequence[str] = (),
) -> pd.DataFrame:
    """Mean ± SD per label × setting × metric × method, the best method per row and paired tests vs ``reference``.

    Paired t-tests (:func:`~mrisr.eval.stats.paired_ttest`) pair a method's value with the reference's value of the
    same run and subject (and session) in the same setting; they need at least two pairs.

    Args:
        rows: output of :func:`~mrisr.report.runs.load_runs`.
        reference: method compared against (None: no tests).
        metrics: metrics kept, in this order (None: all, in order of appearance). Missing ones are skipped.
        lower_is_better: substrings of metric names where lower is better.
        unranked: metrics without a best value (bold nothing).
        alpha: significance level of the lowest marker.
        unranked_methods: methods never marked best (reference rows such as floors and ceilings, and results
            flagged degenerate by :mod:`mrisr.report.guard`).

    Returns:
        One row per label, setting, metric and method: ``n``, ``mean``, ``sd``, ``p_vs_reference``, ``marker``,
        ``best``, ``direction``.
    """
    chosen = _chosen_metrics(ordered(rows["metric"]), metrics)
    sel = rows[rows["metric"].isin(chosen)]
    pair_keys = ["run", "subject"] + (["session"] if "session" in sel.columns else [])
    records = []
    for label in ordered(sel["label"]):
        part = sel[sel["label"] == label]
        for setting in sorted(ordered(part["setting"]), key=natural_key):
            for metric in chosen:
                block = part[(part["setting"] == setting) & (part["metric"] == metric)]
                if block.empty:
                    continue
                wide = block.pivot_table(index=pair_keys, columns="method", values="value", aggfunc="mean")
                for method in ordered(block["method"]):
                    values = block.loc[block["method"] == method, "value"].astype(float)
                    p = math.nan
                    if reference is not None and method != reference and {method, reference} <= set(wide.columns):
                        pairs = wide[[method, reference]].dropna()
                        if len(pairs) >= 2:
                            p = stats.paired_ttest(pairs[method], pairs[reference]).p
                    records.append(
                        {
                            "label": label,
                            "setting": setting,
                            "metric": metric,
                            "method": method,
                            "n": int(values.notna().sum()),
                            "mean": float(values.mean()),
                            "sd": float(values.std(ddof=1)) if values.notna().sum() > 1 else math.nan,
                            "reference": reference or "",
                            "p_vs_reference": p,
                            "marker": _marker(p, alpha),
                            "direction": _direction(metric, lower_is_better, unranked),
                        }
                    )
    summary = pd.DataFrame(records)
    summary["best"] = False
    for _, group in summary.groupby(list(KEY_COLUMNS), sort=False):
        direction = int(group["direction"].iloc[0])
        group = group[~group["method"].isin(list(unranked_methods))]
        if direction == 0 or len(group) < 2 or not group["mean"].notna().any():
            continue
        best = group["mean"].max() if direction > 0 else group["mean"].min()
        summary.loc[group.index[group["mean"] == best], "best"] = True
    return summary
