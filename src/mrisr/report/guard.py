"""Degenerate-result guard of the paper tables: results that show a model learned nothing are flagged, never best.

A result (one subject, setting and method of the tidy rows, :mod:`mrisr.io.rows`) is **degenerate** when

* its output is (near-)constant over the HR foreground: ``fg_std_ratio`` (SD of the output over the HR foreground
  / SD of the HR there, :func:`mrisr.eval.scoring.score_volume`) below :data:`STD_RATIO_MIN` (an all-zero or
  constant output has 0), or
* it scores at or below the floor: a higher-is-better metric of :data:`FLOOR_METRICS` (PSNR, SSIM) not above the
  better of the two floor references of the same subject and setting (``floor_zero``: all-zero output,
  ``floor_mean``: the input's mean everywhere), scored with the same mask and normalisation.

Reference rows (:data:`mrisr.io.rows.REFERENCE_METHODS`) and the HR reference itself are never judged. The
tables mark degenerate methods (a ``degenerate`` column ``k/n`` and a footnote), never print them bold, and the goal
checks leave their results out and say how many were left out and why (:func:`exclusion_note`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mrisr.io.rows import KEY_FIELDS, REFERENCE_METHODS

__all__ = [
    "FLOOR_METHODS",
    "FLOOR_METRICS",
    "STD_RATIO_MIN",
    "degenerate_methods",
    "degenerate_results",
    "exclude_degenerate",
    "exclusion_note",
    "method_flags",
]

#: Smallest foreground SD of an output relative to the HR's that is not near-constant.
STD_RATIO_MIN = 1e-3
#: Higher-is-better metrics compared with the floor references.
FLOOR_METRICS: tuple[str, ...] = ("psnr", "ssim")
#: The floor references (their better value is the floor).
FLOOR_METHODS: tuple[str, ...] = ("floor_zero", "floor_mean")
#: Methods never judged: references and the HR itself.
NOT_JUDGED: tuple[str, ...] = (*REFERENCE_METHODS, "HR", "manual")


def degenerate_results(
    rows: pd.DataFrame, std_ratio_min: float = STD_RATIO_MIN, floor_metrics: Sequence[str] = FLOOR_METRICS
) -> pd.DataFrame:
    """The degenerate results of ``rows`` (module docstring): columns subject, setting, method, reason.

    Args:
        rows: tidy rows (at least subject, setting, method, metric, value), method names as written by the runner.
        std_ratio_min: threshold of ``fg_std_ratio``.
        floor_metrics: higher-is-better metrics compared with the floors.
    """
    columns = [*KEY_FIELDS, "reason"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    keys = list(KEY_FIELDS)
    values = rows.assign(value=pd.to_numeric(rows["value"], errors="coerce"))
    judged = values[~values["method"].isin(NOT_JUDGED)]
    reasons: dict[tuple[str, str, str], list[str]] = {}
    ratio = judged[judged["metric"] == "fg_std_ratio"]
    for rec in ratio.itertuples(index=False):
        if np.isfinite(rec.value) and rec.value < std_ratio_min:
            key = (str(rec.subject), str(rec.setting), str(rec.method))
            reasons.setdefault(key, []).append(f"near-constant output (foreground SD ratio {rec.value:.2g})")
    floors = values[values["method"].isin(FLOOR_METHODS) & values["metric"].isin(floor_metrics)]
    if not floors.empty:
        best_floor = floors.groupby(["subject", "setting", "metric"])["value"].max()
        scored = judged[judged["metric"].isin(floor_metrics)]
        for rec in scored.itertuples(index=False):
            floor = best_floor.get((rec.subject, rec.setting, rec.metric), np.nan)
            if np.isfinite(rec.value) and np.isfinite(floor) and rec.value <= floor:
                key = (str(rec.subject), str(rec.setting), str(rec.method))
                reasons.setdefault(key, []).append(f"{rec.metric} {rec.value:.3g} ≤ floor {floor:.3g}")
    records = [{**dict(zip(keys, key, strict=True)), "reason": "; ".join(r)} for key, r in sorted(reasons.items())]
    return pd.DataFrame(records, columns=columns)


def exclude_degenerate(rows: pd.DataFrame, degenerate: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(``rows`` without the degenerate results, the degenerate results) — for goal checks."""
    degenerate = degenerate_results(rows) if degenerate is None else degenerate
    if degenerate.empty:
        return rows, degenerate
    bad = set(map(tuple, degenerate[list(KEY_FIELDS)].astype(str).to_numpy()))
    keys = zip(rows["subject"].astype(str), rows["setting"].astype(str), rows["method"].astype(str), strict=True)
    keep = np.array([key not in bad for key in keys], dtype=bool)
    return rows[keep], degenerate


def method_flags(rows: pd.DataFrame, degenerate: pd.DataFrame, by_setting: bool = False) -> dict[Any, str]:
    """Per judged method of ``rows`` (per (setting, method) with ``by_setting``): ``k/n`` degenerate results / results.

    E.g. ``{"edsr": "0/3"}``, or ``{("3||1", "SR"): "1/6"}`` with ``by_setting``.
    """
    flags: dict[Any, str] = {}
    judged = rows[~rows["method"].isin(NOT_JUDGED)]
    keys = ["setting", "method"] if by_setting else ["method"]
    for key, part in judged.groupby(keys, sort=False):
        n = part[["subject", "setting"]].drop_duplicates().shape[0]
        k = 0
        if not degenerate.empty:
            hit = degenerate["method"] == part["method"].iloc[0]
            if by_setting:
                hit &= degenerate["setting"] == part["setting"].iloc[0]
            k = int(hit.sum())
        flags[tuple(map(str, key)) if by_setting else str(key[0] if isinstance(key, tuple) else key)] = f"{k}/{n}"
    return flags


def degenerate_methods(degenerate: pd.DataFrame) -> list[str]:
    """Methods with at least one degenerate result (never bold in a table)."""
    return [] if degenerate.empty else list(dict.fromkeys(degenerate["method"].astype(str)))


def exclusion_note(degenerate: pd.DataFrame, names: dict[str, str] | None = None) -> str:
    """One sentence for tables and goals: how many results were flagged / excluded as degenerate, and why."""
    rule = (
        f"degenerate = near-constant output (foreground SD < {STD_RATIO_MIN:g} × HR's) or "
        f"{' / '.join(FLOOR_METRICS)} at or below the floor (better of floor_zero, floor_mean)"
    )
    if degenerate.empty:
        return f"No result is degenerate ({rule})."
    names = names or {}
    parts = []
    for method, part in degenerate.groupby("method", sort=False):
        reasons = "; ".join(dict.fromkeys(f"{r.subject} {r.setting}: {r.reason}" for r in part.itertuples()))
        parts.append(f"{names.get(str(method), method)} ({len(part)}: {reasons})")
    head = f"{len(degenerate)} degenerate result(s) flagged (column degenerate, never bold) and excluded from the goal"
    return f"{head} checks ({rule}): " + "; ".join(parts) + "."
