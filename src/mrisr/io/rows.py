"""The one tidy-row schema of mrisr's results and the one resumable row store.

Every scored result — a test-stage callback's CSV, a paper experiment's ``rows.csv``, a benchmark that scores SR
volumes — is a table of rows with exactly the columns :data:`ROW_FIELDS`, in this order:

==========  ======================================================================================================
column      meaning
==========  ======================================================================================================
subject     the scored volume's subject (or held-out volume) id
setting     the acquisition / test condition (e.g. ``3||0.5``, ``graf_eval``, ``prettier``; ``HR`` for rows of the
            reference itself)
method      what produced the scored volume (``cubic``, ``SR``, ``edsr``…; reference rows
            :data:`REFERENCE_METHODS`: ``floor_zero``, ``floor_mean``, ``ceiling_bandlimit``)
metric      the metric's stable name (``psnr``, ``ssim``, ``psnr_fov``, ``mucca_mm2``, ``cord_dice_manual``…)
value       the number (NaN when it could not be measured; ``status`` says why)
status      ``ok``, or why the value is missing or special (``segmentation failed: …``, ``failed: …``)
backend     the code that measured it (``mrisr.eval.scoring``, ``mrisr.eval.cord/classical``…)
seconds     wall time (s) of producing the scored volume (fit + inference; 0 for references), empty when unknown
steps       optimiser steps of the model that produced it (empty for interpolation and references)
==========  ======================================================================================================

A result is identified by :data:`KEY_FIELDS` (subject, setting, method): :class:`RowStore` skips the results whose
key is present, so an interrupted run resumes where it stopped. Appending rewrites the whole file atomically
(:mod:`mrisr.core.atomic`): a reader never sees half a row.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mrisr.core.atomic import write_atomic
from mrisr.core.errors import MrisrInputError

__all__ = [
    "KEY_FIELDS",
    "REFERENCE_METHODS",
    "ROW_FIELDS",
    "RowStore",
    "make_row",
    "metric_rows",
    "rows_frame",
]

#: The columns of every tidy result table, in order (module docstring).
ROW_FIELDS: tuple[str, ...] = (
    "subject",
    "setting",
    "method",
    "metric",
    "value",
    "status",
    "backend",
    "seconds",
    "steps",
)
#: The identity of one scored result (what a resumed run skips).
KEY_FIELDS: tuple[str, ...] = ("subject", "setting", "method")
#: Methods of the reference rows of the paper tables (:mod:`mrisr.eval.scoring`): what a model that learned nothing
#: scores (all-zero output, the constant mean intensity of the input) and an oracle ceiling (HR band-limited to the
#: LR sampling rate along the through-plane axis).
REFERENCE_METHODS: tuple[str, ...] = ("floor_zero", "floor_mean", "ceiling_bandlimit")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def make_row(
    subject: str,
    setting: str,
    method: str,
    metric: str,
    value: float | None,
    status: str = "ok",
    backend: str = "",
    seconds: float | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """One row of :data:`ROW_FIELDS` (``value`` None → NaN; ``seconds`` rounded to 0.01 s)."""
    secs = _number(seconds)
    return {
        "subject": str(subject),
        "setting": str(setting),
        "method": str(method),
        "metric": str(metric),
        "value": math.nan if value is None else float(value),
        "status": str(status),
        "backend": str(backend),
        "seconds": None if secs is None else round(secs, 2),
        "steps": None if steps is None or _number(steps) is None else int(steps),
    }


def metric_rows(
    subject: str,
    setting: str,
    method: str,
    values: Mapping[str, float | None],
    status: str = "ok",
    backend: str = "",
    seconds: float | None = None,
    steps: int | None = None,
) -> list[dict[str, Any]]:
    """One :func:`make_row` per ``metric: value`` of ``values`` (same key, status, backend, timing)."""
    return [make_row(subject, setting, method, m, v, status, backend, seconds, steps) for m, v in values.items()]


def rows_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """``rows`` as a frame with exactly :data:`ROW_FIELDS` (extra keys refused, missing optional ones empty).

    Raises:
        ValueError: a row has a key outside the schema or lacks one of subject, setting, method, metric, value.
    """
    records = [dict(r) for r in rows]
    for record in records:
        extra = set(record) - set(ROW_FIELDS)
        if extra:
            raise ValueError(f"row has columns outside the schema: {sorted(extra)} (schema {list(ROW_FIELDS)})")
        missing = {"subject", "setting", "method", "metric", "value"} - set(record)
        if missing:
            raise ValueError(f"row lacks {sorted(missing)}: {record}")
    frame = pd.DataFrame(records, columns=list(ROW_FIELDS))
    frame["steps"] = frame["steps"].astype("Int64")
    return frame


class RowStore:
    """A resumable CSV of tidy rows (:data:`ROW_FIELDS`) at ``path``.

    Args:
        path: the CSV (created on the first :meth:`append`; its folder too).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self) -> pd.DataFrame:
        """The rows written so far (an empty frame with the schema's columns when the file does not exist).

        Raises:
            MrisrInputError: the file's header is not :data:`ROW_FIELDS` (a file of another layout).
        """
        if not self.path.exists():
            return rows_frame([])
        frame = pd.read_csv(self.path, dtype={"subject": str, "setting": str, "method": str, "metric": str})
        if tuple(frame.columns) != ROW_FIELDS:
            raise MrisrInputError(
                self.path,
                f"columns {list(frame.columns)} are not the tidy schema {list(ROW_FIELDS)}",
                "write it with mrisr.io.rows.RowStore (or move the old file aside and rerun)",
            )
        frame["status"] = frame["status"].fillna("").astype(str)
        frame["backend"] = frame["backend"].fillna("").astype(str)
        frame["steps"] = frame["steps"].astype("Int64")
        return frame

    def done(self) -> set[tuple[str, str, str]]:
        """The (subject, setting, method) keys present."""
        frame = self.read()
        return {
            (str(s), str(t), str(m))
            for s, t, m in zip(frame["subject"], frame["setting"], frame["method"], strict=True)
        }

    def append(self, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
        """Append ``rows`` (:func:`rows_frame` checks them) and rewrite the file atomically; returns all rows."""
        new = rows_frame(rows)
        old = self.read()
        frame = new if old.empty else pd.concat([old, new], ignore_index=True)
        write_atomic(self.path, lambda handle: frame.to_csv(handle, index=False))
        return frame
