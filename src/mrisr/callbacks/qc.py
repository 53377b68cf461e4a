"""The HTML QC report of a ``train.py`` test stage: one page per test volume, an index (``train.py qc=<folder>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from mrisr.callbacks.base import EvaluationCallback
from mrisr.core.version import VERSION


class QCReportCallback(EvaluationCallback):
    """Writes :mod:`mrisr.report.qc` pages of the test volumes (input, SR, SD map) and the index of ``folder``.

    Args:
        folder: the report folder (pages of other runs in it stay in the index).
    """

    def __init__(self, folder: str) -> None:
        super().__init__(folder, tables={})
        self.folder = Path(folder)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict[str, Any]) -> None:
        from mrisr.report.qc import QCEntry, write_qc_page

        record = {
            "model": outputs["method"],
            "mrisr_version": VERSION,
            "setting": outputs.get("setting"),
            "subject": outputs["name"],
            "warnings": [],
        }
        name = f"{outputs['method']}_{outputs['name']}_{outputs.get('setting', '')}".strip("_")
        entry = QCEntry(
            name=name, input=outputs["lr"], output=outputs["sr"], record=record, sd=outputs.get("uncertainty")
        )
        write_qc_page(entry, self.folder)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_test_epoch_end(trainer, pl_module)
        if trainer.is_global_zero:
            from mrisr.report.qc import write_qc_index

            write_qc_index(self.folder)
