"""Finding, labelling and loading the runs of a benchmark report.

A run is a directory holding tidy per-image result CSVs (``subject, setting, method, metric, value``), or such a CSV
given directly. Runs are labelled by the Hydra overrides (``.hydra/overrides.yaml``) that differ between them; runs
differing only in ``pool`` keys (default ``seed``) or not at all share a label and are pooled.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from mrisr.core.errors import MrisrInputError
from mrisr.eval.clinical import RESULT_COLUMNS, load_results

__all__ = ["Run", "find_runs", "label_runs", "load_clinical_stats", "load_runs"]


@dataclass(frozen=True)
class Run:
    """One run: a directory with tidy CSVs (or a tidy CSV file given directly).

    Attributes:
        path: run directory or CSV file.
        tables: tidy result CSVs of the run.
        overrides: Hydra command-line overrides of the run (empty when unknown).
        label: label distinguishing it from the other runs (see :func:`label_runs`).
    """

    path: Path
    tables: tuple[Path, ...]
    overrides: tuple[str, ...] = ()
    label: str = ""


def _is_tidy(path: Path) -> bool:
    try:
        columns = pd.read_csv(path, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        return False
    return set(RESULT_COLUMNS) <= {str(c).strip() for c in columns}


def _read_overrides(run_dir: Path) -> tuple[str, ...]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return ()
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(OmegaConf.load(path))
    return tuple(str(v) for v in values) if isinstance(values, list) else ()


def find_runs(paths: Iterable[str | os.PathLike[str]]) -> list[Run]:
    """Find runs: each path is a run directory, a directory holding runs (e.g. a multirun) or a tidy CSV file.

    A run directory is any directory containing a CSV with the columns ``subject, method, metric, value``; the search
    below a given directory is recursive. Overrides come from ``<run>/.hydra/overrides.yaml``.

    Raises:
        MrisrInputError: a path does not exist, or no tidy CSV was found.
    """
    runs: dict[Path, Run] = {}
    given = [Path(p) for p in paths]
    for path in given:
        if not path.exists():
            raise MrisrInputError(path, "does not exist", "pass run directories, multirun directories or tidy CSVs")
        if path.is_file():
            if not _is_tidy(path):
                raise MrisrInputError(path, f"not a tidy result table (needs columns {list(RESULT_COLUMNS)})", "check")
            runs.setdefault(path.resolve(), Run(path, (path,)))
            continue
        for folder in sorted({csv.parent for csv in path.rglob("*.csv")}):
            tables = tuple(t for t in sorted(folder.glob("*.csv")) if _is_tidy(t))
            if tables:
                runs.setdefault(folder.resolve(), Run(folder, tables, _read_overrides(folder)))
    if not runs:
        raise MrisrInputError(
            ", ".join(map(str, given)),
            f"no tidy result CSV (columns {', '.join(RESULT_COLUMNS)}) found",
            "point runs= at run directories containing test_metrics.csv, their multirun directory, or tidy CSVs",
        )
    return list(runs.values())


def _parse_override(text: str) -> tuple[str, str]:
    key, _, value = text.lstrip("+~").partition("=")
    return key.strip(), value.strip()


def label_runs(
    runs: Sequence[Run], pool: Sequence[str] = ("seed",), ignore_prefixes: Sequence[str] = ("paths.", "hydra.")
) -> list[Run]:
    """Label runs by the overrides whose values differ between them.

    Keys in ``pool`` and keys starting with ``ignore_prefixes`` are left out, so runs differing only in them share a
    label and are pooled. A run without recorded overrides is labelled by its directory or file name.

    Returns:
        The runs with ``label`` set (``""`` when all runs share one configuration).
    """
    parsed = [dict(_parse_override(o) for o in run.overrides) for run in runs]
    keys: list[str] = []
    for overrides in parsed:
        keys += [k for k in overrides if k not in keys]
    varying = [
        k
        for k in keys
        if k not in pool
        and not k.startswith(tuple(ignore_prefixes))
        and len({o.get(k, "<default>") for o, r in zip(parsed, runs, strict=True) if r.overrides}) > 1
    ]
    labelled = []
    for run, overrides in zip(runs, parsed, strict=True):
        if not run.overrides:
            label = run.path.stem if run.path.is_file() else run.path.name
        else:
            label = ", ".join(f"{k}={overrides.get(k, '<default>')}" for k in varying)
        labelled.append(replace(run, label=label))
    return labelled


def load_runs(runs: Sequence[Run]) -> pd.DataFrame:
    """Tidy rows of all runs with ``run`` (path) and ``label`` columns; ``setting`` is filled with ``""`` if absent."""
    frames = []
    for run in runs:
        frame = load_results(list(run.tables))
        if "setting" not in frame.columns:
            frame["setting"] = ""
        frame["setting"] = frame["setting"].fillna("").astype(str)
        frame.insert(0, "label", run.label)
        frame.insert(0, "run", str(run.path))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def load_clinical_stats(runs: Sequence[Run]) -> pd.DataFrame | None:
    """The ``clinical_stats.csv`` rows next to the runs' tables, with a ``label`` column; None when no run has one.

    They are written by :class:`~mrisr.callbacks.clinical.ClinicalCorrelationCallback`.
    """
    frames = []
    for run in runs:
        path = (run.path if run.path.is_dir() else run.path.parent) / "clinical_stats.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(label=run.label or run.path.name))
    return pd.concat(frames, ignore_index=True) if frames else None
