"""Test the synthetic subjects with the evaluation callbacks: ``python replay_run.py OUTPUT_DIR TRAINER N_SUBJECTS``.

``TRAINER`` is an option of ``conf/trainer`` (e.g. ``ddp_cpu``: Lightning starts the other ranks by running this
script again). Rank 0 writes the logged test metrics to ``OUTPUT_DIR/metrics.json`` beside the callbacks' tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from replay import ReplayModule
from synthetic import SyntheticTestData

from mrisr.callbacks import ImageMetricsCallback, MontageCallback
from mrisr.callbacks.cord import CordMorphometryCallback
from mrisr.utils.config import compose


def evaluation_callbacks(output_dir: Path) -> list[L.Callback]:
    """Image metrics (three baselines), cord morphometry of the HR annotation, montages of the first two volumes."""
    return [
        ImageMetricsCallback(str(output_dir)),
        CordMorphometryCallback(str(output_dir), qc_plots=False),
        MontageCallback(str(output_dir), max_volumes=2),
    ]


def run(output_dir: Path, trainer_option: str, n_subjects: int) -> dict[str, float]:
    """Run ``trainer.test`` over ``n_subjects`` synthetic volumes; returns the logged metrics (every rank)."""
    cfg = compose("train", [f"trainer={trainer_option}", f"paths.output_dir={output_dir}"])
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=evaluation_callbacks(output_dir),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(ReplayModule(), datamodule=SyntheticTestData(n_subjects), verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


if __name__ == "__main__":
    run(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
