"""Train and test an SR model: ``python train.py [group=option] [key=value]`` (Hydra; see conf/train.yaml)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import mrisr.utils.config  # noqa: F401  (registers the ${repo_root:} resolver before Hydra composes)
from mrisr.io.errors import MrisrInputError

log = logging.getLogger("mrisr.train")


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
    L.seed_everything(cfg.seed, workers=True)

    datamodule: L.LightningDataModule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    if not isinstance(model, L.LightningModule):
        raise MrisrInputError(
            None,
            f"model {type(model).__name__} has nothing to train",
            "use infer.py for interpolation baselines, or choose a trainable model (e.g. model=edsr_small)",
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
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    if trainer.checkpoint_callback is not None:
        log.info("best checkpoint: %s", trainer.checkpoint_callback.best_model_path)
        log.info("last checkpoint: %s", trainer.checkpoint_callback.last_model_path)
    log.info("run directory: %s", output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``val/loss`` for hyperparameter sweepers."""
    try:
        metrics = train(cfg)
    except MrisrInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return metrics.get("val/loss")


if __name__ == "__main__":
    main()
