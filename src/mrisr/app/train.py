"""``train(cfg)``: fit a model on a data module, select the best checkpoint, test it — the one way mrisr trains.

The application behind ``train.py`` (a thin command-line shim), the ``mrisr-train`` console script, the paper
experiments and the benchmarks: all of them compose a ``train`` config (``conf/train.yaml``, e.g. with
:func:`mrisr.utils.config.compose`) and call :func:`train`, so every model is fitted with the same trainer config,
callbacks, loggers and best-checkpoint selection.

Best checkpoint: the ``model_checkpoint`` callback monitors the model's own selection metric
(``monitor`` of the system class: ``val/loss``, ``val/content_loss`` for PRETTIER) unless the config names one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mrisr.core.atomic import write_json_atomic
from mrisr.core.errors import MrisrInputError

if TYPE_CHECKING:
    import lightning as L

__all__ = ["USAGE", "TrainResult", "instantiate_group", "main", "train"]

USAGE = """Train and test an SR model (Hydra application; config conf/train.yaml).

Usage: ``python train.py [group=option ...] [key=value ...]`` (or ``mrisr-train …``), e.g. ``python train.py
model=edsr_small trainer.max_epochs=20 seed=1``; sweeps with ``--multirun`` (``python train.py -m seed=0,1,2``). Each
run writes its checkpoints, logs and ``metrics.json`` (the final logged metrics) to ``paths.output_dir``, a new folder
under ``paths.runs_dir``. ``--cfg job`` prints the composed config, ``--hydra-help`` Hydra's own options.
"""

#: Expected types of the options whose default (``null``) does not tell.
OPTION_TYPES: dict[str, type] = {"num_threads": int}

log = logging.getLogger("mrisr.train")

_CHECKPOINT_TARGET = "lightning.pytorch.callbacks.ModelCheckpoint"


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        metrics: the final logged metrics (``metrics.json``).
        model: the system, with the weights of the best checkpoint when one was recorded (eval mode).
        best_checkpoint: the best checkpoint by the model's monitored metric, or ``None``.
        last_checkpoint: the last checkpoint, or ``None``.
        output_dir: the run directory.
        global_step: optimiser steps taken.
    """

    metrics: dict[str, float]
    model: Any
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    output_dir: Path
    global_step: int


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a ``name: {_target_: ...}`` group (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def _monitor_checkpoints(group: DictConfig | None, model: Any) -> None:
    """Checkpoint callbacks without a ``monitor`` get the model's selection metric and mode."""
    if not group:
        return
    metric, mode = getattr(model, "monitor", ("val/loss", "min"))
    for node in group.values():
        if isinstance(node, DictConfig) and node.get("_target_") == _CHECKPOINT_TARGET and node.get("monitor") is None:
            with open_dict(node):
                node.monitor, node.mode = metric, mode


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> TrainResult:
    """Fit ``cfg.model`` on ``cfg.data``, then test the best checkpoint (module docstring).

    Args:
        cfg: the composed ``train`` config.
        callbacks: callbacks added to those of the config (objects a config cannot hold, e.g. a learning curve
            scored on volumes in memory).

    Raises:
        MrisrInputError: a model that is not trained by ``train`` (interpolation, per-volume models), or
            ``train=false`` without a checkpoint.
    """
    import lightning as L  # here, not at the top: ``infer`` with an interpolation model need not load Lightning

    if cfg.print_config:
        from mrisr.utils.printing import print_config_tree

        print_config_tree(cfg)
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    torch.set_flush_denormal(bool(cfg.flush_denormal))
    L.seed_everything(cfg.seed, workers=True)

    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    protocol = getattr(model, "inference_protocol", None)
    if not isinstance(model, L.LightningModule) or protocol is None or not protocol.needs_checkpoint:
        raise MrisrInputError(
            None,
            f"model {type(model).__name__} is not trained by train.py (inference protocol: {protocol})",
            "use infer.py for interpolation baselines and per-volume (zero-shot) models, "
            "or choose a trainable model (e.g. model=edsr_small)",
        )
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks_cfg = cfg.get("callbacks")
    _monitor_checkpoints(callbacks_cfg, model)
    callbacks = instantiate_group(callbacks_cfg) + instantiate_group(cfg.get("eval")) + list(callbacks)
    if cfg.get("qc"):
        from mrisr.callbacks.qc import QCReportCallback

        callbacks.append(QCReportCallback(str(cfg.qc)))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    if cfg.train:
        # Checkpoints written by train.py hold mrisr objects (the intensity rule, the run config) in their
        # hyperparameters, which torch's weights-only loading refuses: resuming needs the full unpickler.
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=False)
    elif cfg.ckpt_path:
        # Evaluate a trained checkpoint (e.g. under another strategy) without training.
        trainer.validate(model=model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=False)
    else:
        raise MrisrInputError(None, "train=false needs a checkpoint to evaluate", "pass ckpt_path=<.ckpt>")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    checkpoint = trainer.checkpoint_callback
    best = Path(checkpoint.best_model_path) if checkpoint is not None and checkpoint.best_model_path else None
    last = Path(checkpoint.last_model_path) if checkpoint is not None and checkpoint.last_model_path else None
    if cfg.test and not cfg.train:
        trainer.test(model=model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    elif cfg.test:
        if best is None:
            log.warning("no best checkpoint recorded: testing the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=str(best) if best else None, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    elif cfg.train and best is not None:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict(state)

    output_dir = Path(cfg.paths.output_dir)
    result = TrainResult(metrics, model.eval(), best, last, output_dir, int(trainer.global_step))
    if not trainer.is_global_zero:
        return result
    write_json_atomic(dict(sorted(metrics.items())), output_dir / "metrics.json")
    if checkpoint is not None:
        log.info("best checkpoint: %s", checkpoint.best_model_path)
        log.info("last checkpoint: %s", checkpoint.last_model_path)
    log.info("run directory: %s", output_dir)
    return result


def train_job(cfg: DictConfig) -> float | None:
    """The Hydra job: checks the overrides, trains; returns ``optimized_metric`` for hyperparameter sweepers."""
    from mrisr.utils.config import check_hydra_overrides

    check_hydra_overrides(OPTION_TYPES)
    return train(cfg).metrics.get(str(cfg.optimized_metric))


def main(argv: list[str]) -> int:
    """Run ``train`` on the command line ``argv`` (overrides and Hydra flags); returns the exit status."""
    from mrisr.utils.cli import print_help, run_hydra, wants_help

    if wants_help(argv):
        return print_help(USAGE, "train", argv)
    run_hydra(train_job, "train", argv, types=OPTION_TYPES)
    return 0


def run() -> None:
    """Console-script entry point (``mrisr-train``)."""
    from mrisr.utils.cli import run_cli

    run_cli(main)
