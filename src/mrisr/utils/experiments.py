"""Helpers of the experiment scripts (``experiments/``): provenance records and step-limited training from a config.

* :func:`git_commit` and :func:`host_record`: what a results folder's ``run.json`` records about the checkout and the
  machine;
* :func:`fit_system`: instantiate ``cfg.data`` and ``cfg.model`` of a composed ``train`` config and fit the system
  for a fixed number of optimiser steps (reproducible under a seed, whatever the load of the machine) or a wall-time
  budget, without checkpoints, loggers or the test stage.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["append_invocation", "fit_system", "git_commit", "host_record"]


def git_commit(repo: Path) -> dict[str, object]:
    """HEAD commit of the checkout at ``repo`` and whether tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError) as err:
        return {"commit": None, "error": str(err)}


def host_record() -> dict[str, object]:
    """CPU count, torch threads, Python and torch versions and the load average (1, 5, 15 min) now."""
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_end": list(os.getloadavg()),
    }


def fit_system(
    cfg: Any,
    seed: int,
    root: Path,
    max_steps: int | None = None,
    max_time_s: float | None = None,
    val_batches: int = 1,
    accelerator: str = "cpu",
    trainer_options: Mapping[str, Any] | None = None,
) -> tuple[Any, float, int]:
    """Fit ``instantiate(cfg.model)`` on ``instantiate(cfg.data)``; returns (system in eval mode, seconds, steps).

    Args:
        cfg: a composed ``train`` config (:func:`mrisr.utils.config.compose`).
        seed: seed of Lightning's ``seed_everything`` (data order, initial weights, degradations drawn).
        root: Lightning's ``default_root_dir`` (nothing is written there without loggers and checkpoints).
        max_steps: optimiser-step budget (Lightning ``global_step``; adversarial systems count the generator and
            the discriminator step of a batch separately). With it the run is deterministic.
        max_time_s: wall-time budget (s) when ``max_steps`` is None.
        val_batches: validation batches per epoch.
        accelerator: Lightning accelerator.
        trainer_options: further ``lightning.Trainer`` arguments (e.g. ``precision``, ``gradient_clip_val``).

    Raises:
        ValueError: neither budget given.
    """
    import lightning as L
    from hydra.utils import instantiate

    if max_steps is None and max_time_s is None:
        raise ValueError("fit_system needs max_steps or max_time_s")
    L.seed_everything(seed, workers=True)
    datamodule = instantiate(cfg.data)
    system = instantiate(cfg.model)
    trainer = L.Trainer(
        accelerator=accelerator,
        max_epochs=-1,
        max_steps=-1 if max_steps is None else int(max_steps),
        max_time=None if max_steps is not None else datetime.timedelta(seconds=float(max_time_s)),
        deterministic=max_steps is not None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=val_batches,
        num_sanity_val_steps=0,
        default_root_dir=root,
        **dict(trainer_options or {}),
    )
    start = time.perf_counter()
    trainer.fit(system, datamodule=datamodule)
    return system.eval(), time.perf_counter() - start, int(trainer.global_step)


def append_invocation(record_path: Path, invocation: dict[str, object]) -> dict[str, object]:
    """Append one invocation (plus :func:`host_record` under ``host``) to the ``invocations`` of a ``run.json``.

    The file is created when missing and rewritten atomically; the whole record is returned.
    """
    import json

    from mrisr.core.atomic import write_json_atomic

    record = json.loads(record_path.read_text()) if record_path.exists() else {"invocations": []}
    record["invocations"].append({**invocation, "host": host_record()})
    write_json_atomic(record, record_path)
    return record


def table_parser(description: str) -> argparse.ArgumentParser:
    """Command line shared by the experiments' ``tables.py``: ``--scale``, ``--csv`` (tidy rows), ``--out`` (folder).

    Add experiment-specific options to the returned parser, then call :func:`table_paths` on the parsed arguments.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scale", choices=["smoke", "paper"], default="smoke")
    parser.add_argument("--csv", type=Path, default=None, help="tidy rows (default results/<scale>/rows.csv)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/<scale>)")
    return parser


def table_paths(args: argparse.Namespace, experiment_folder: Path) -> argparse.Namespace:
    """Fill the defaults of ``--out`` (``<experiment>/results/<scale>``) and ``--csv`` (``<out>/rows.csv``)."""
    args.out = args.out or experiment_folder / "results" / args.scale
    args.csv = args.csv or args.out / "rows.csv"
    return args
