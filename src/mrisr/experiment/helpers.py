"""Helpers of the experiment scripts (``experiments/``): provenance records and step-limited training from a config.

* :func:`git_commit` and :func:`host_record`: what a results folder's ``run.json`` records about the checkout and the
  machine;
* :func:`load_scale`: an experiment's scale file (``experiments/<paper>/scales/<scale>.yaml``: step budget,
  validation passes, overrides per method);
* :func:`train_model`: train one model through :func:`mrisr.app.train.train` (the one training path: same trainer
  config, checkpoints and best-checkpoint selection) with an optimiser-step budget (reproducible under a seed,
  whatever the load of the machine), its run folder (checkpoints, ``metrics.json``) where the experiment says.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mrisr.core.errors import MrisrInputError

__all__ = [
    "Invocation",
    "TrainedModel",
    "ZeroShotRun",
    "append_invocation",
    "check_table_columns",
    "fit_zero_shot",
    "git_commit",
    "host_record",
    "label_rows",
    "load_scale",
    "read_run_rows",
    "run_parser",
    "run_paths",
    "scale_names",
    "table_parser",
    "table_paths",
    "train_model",
]


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


#: Keys of an experiment scale file (``experiments/<paper>/scales/<scale>.yaml``); ``methods`` maps a method to the
#: Hydra overrides of its training config (empty for methods that are not trained, e.g. cubic).
SCALE_KEYS = ("description", "max_steps")
#: Optional keys of a scale file and their defaults.
SCALE_DEFAULTS: dict[str, Any] = {"validations": 1, "common": [], "methods": {}}


def load_scale(experiment_folder: Path, scale: str) -> dict[str, Any]:
    """The scale file ``<experiment_folder>/scales/<scale>.yaml`` as a plain dict.

    A scale file holds ``description`` (text) and ``max_steps`` (optimiser steps per trained or fitted model), and
    for trained models ``validations`` (validation passes spread over the budget; the best checkpoint is chosen
    among them; default 1), ``common`` (Hydra overrides of every trained method) and ``methods`` (method → its own
    overrides); experiments may add keys of their own (e.g. a zero-shot model and its wall-time cap).

    Raises:
        MrisrInputError: no such file, or a key of :data:`SCALE_KEYS` missing.
    """
    from omegaconf import OmegaConf

    path = Path(experiment_folder) / "scales" / f"{scale}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise MrisrInputError(path, f"no scale file {scale!r}", f"choose one of {names}")
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    missing = [k for k in SCALE_KEYS if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise MrisrInputError(path, f"the scale file lacks {missing}", f"a scale file needs {list(SCALE_KEYS)}")
    return {**SCALE_DEFAULTS, **spec}


def scale_names(experiment_folder: Path) -> list[str]:
    """The scales of an experiment (stems of ``scales/*.yaml``)."""
    return sorted(p.stem for p in (Path(experiment_folder) / "scales").glob("*.yaml"))


@dataclass
class TrainedModel:
    """A model trained by :func:`train_model`.

    Attributes:
        model: the system with its best checkpoint's weights (eval mode).
        seconds: wall time of training (s).
        steps: optimiser steps taken (Lightning ``global_step``; adversarial systems count the generator and the
            discriminator step of a batch).
        best_checkpoint: the checkpoint chosen by the monitored validation metric (``None`` when none was written).
        record: JSON-ready summary (steps, seconds, monitor, best score and checkpoint name, run folder).
    """

    model: Any
    seconds: float
    steps: int
    best_checkpoint: Path | None
    record: dict[str, Any]


def train_model(
    overrides: Sequence[str] | Any,
    output_dir: Path,
    max_steps: int,
    seed: int,
    validations: int = 1,
    callbacks: Sequence[Any] = (),
) -> TrainedModel:
    """Train through :func:`mrisr.app.train.train` (the one training path) with an optimiser-step budget.

    ``overrides`` is a list of ``train`` overrides, or an already composed ``train`` config (a ``DictConfig``, for
    settings an override string cannot express; it is copied, not changed). ``callbacks`` are added to the trainer's
    (e.g. a learning curve). The ``train`` config is composed from ``overrides`` plus the budget (``trainer.max_steps``;
    no epoch or time limit), the seed and the run folder ``output_dir`` (``paths.output_dir``: checkpoints and
    ``metrics.json``); no logger, no test stage. An epoch is ``data.patches_per_epoch`` patches (no batch limit); it is
    set so that the budget holds ``validations`` epochs, each ending in a validation pass (adversarial systems, whose
    generator and discriminator steps both count, get half the batches per step). Of the callbacks only the config's
    ``model_checkpoint`` is kept (added when the config has none): it keeps the best checkpoint by the monitored
    validation metric (the config's ``monitor``, or the model's own), whose weights the returned model carries."""
    import copy

    import yaml
    from omegaconf import DictConfig, OmegaConf, open_dict

    from mrisr.app.train import train
    from mrisr.utils.config import compose

    budget = [
        f"paths.output_dir={output_dir}",
        f"seed={seed}",
        f"++trainer.max_steps={int(max_steps)}",
        "++trainer.max_epochs=-1",
        "++trainer.max_time=null",
        "++trainer.limit_train_batches=null",
        "++trainer.check_val_every_n_epoch=1",
        "test=false",
        "logger=none",
        "print_config=false",
    ]
    if isinstance(overrides, DictConfig):
        cfg = copy.deepcopy(overrides)
        with open_dict(cfg):
            for item in budget:
                key, value = item.lstrip("+").split("=", 1)
                # "logger=none" picks the empty config group option; on a composed config it is no logger.
                value = {} if key == "logger" else yaml.safe_load(value)
                OmegaConf.update(cfg, key, value, force_add=True, merge=False)
    else:
        cfg = compose("train", [*overrides, *budget])
    checkpoint = dict(OmegaConf.to_container(cfg.callbacks, resolve=False) or {}).get("model_checkpoint") or {
        "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
        "monitor": None,
    }
    checkpoint.update(dirpath=str(Path(output_dir) / "checkpoints"), save_last=True, save_top_k=1,
                      filename="step{step:06d}", auto_insert_metric_name=False)  # fmt: skip
    steps_per_batch = 2 if cfg.model.get("discriminator") is not None else 1
    batches = max(1, -(-int(max_steps) // (steps_per_batch * max(1, int(validations)))))
    with open_dict(cfg):
        cfg.data.patches_per_epoch = batches * _batch_size(cfg.data)
        cfg.callbacks = {"model_checkpoint": checkpoint}
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
    start = time.perf_counter()
    result = train(cfg, callbacks=callbacks)
    seconds = time.perf_counter() - start
    node = cfg.callbacks.model_checkpoint
    best = result.best_checkpoint
    record = {
        "steps": result.global_step,
        "validations": int(validations),
        "patches_per_epoch": int(cfg.data.patches_per_epoch),
        "train_s": round(seconds, 1),
        "monitor": node.monitor,
        "mode": node.get("mode", "min"),
        "best_checkpoint": best.name if best else None,
        "best_score": result.metrics.get(str(node.monitor)) if best is None else _best_score(best, str(node.monitor)),
        "run_folder": _portable(Path(output_dir)),
    }
    return TrainedModel(result.model, seconds, int(result.global_step), best, record)


def _portable(path: Path) -> str:
    """``path`` relative to the checkout when it lies inside it (records stay valid on another machine)."""
    from mrisr.utils.config import REPO_ROOT

    try:
        return path.resolve().relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return str(path)


def _batch_size(data_cfg: Any) -> int:
    """``batch_size`` of a data-module config, or the data module's default when the config leaves it out."""
    import inspect

    from hydra.utils import get_class

    if data_cfg.get("batch_size") is not None:
        return int(data_cfg.batch_size)
    default = inspect.signature(get_class(data_cfg._target_)).parameters["batch_size"].default
    return int(default)


def _best_score(checkpoint: Path, monitor: str) -> float | None:
    """The monitored value stored in a checkpoint's ModelCheckpoint state (``None`` when absent)."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for key, value in state.get("callbacks", {}).items():
        if "ModelCheckpoint" in str(key) and value.get("best_model_score") is not None:
            return float(value["best_model_score"])
    return None


@dataclass(frozen=True)
class ZeroShotRun:
    """A zero-shot model fitted on one volume and applied to it (:func:`fit_zero_shot`).

    Attributes:
        result: the inference result (SR volume, output grid, fit).
        fit: the fit's record (steps, thickness and profile with their sources, …; empty without a fit).
        seconds: wall time from building the model to the SR volume (s).
    """

    result: Any
    fit: dict[str, Any]
    seconds: float


def fit_zero_shot(
    model_cfg: Any,
    volume: Any,
    axis: int,
    seed: int = 0,
    budget_s: float | None = None,
    max_steps: int | None = None,
    thickness_mm: float | None = None,
) -> ZeroShotRun:
    """Fit a zero-shot model config on ``volume`` and super-resolve it, as ``infer.py`` would.

    Args:
        model_cfg: the ``model`` node of a composed ``infer`` config (e.g. ``smore_prior``).
        volume: the thick-slice input (:class:`mrisr.io.Volume`).
        axis: its through-plane axis.
        seed: seed of the fit and the inference.
        budget_s: wall-time cap of fit + inference (s; ``None``: none).
        max_steps: optimiser steps (``None``: the model's own).
        thickness_mm: slice thickness given to the fit (``None``: resolved as for any input: sidecar, then estimate).
    """
    from mrisr.app.models import build_inference_model
    from mrisr.inference import InferenceSettings, run_on_volume

    start = time.perf_counter()
    options: dict[str, object] = {"max_time_s": budget_s, "progress_bar": False}
    if max_steps:
        options["max_steps"] = max_steps
    if thickness_mm is not None:
        options["thickness_mm"] = thickness_mm
    model = build_inference_model(model_cfg, None, options)
    result = run_on_volume(model, volume, InferenceSettings(axis=axis, seed=seed))
    fit = dict(result.fit.record) if result.fit else {}
    return ZeroShotRun(result, fit, time.perf_counter() - start)


@dataclass
class Invocation:
    """One invocation of an experiment's ``run.py``: what its ``run.json`` entry starts with.

    Create it when the run starts (:meth:`start`); :meth:`header` gives the fields every entry shares at its end.

    Attributes:
        experiment_folder: ``experiments/<paper>``.
        scale: the scale name (``scales/<scale>.yaml``).
        arguments: the command-line arguments of the invocation.
        commit: :func:`git_commit` of the checkout at the start.
        started: ISO start time (UTC, seconds).
        clock: :func:`time.perf_counter` at the start.
    """

    experiment_folder: Path
    scale: str
    arguments: list[str]
    commit: dict[str, object]
    started: str
    clock: float

    @classmethod
    def start(cls, experiment_folder: Path, scale: str, argv: Sequence[str] | None) -> Invocation:
        """Record the start of a run (``argv`` ``None``: the process's own arguments)."""
        import sys
        from datetime import UTC, datetime

        folder = Path(experiment_folder).resolve()
        arguments = list(sys.argv[1:] if argv is None else argv)
        started = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(folder, scale, arguments, git_commit(folder.parents[1]), started, time.perf_counter())

    def header(self) -> dict[str, object]:
        """Commit, start time, wall time so far (s), scale and the command that reruns the invocation."""
        script = f"experiments/{self.experiment_folder.name}/run.py"
        return {
            **self.commit,
            "started": self.started,
            "wall_s": round(time.perf_counter() - self.clock, 1),
            "scale": self.scale,
            "command": " ".join(["python", script, *self.arguments]),
        }


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


def run_parser(description: str, experiment_folder: Path) -> argparse.ArgumentParser:
    """Command line shared by the experiments' ``run.py``: ``--scale`` (``scales/<scale>.yaml``), ``--data``,
    ``--out`` (tidy rows), ``--seed``, ``--qc`` (HTML QC report folder).

    Add experiment-specific options (methods, subjects, budgets) to the returned parser, then call :func:`run_paths`
    on the parsed arguments.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scale", choices=scale_names(experiment_folder), default="smoke", help="scales/<scale>.yaml")
    parser.add_argument("--data", type=Path, default=None, help="data root (default: the config's paths.data)")
    parser.add_argument("--out", type=Path, default=None, help="tidy rows CSV (default results/<scale>/rows.csv)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--qc", type=Path, default=None, help="HTML QC report folder: a page per output scored now")
    return parser


def run_paths(args: argparse.Namespace, experiment_folder: Path) -> argparse.Namespace:
    """Fill the default of ``--out``: ``<experiment>/results/<scale>/rows.csv``."""
    args.out = args.out or experiment_folder / "results" / args.scale / "rows.csv"
    return args


def table_parser(description: str) -> argparse.ArgumentParser:
    """Command line shared by the experiments' ``tables.py``: ``--scale``, ``--csv`` (tidy rows), ``--out`` (folder).

    Add experiment-specific options to the returned parser, then call :func:`table_paths` on the parsed arguments.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scale", default="smoke", help="scale whose results are tabulated (smoke, paper)")
    parser.add_argument("--csv", type=Path, default=None, help="tidy rows (default results/<scale>/rows.csv)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/<scale>)")
    return parser


def table_paths(args: argparse.Namespace, experiment_folder: Path) -> argparse.Namespace:
    """Fill the defaults of ``--out`` (``<experiment>/results/<scale>``) and ``--csv`` (``<out>/rows.csv``)."""
    args.out = args.out or experiment_folder / "results" / args.scale
    args.csv = args.csv or args.out / "rows.csv"
    return args


#: Columns a table script needs in the tidy rows of its ``run.py`` (:mod:`mrisr.io.rows`).
TABLE_COLUMNS = ("subject", "setting", "method", "metric", "value")


def read_run_rows(path: Path, experiment_folder: Path) -> Any:
    """The tidy rows CSV that ``<experiment_folder>/run.py`` wrote, as a DataFrame (checked by :func:`label_rows`).

    Raises:
        MrisrInputError: the file does not exist (the fix names the experiment's ``run.py`` and ``--csv``).
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        run = Path(experiment_folder).resolve()
        raise MrisrInputError(path, "no such rows file", f"run experiments/{run.name}/run.py first or pass --csv")
    return pd.read_csv(path)


def check_table_columns(rows: Any, path: Path | None = None) -> None:
    """Raise :class:`MrisrInputError` naming the :data:`TABLE_COLUMNS` that ``rows`` lacks."""
    missing = [c for c in TABLE_COLUMNS if c not in rows.columns]
    if missing:
        raise MrisrInputError(path, f"columns {missing} are missing", f"a tidy CSV needs {list(TABLE_COLUMNS)}")


def label_rows(rows: Any, label: str, path: Path | None = None) -> Any:
    """Tidy rows with the ``label`` and ``run`` columns of :mod:`mrisr.report`, text keys and numeric values.

    Args:
        rows: DataFrame with at least :data:`TABLE_COLUMNS`.
        label: the experiment's name (e.g. ``dewey2024``), written into ``label`` and ``run``.
        path: the file the rows came from, named in errors.
    """
    import pandas as pd

    check_table_columns(rows, path)
    rows = rows.assign(label=label, run=label, subject=rows["subject"].astype(str), setting=rows["setting"].astype(str))
    rows["value"] = pd.to_numeric(rows["value"], errors="coerce")
    return rows
