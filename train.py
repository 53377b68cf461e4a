"""Train and test an SR model (Hydra application; config conf/train.yaml).

Usage: ``python train.py [group=option ...] [key=value ...]``, e.g. ``python train.py model=edsr_small
trainer.max_epochs=20 seed=1``; sweeps with ``--multirun`` (``python train.py -m seed=0,1,2``). Each run writes its
checkpoints, logs and ``metrics.json`` (the final logged metrics) to ``paths.output_dir``, a new folder under
``paths.runs_dir``. ``--cfg job`` prints the composed config, ``--hydra-help`` Hydra's own options.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mrisr.core.atomic import write_json_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.utils.cli import print_help, run_cli, run_hydra, wants_help
from mrisr.utils.config import check_hydra_overrides

log = logging.getLogger("mrisr.train")

#: Expected types of the options whose default (``null``) does not tell.
OPTION_TYPES: dict[str, type] = {"num_threads": int}


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a ``name: {_target_: ...}`` group (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit ``cfg.model`` on ``cfg.data``, then test the best checkpoint; returns the final logged metrics."""
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
    if not isinstance(model, L.LightningModule) or not protocol.needs_checkpoint:
        raise MrisrInputError(
            None,
            f"model {type(model).__name__} is not trained by train.py (inference protocol: {protocol})",
            "use infer.py for interpolation baselines and per-volume (zero-shot) models, "
            "or choose a trainable model (e.g. model=edsr_small)",
        )
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = instantiate_group(cfg.get("callbacks")) + instantiate_group(cfg.get("eval"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    if cfg.train:
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    elif cfg.ckpt_path:
        # Evaluate a trained checkpoint (e.g. under another strategy) without training.
        trainer.validate(model=model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=False)
    else:
        raise MrisrInputError(None, "train=false needs a checkpoint to evaluate", "pass ckpt_path=<.ckpt>")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.test and not cfg.train:
        trainer.test(model=model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    elif cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint recorded: testing the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})

    output_dir = Path(cfg.paths.output_dir)
    if not trainer.is_global_zero:
        return metrics
    write_json_atomic(dict(sorted(metrics.items())), output_dir / "metrics.json")
    if trainer.checkpoint_callback is not None:
        log.info("best checkpoint: %s", trainer.checkpoint_callback.best_model_path)
        log.info("last checkpoint: %s", trainer.checkpoint_callback.last_model_path)
    log.info("run directory: %s", output_dir)
    return metrics


def train_job(cfg: DictConfig) -> float | None:
    """The Hydra job: checks the overrides, trains; returns ``optimized_metric`` for hyperparameter sweepers."""
    check_hydra_overrides(OPTION_TYPES)
    return train(cfg).get(str(cfg.optimized_metric))


def main(argv: list[str]) -> int:
    """Run ``train.py`` on the command line ``argv`` (overrides and Hydra flags); returns the exit status."""
    if wants_help(argv):
        return print_help(__doc__, "train", argv)
    run_hydra(train_job, "train", argv, types=OPTION_TYPES)
    return 0


if __name__ == "__main__":
    run_cli(main)
