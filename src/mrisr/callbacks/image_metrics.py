"""Image-similarity evaluation of whole test volumes, as tidy rows (docs/evaluation.md §1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L

from mrisr.callbacks.base import INTERPOLATION_ORDERS, TIDY_FIELDS, EvaluationCallback, Table, check_baselines
from mrisr.eval.scoring import score_volume

# The tidy columns under their former name, for importers of this module.
FIELDS = TIDY_FIELDS

__all__ = ["FIELDS", "INTERPOLATION_ORDERS", "ImageMetricsCallback"]


class ImageMetricsCallback(EvaluationCallback):
    """PSNR and mean SSIM of the model and of interpolation baselines against HR, per test volume.

    Scored by :func:`mrisr.eval.scoring.score_volume` (the scoring of the paper experiments too): ``psnr``,
    ``ssim`` and ``fg_std_ratio`` (the input of the degenerate-result guard) per method. Expects ``test_step``
    outputs with ``name``, ``setting``, ``hr``, ``lr``, ``sr``, ``grid`` and ``method``.
    Rows (:data:`~mrisr.callbacks.base.TIDY_FIELDS`) go to ``<output_dir>/<filename>``; the logger gets the means
    over the test volumes (``test/psnr``, ``test/ssim``, ``test/psnr_cubic``…).

    Args:
        output_dir: directory of the CSV (the run directory).
        filename: CSV file name.
        baselines: interpolation baselines evaluated beside the model (``nearest``, ``linear``, ``cubic``).
        percentile: HR intensity percentile mapped to 1 before comparing (docs/evaluation.md §1).
    """

    def __init__(
        self,
        output_dir: str,
        filename: str = "test_metrics.csv",
        baselines: Sequence[str] = ("nearest", "linear", "cubic"),
        percentile: float = 99.5,
    ) -> None:
        self.baselines = check_baselines(baselines)
        super().__init__(output_dir, {"metrics": Table(filename, TIDY_FIELDS)})
        self.path = self.output_dir / filename
        self.percentile = percentile

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict[str, Any]) -> None:
        candidates = {"SR": outputs["sr"]}
        for name in self.baselines:
            candidates[name] = self.baseline(trainer, outputs, name)
        steps = int(trainer.global_step)
        for method, volume in candidates.items():
            name = outputs["method"] if method == "SR" else method
            rows = score_volume(volume, outputs["hr"], str(outputs["name"]), str(outputs["setting"]), str(name),
                                percentile=self.percentile, steps=steps)  # fmt: skip
            suffix = "" if method == "SR" else f"_{method}"
            for row in rows:
                self.add_row(row)
                if row["metric"] in ("psnr", "ssim"):
                    self.log_metric(f"test/{row['metric']}{suffix}", row["value"])
