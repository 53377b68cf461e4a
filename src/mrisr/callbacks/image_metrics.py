"""Image-similarity evaluation of whole test volumes, as tidy rows (evaluation.md §1)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L

from mrisr.eval.image import image_metrics
from mrisr.inference import interpolate_volume
from mrisr.utils.atomic import write_rows_atomic

log = logging.getLogger(__name__)

INTERPOLATION_ORDERS = {"nearest": 0, "linear": 1, "cubic": 3}
FIELDS = ("subject", "setting", "method", "metric", "value", "backend")


class ImageMetricsCallback(L.Callback):
    """PSNR and mean SSIM of the model and of interpolation baselines against HR, per test volume.

    Expects ``test_step`` outputs with ``name``, ``setting``, ``hr``, ``lr``, ``sr``, ``grid`` and ``method``.
    Rows go to ``<output_dir>/<filename>`` and to the logger (``test/psnr``, ``test/ssim``, ``test/psnr_cubic``…).

    Args:
        output_dir: directory of the CSV (the run directory).
        filename: CSV file name.
        baselines: interpolation baselines evaluated beside the model (``nearest``, ``linear``, ``cubic``).
        percentile: HR intensity percentile mapped to 1 before comparing (evaluation.md §1).
    """

    def __init__(
        self,
        output_dir: str,
        filename: str = "test_metrics.csv",
        baselines: Sequence[str] = ("nearest", "linear", "cubic"),
        percentile: float = 99.5,
    ) -> None:
        unknown = set(baselines) - set(INTERPOLATION_ORDERS)
        if unknown:
            raise ValueError(f"unknown baselines {sorted(unknown)}; choose from {sorted(INTERPOLATION_ORDERS)}")
        self.path = Path(output_dir) / filename
        self.baselines = tuple(baselines)
        self.percentile = percentile
        self.rows: list[dict[str, Any]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        candidates = {"SR": outputs["sr"]}
        for name in self.baselines:
            candidates[name] = interpolate_volume(outputs["lr"], outputs["grid"], order=INTERPOLATION_ORDERS[name])
        for method, volume in candidates.items():
            metrics = image_metrics(volume, outputs["hr"], percentile=self.percentile)
            for metric in ("psnr", "ssim"):
                value = float(metrics[metric])
                self.rows.append(
                    {
                        "subject": outputs["name"],
                        "setting": outputs["setting"],
                        "method": outputs["method"] if method == "SR" else method,
                        "metric": metric,
                        "value": value,
                        "backend": "mrisr.eval.image",
                    }
                )
                suffix = "" if method == "SR" else f"_{method}"
                pl_module.log(f"test/{metric}{suffix}", value, batch_size=1)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.rows:
            write_rows_atomic(self.rows, self.path, FIELDS)
            log.info("test metrics written to %s", self.path)
