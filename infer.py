"""Super-resolve thick-slice volumes (Hydra; see conf/infer.yaml).

One volume:   ``python infer.py input=LR.nii.gz output=SR.nii.gz model=cubic``
Many volumes: ``python infer.py inputs='data/**/*.nii.gz' output_dir=out/ model=smore`` (glob, manifest CSV or BIDS
directory; completed outputs are verified and skipped, failures are isolated and summarised, exit code 1 if any).
Trained models are rebuilt from their checkpoint alone (``ckpt_path=…``). Outputs lie on the isotropic grid (or
``target_spacing_mm``) and overlay their inputs in world coordinates; a JSON sidecar records what was done.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import mrisr.utils.config  # noqa: F401  (registers the ${repo_root:} resolver before Hydra composes)
from mrisr.io.errors import MrisrInputError
from mrisr.runner import build_model, checkpoint_option_overrides, run_batch, super_resolve_file

log = logging.getLogger("mrisr.infer")


def infer(cfg: DictConfig) -> int:
    """Run the inference described by ``cfg``; returns the process exit code."""
    if cfg.inputs:
        rows = run_batch(cfg)
        return 1 if any(row["status"] == "failed" for row in rows) else 0
    if cfg.input in (None, "???") or cfg.output in (None, "???"):
        raise MrisrInputError(None, "no input given", "pass input=LR.nii.gz output=SR.nii.gz, or inputs=… output_dir=…")
    model, model_name = build_model(cfg)
    super_resolve_file(model, model_name, Path(cfg.input), Path(cfg.output), cfg)
    return 0


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
def main(cfg: DictConfig) -> None:
    try:
        code = infer(cfg)
    except MrisrInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *checkpoint_option_overrides(sys.argv[1:])]
    main()
