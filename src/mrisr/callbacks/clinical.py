"""Clinical correlations of test-set measurements at the end of testing (Dewey et al.; docs/evaluation.md §5)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import pandas as pd

from mrisr.core.atomic import write_rows_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.eval.clinical import (
    STATS_FIELDS,
    clinical_correlation_rows,
    load_clinical_table,
    load_results,
)

log = logging.getLogger(__name__)


class ClinicalCorrelationCallback(L.Callback):
    """Correlates a per-subject test metric (e.g. MUCCA) with clinical outcomes, adjusted for age and sex.

    Source of the measurements: the tidy CSV files that other evaluation callbacks write into ``output_dir`` during
    the test epoch (``tables``, default ``test_metrics.csv``; e.g. add the cord-morphometry CSV). Those callbacks write
    in ``on_test_epoch_end``, which Lightning runs for every callback before any ``on_test_end``, so reading the files
    here is independent of callback order and of which callback produced the rows, and the same analysis can be
    re-run later from the files alone. Rows are joined on ``subject`` with the clinical table at ``clinical_path``
    (validated in ``setup``, so a bad table stops the run before training). The statistics are
    :func:`mrisr.eval.clinical.clinical_correlation_rows`; the result rows (:data:`~mrisr.eval.clinical.STATS_FIELDS`)
    go to ``<output_dir>/<filename>``.

    Args:
        output_dir: run directory (where the tables are read and the result is written).
        clinical_path: CSV/TSV clinical table (``subject``, ``age``, ``sex`` and the outcome columns).
        outcomes: outcome columns correlated with the metric.
        metric: metric analysed (tidy ``metric`` value).
        reference: method of the reference measurement for Williams' test.
        tables: tidy CSV files (relative to ``output_dir``) holding the metric rows.
        filename: result CSV name.
        covariates: adjustment columns of the clinical table.
        correlation: ``pearson`` or ``spearman``.
        transforms: outcome → regression transform (``none``, ``log``, ``inverse``).
        random_resolution: add the randomised-resolution cohort when there are several settings.
        bootstrap_samples: subsamples (0 disables the bootstrap).
        bootstrap_size: subjects per subsample.
        seed: seed of the resolution draw and the bootstrap.
        rename: clinical column name → canonical name (e.g. ``{id: subject}``).
    """

    def __init__(
        self,
        output_dir: str,
        clinical_path: str | None,
        outcomes: Sequence[str] = ("edss", "t25fw", "9hpt"),
        metric: str = "mucca_mm2",
        reference: str = "HR",
        tables: Sequence[str] = ("test_metrics.csv",),
        filename: str = "clinical_stats.csv",
        covariates: Sequence[str] = ("age", "sex"),
        correlation: str = "pearson",
        transforms: Mapping[str, str] | None = None,
        random_resolution: bool = True,
        bootstrap_samples: int = 100,
        bootstrap_size: int = 50,
        seed: int = 0,
        rename: Mapping[str, str] | None = None,
    ) -> None:
        if correlation not in ("pearson", "spearman"):
            raise ValueError(f"correlation must be 'pearson' or 'spearman', got {correlation!r}")
        self.output_dir = Path(output_dir)
        self.clinical_path = None if clinical_path is None else Path(clinical_path)
        self.outcomes = tuple(outcomes)
        self.metric = metric
        self.reference = reference
        self.tables = tuple(tables)
        self.path = self.output_dir / filename
        self.covariates = tuple(covariates)
        self.correlation = correlation
        self.transforms = dict(transforms or {})
        self.random_resolution = random_resolution
        self.bootstrap_samples = bootstrap_samples
        self.bootstrap_size = bootstrap_size
        self.seed = seed
        self.rename = dict(rename or {})
        self.clinical: pd.DataFrame | None = None

    def _load_clinical(self) -> pd.DataFrame:
        if self.clinical_path is None:
            raise MrisrInputError(
                None,
                "the clinical-correlation callback has no clinical table",
                "set eval.clinical.clinical_path=<subjects.csv> (subject, age, sex, outcomes)",
            )
        return load_clinical_table(self.clinical_path, self.outcomes, rename=self.rename)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage in ("fit", "test") and self.clinical is None:
            self.clinical = self._load_clinical()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        clinical = self.clinical if self.clinical is not None else self._load_clinical()
        paths = [self.output_dir / name for name in self.tables]
        present = [p for p in paths if p.is_file()]
        if not present:
            log.warning("clinical correlations skipped: none of %s exists", [str(p) for p in paths])
            return
        results = load_results(present)
        if self.metric not in set(results["metric"]):
            log.warning(
                "clinical correlations skipped: no %r rows in %s (metrics: %s)",
                self.metric,
                [p.name for p in present],
                sorted(set(results["metric"])),
            )
            return
        rows = clinical_correlation_rows(
            results,
            clinical,
            self.outcomes,
            metric=self.metric,
            reference=self.reference,
            covariates=self.covariates,
            correlation=self.correlation,  # type: ignore[arg-type]
            transforms=self.transforms,  # type: ignore[arg-type]
            random_resolution=self.random_resolution,
            bootstrap_samples=self.bootstrap_samples,
            bootstrap_size=self.bootstrap_size,
            seed=self.seed,
        )
        write_rows_atomic(rows, self.path, fields=STATS_FIELDS)
        log.info("clinical statistics (%d rows) written to %s", len(rows), self.path)
