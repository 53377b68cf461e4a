"""Export the network of a prior-pretraining checkpoint as a small weights file (the one ``model=smore_prior`` uses).

Usage: ``python -m mrisr.cli.export_prior ckpt=runs/<run>/checkpoints/last.ckpt [output=prior.pt] [dtype=float16]``.

The checkpoint comes from ``python train.py experiment=smore_prior_pretrain``; without ``output=`` the file
replaces the shipped weights inside the package (:data:`mrisr.systems.zero_shot_prior.SHIPPED_WEIGHTS`). Prints the
file, its size and the provenance recorded in it as one JSON object on the last line.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from mrisr.core.errors import MrisrInputError
from mrisr.systems.zero_shot_prior import SHIPPED_WEIGHTS, WEIGHTS_PACKAGE, export_prior
from mrisr.utils.cli import print_help, print_json_line, run_cli, wants_help
from mrisr.utils.config import compose

DTYPES = {"float16": torch.float16, "float32": torch.float32}


def main(argv: list[str]) -> int:
    """Run the tool on ``argv`` (``key=value`` overrides of conf/export_prior.yaml); returns the exit status."""
    if wants_help(argv):
        return print_help(__doc__, "export_prior", argv)
    cfg = compose("export_prior", argv)
    if str(cfg.dtype) not in DTYPES:
        raise MrisrInputError(None, f"dtype={cfg.dtype} is not supported", f"pass one of {', '.join(DTYPES)}")
    if cfg.output:
        output = Path(cfg.output)
    else:
        output = Path(str(resources.files(WEIGHTS_PACKAGE).joinpath(SHIPPED_WEIGHTS["smore_prior"])))
    payload = export_prior(cfg.ckpt, output, dtype=DTYPES[str(cfg.dtype)])
    parameters = sum(t.numel() for t in payload["state_dict"].values())
    print_json_line(
        {"output": str(output), "bytes": output.stat().st_size, "parameters": parameters, **payload["provenance"]}
    )
    return 0


def run() -> None:
    """Console-script entry point."""
    run_cli(main)


if __name__ == "__main__":
    run()
