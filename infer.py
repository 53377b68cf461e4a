"""Super-resolve thick-slice volumes (Hydra application; config conf/infer.yaml).

Usage: ``python infer.py input=LR.nii.gz output=SR.nii.gz model=cubic`` (one volume), or
``python infer.py inputs='data/**/*.nii.gz' output_dir=out/ model=smore`` (many volumes: glob, manifest CSV or BIDS
directory; completed outputs are verified and skipped, failures are isolated and summarised, exit code 1 if any).
Trained models are rebuilt from their checkpoint alone (``ckpt_path=…``). Outputs lie on the isotropic grid (or
``target_spacing_mm``) and overlay their inputs in world coordinates; a JSON sidecar records what was done.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from mrisr.core.atomic import check_output_folder
from mrisr.core.errors import MrisrInputError
from mrisr.runner import build_model, checkpoint_option_overrides, run_batch, super_resolve_file
from mrisr.utils.cli import print_help, run_cli, run_hydra, wants_help
from mrisr.utils.config import check_hydra_overrides

log = logging.getLogger("mrisr.infer")

#: Expected types of the options whose default (``null``) does not tell.
OPTION_TYPES: dict[str, type] = {
    "thickness": float,
    "target_spacing_mm": float,
    "budget.max_time": float,
    "budget.max_steps": int,
}


def infer(cfg: DictConfig) -> int:
    """Run the inference described by ``cfg``; returns the process exit code."""
    if cfg.inputs:
        if cfg.output_dir:
            check_output_folder(Path(cfg.output_dir) / "batch_summary.csv")
        rows = run_batch(cfg)
        return 1 if any(row["status"] == "failed" for row in rows) else 0
    if cfg.input in (None, "???") or cfg.output in (None, "???"):
        raise MrisrInputError(None, "no input given", "pass input=LR.nii.gz output=SR.nii.gz, or inputs=… output_dir=…")
    check_output_folder(cfg.output)
    model, model_name = build_model(cfg)
    super_resolve_file(model, model_name, Path(cfg.input), Path(cfg.output), cfg)
    return 0


def infer_job(cfg: DictConfig) -> int:
    """The Hydra job: checks the overrides, runs :func:`infer`; returns its exit code."""
    check_hydra_overrides(OPTION_TYPES)
    torch.set_flush_denormal(bool(cfg.flush_denormal))
    return infer(cfg)


def main(argv: list[str]) -> int:
    """Run ``infer.py`` on the command line ``argv``; returns the exit status (1 when a batch volume failed)."""
    if wants_help(argv):
        return print_help(__doc__, "infer", argv)
    return int(run_hydra(infer_job, "infer", checkpoint_option_overrides(argv), types=OPTION_TYPES) or 0)


if __name__ == "__main__":
    run_cli(main)
