"""Base of the evaluation callbacks: tidy rows per test volume, gathered from every rank and written once.

The SR systems' ``test_step`` returns ``{**batch, "sr": Volume, "method": str}`` for one whole test volume (keys
``name``, ``setting``, ``hr``, ``lr``, ``grid``, ``annotations``…). An :class:`EvaluationCallback` turns each such
output into rows of one or more tidy tables (docs/evaluation.md §8) and into logged scalars. Under a multi-process
strategy every rank evaluates only its own share of the test set; at the end of the test epoch the rows of all ranks
are gathered, the repeats a distributed sampler adds to even out the ranks are dropped, and rank 0 writes each table
once, atomically.

Interpolation baselines of the LR input on the SR grid (nearest, linear, cubic) are needed by several callbacks for
the same test volume; :func:`interpolation_baseline` computes each one once per volume and trainer and hands the same
:class:`~mrisr.io.nifti.Volume` to every callback.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler

from mrisr.core.atomic import write_rows_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.inference import OutputGrid, interpolate_volume
from mrisr.io.nifti import Volume
from mrisr.io.rows import ROW_FIELDS

log = logging.getLogger(__name__)

#: Columns of the tidy metric tables: the one schema of mrisr's results (:data:`mrisr.io.rows.ROW_FIELDS`: one
#: row per subject, setting, method and metric, with status, backend, seconds and steps).
TIDY_FIELDS: tuple[str, ...] = ROW_FIELDS
#: The same schema (``status`` is part of it: ``ok``, ``failed``, ``empty``… for metrics that can fail per volume).
STATUS_FIELDS: tuple[str, ...] = ROW_FIELDS
#: Interpolation baselines and their spline orders (:func:`mrisr.inference.interpolate_volume`).
INTERPOLATION_ORDERS: dict[str, int] = {"nearest": 0, "linear": 1, "cubic": 3}

#: An item's identity for de-duplication.
ItemKey = tuple[Any, ...]


def check_baselines(baselines: Sequence[str]) -> tuple[str, ...]:
    """Validated baseline names (keys of :data:`INTERPOLATION_ORDERS`), in the given order.

    Raises:
        ValueError: for an unknown name.
    """
    unknown = set(baselines) - set(INTERPOLATION_ORDERS)
    if unknown:
        raise ValueError(f"unknown baselines {sorted(unknown)}; choose from {sorted(INTERPOLATION_ORDERS)}")
    return tuple(baselines)


def safe_name(text: str) -> str:
    """``text`` with every character other than letters, digits, ``-``, ``_`` and ``.`` replaced by ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


# ------------------------------------------------------------------------------------ shared interpolation baselines
@dataclass
class _BaselineEntry:
    """Baselines of one test volume; holding ``lr`` and ``grid`` keeps their identities valid as the cache key."""

    lr: Volume
    grid: OutputGrid
    volumes: dict[int, Volume] = field(default_factory=dict)


# One entry per trainer: the callbacks of a batch run one after another, so only the current volume is kept.
_BASELINES: weakref.WeakKeyDictionary[Any, _BaselineEntry] = weakref.WeakKeyDictionary()


def interpolation_baseline(trainer: Any, lr: Volume, grid: OutputGrid, name: str) -> Volume:
    """Interpolation baseline ``name`` of ``lr`` on ``grid``, computed once per test volume and trainer.

    The cache holds the baselines of the latest ``(lr, grid)`` pair seen by ``trainer`` (object identity, so a
    new test volume replaces them); the volume returned is shared and must not be modified.

    Args:
        trainer: The running trainer (cache owner).
        lr: LR input volume on its own grid.
        grid: SR output grid.
        name: ``nearest``, ``linear`` or ``cubic``.
    """
    order = INTERPOLATION_ORDERS[check_baselines([name])[0]]
    entry = _BASELINES.get(trainer)
    if entry is None or entry.lr is not lr or entry.grid is not grid:
        entry = _BASELINES[trainer] = _BaselineEntry(lr, grid)
    if order not in entry.volumes:
        entry.volumes[order] = interpolate_volume(lr, grid, order=order)
    return entry.volumes[order]


def release_baselines(trainer: Any) -> None:
    """Drop the cached baselines of ``trainer`` (end of the test epoch)."""
    _BASELINES.pop(trainer, None)


# ------------------------------------------------------------------------------------ ranks, samplers and gathering
@dataclass
class ItemRecord:
    """What one callback produced for one test volume.

    Attributes:
        key: Identity of the test item (equal on every rank that evaluated the same item).
        dataloader_idx: Index of the test dataloader.
        position: Place of the item in its dataloader's single-process order.
        rank: Rank that evaluated it.
        rows: Table name → rows.
        logs: ``(name, value)`` scalars, averaged over the test volumes at the end of the epoch.
    """

    key: ItemKey
    dataloader_idx: int
    position: int
    rank: int = 0
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    logs: list[tuple[str, float]] = field(default_factory=list)

    @property
    def order(self) -> tuple[int, int, int]:
        """Sort key of the single-process order."""
        return self.dataloader_idx, self.position, self.rank


def _test_loader(trainer: Any, dataloader_idx: int) -> Any:
    loaders = trainer.test_dataloaders
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if isinstance(loaders, Sequence):
        return loaders[dataloader_idx] if dataloader_idx < len(loaders) else None
    return loaders


def world_size() -> int:
    """Number of processes of the initialised default process group (1 without one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def new_record(
    trainer: Any, dataloader_idx: int, batch_idx: int, identity: tuple[str, str], occurrence: int
) -> ItemRecord | None:
    """Empty record of the test volume of batch ``batch_idx`` (one volume per batch); ``None`` for a repeat.

    * :class:`~torch.utils.data.DistributedSampler` (what Lightning injects under DDP, also as its sampler wrapper):
      rank ``r`` of ``W`` gets positions ``r, r + W, r + 2W…`` of the sampler's sequence, which is padded with
      repeats of its first items up to a multiple of ``W``; the key is the position, and positions ≥ the sampled
      length are the repeats (``None``: not to be evaluated again).
    * Several processes without a distributed sampler (every rank may see every item): the key is the item's
      ``identity`` (subject, setting) and its ``occurrence`` count, so the same item seen by two ranks counts once.
    * One process: the key is the batch index; nothing is repeated.

    Args:
        trainer: The running trainer (``test_dataloaders``, ``global_rank``).
        dataloader_idx: Index of the test dataloader.
        batch_idx: Index of the batch within that dataloader on this rank.
        identity: ``(subject, setting)`` of the item.
        occurrence: How often this rank has seen ``identity`` before in this dataloader.

    Returns:
        The record, or ``None`` for a distributed sampler's repeat of an item evaluated elsewhere.

    Raises:
        MrisrInputError: when the test dataloader puts more than one volume in a batch.
    """
    loader = _test_loader(trainer, dataloader_idx)
    batch_size = loader.batch_size if isinstance(loader, DataLoader) else 1
    if batch_size not in (None, 1):
        raise MrisrInputError(
            None,
            f"evaluation callbacks need one whole test volume per batch, the test loader has batch_size={batch_size}",
            "build the test DataLoader with batch_size=1",
        )
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        position = batch_idx * sampler.num_replicas + sampler.rank
        if not sampler.drop_last and position >= len(sampler.dataset):  # type: ignore[arg-type]
            return None
        return ItemRecord((dataloader_idx, position), dataloader_idx, position, sampler.rank)
    if world_size() > 1:
        rank = int(getattr(trainer, "global_rank", 0))
        return ItemRecord((dataloader_idx, *identity, occurrence), dataloader_idx, batch_idx, rank)
    return ItemRecord((dataloader_idx, batch_idx), dataloader_idx, batch_idx)


def merge_records(per_rank: Sequence[Sequence[ItemRecord]]) -> list[ItemRecord]:
    """The records of all ranks in single-process order, each item key once (the first in that order).

    Args:
        per_rank: The records of every rank (rank 0 first).
    """
    merged: dict[ItemKey, ItemRecord] = {}
    for record in sorted((r for records in per_rank for r in records), key=lambda r: r.order):
        merged.setdefault(record.key, record)
    return list(merged.values())


def gather_records(records: list[ItemRecord]) -> list[ItemRecord]:
    """:func:`merge_records` of the records of every rank; all ranks call it and all get the same result."""
    if world_size() == 1:
        return merge_records([records])
    gathered: list[list[ItemRecord] | None] = [None] * world_size()
    torch.distributed.all_gather_object(gathered, records)
    return merge_records([r or [] for r in gathered])


def float32_mean(values: Sequence[float]) -> torch.Tensor:
    """Mean as Lightning reduces per-batch logs of one volume each: running float32 sum over the count."""
    total = torch.zeros((), dtype=torch.float32)
    for value in values:
        total = total + torch.tensor(value, dtype=torch.float32)
    return total / torch.tensor(len(values))


# ------------------------------------------------------------------------------------ the base class
@dataclass(frozen=True)
class Table:
    """A tidy output table: CSV file name in the output directory (``None`` = not written) and its columns."""

    filename: str | None
    fields: tuple[str, ...]


class EvaluationCallback(L.Callback):
    """Per-volume evaluation of test outputs into tidy tables, correct under multi-process testing.

    Subclasses implement :meth:`evaluate`, which is called once per test volume (never for a sampler's padding
    repeat) and reports through :meth:`add_row`, :meth:`log_metric` and :meth:`baseline`. At the end of the test epoch
    the records of all ranks are gathered; every logged name is averaged over the test volumes that logged it (the
    same value on every rank) and rank 0 writes every non-empty table to ``<output_dir>/<filename>``.

    Args:
        output_dir: Directory of the tables (the run directory).
        tables: Table name → :class:`Table`; the first one is the main table (:attr:`rows`).
    """

    def __init__(self, output_dir: str, tables: Mapping[str, Table]) -> None:
        self.output_dir = Path(output_dir)
        self.tables = dict(tables)
        self.records: list[ItemRecord] = []
        self._current: ItemRecord | None = None
        self._steps: int | None = None
        self._seen: dict[tuple[int, str, str], int] = {}
        self._warned: set[str] = set()
        self._log = logging.getLogger(type(self).__module__)

    # ---------------------------------------------------------------- subclass API
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict[str, Any]) -> None:
        """Evaluate one test volume (``test_step`` output); report via :meth:`add_row` and :meth:`log_metric`."""
        raise NotImplementedError

    def add_row(self, row: dict[str, Any], table: str | None = None) -> None:
        """Add ``row`` to ``table`` (default: the main table) for the volume being evaluated.

        Rows of a table with the tidy schema (:data:`TIDY_FIELDS`) get the columns they leave out: ``status`` ``ok``,
        an empty ``backend`` and ``seconds``, and ``steps`` = the model's optimiser steps (``global_step``).
        """
        name = table or next(iter(self.tables))
        if name not in self.tables:
            raise KeyError(f"{type(self).__name__} has no table {name!r}; tables: {sorted(self.tables)}")
        if self.tables[name].fields == TIDY_FIELDS:
            row = {"status": "ok", "backend": "", "seconds": None, "steps": self._steps, **row}
        self._current_record().rows.setdefault(name, []).append(row)

    def log_metric(self, name: str, value: float) -> None:
        """Log ``value`` under ``name``; the logged value is its mean over the test volumes."""
        self._current_record().logs.append((name, float(value)))

    def baseline(self, trainer: L.Trainer, outputs: Mapping[str, Any], name: str) -> Volume:
        """Interpolation baseline ``name`` of ``outputs["lr"]`` on ``outputs["grid"]``, shared by all callbacks."""
        return interpolation_baseline(trainer, outputs["lr"], outputs["grid"], name)

    def warn_once(self, key: str, message: str, *args: Any) -> None:
        """Log a warning (in the subclass's module logger) the first time ``key`` is seen."""
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning(message, *args)

    def table_rows(self, table: str) -> list[dict[str, Any]]:
        """Rows of ``table`` over the records (after the test epoch: of all ranks, in test-set order)."""
        return [row for record in self.records for row in record.rows.get(table, [])]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Rows of the main table."""
        return self.table_rows(next(iter(self.tables))) if self.tables else []

    @property
    def current_item(self) -> ItemRecord:
        """Record of the test volume being evaluated (its ``position`` is its place in the test set)."""
        return self._current_record()

    def _current_record(self) -> ItemRecord:
        if self._current is None:
            raise RuntimeError(f"{type(self).__name__}: rows and metrics can only be reported from evaluate()")
        return self._current

    # ---------------------------------------------------------------- Lightning hooks
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.records = []
        self._seen = {}

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        identity = (str(outputs.get("name", outputs.get("subject"))), str(outputs.get("setting")))
        seen = (dataloader_idx, *identity)
        occurrence = self._seen.get(seen, 0)
        self._seen[seen] = occurrence + 1
        record = new_record(trainer, dataloader_idx, batch_idx, identity, occurrence)
        if record is None:
            return
        self._current = record
        self._steps = int(getattr(trainer, "global_step", 0) or 0)
        try:
            self.evaluate(trainer, pl_module, outputs)
            self.records.append(self._current)
        finally:
            self._current = None

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        release_baselines(trainer)
        self.records = gather_records(self.records)
        sums: dict[str, list[float]] = {}
        for record in self.records:
            for name, value in record.logs:
                sums.setdefault(name, []).append(value)
        for name, values in sums.items():
            # Every rank logs the same mean of the gathered values; sync_dist averages identical numbers (no change)
            # and keeps Lightning's epoch-level reduction consistent across ranks.
            pl_module.log(name, float32_mean(values), sync_dist=True)
        if not trainer.is_global_zero:
            return
        for name, table in self.tables.items():
            rows = self.table_rows(name)
            if rows and table.filename:
                path = write_rows_atomic(rows, self.output_dir / table.filename, fields=table.fields)
                self._log.info("%s: %d rows written to %s", type(self).__name__, len(rows), path)
