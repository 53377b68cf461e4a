"""Export the network of a prior-pretraining checkpoint as a small weights file (the one ``model=smore_prior`` uses).

Usage: ``python -m mrisr.cli.export_prior ckpt=runs/<run>/checkpoints/last.ckpt [output=prior.pt] [dtype=float16]``.

The checkpoint comes from ``python train.py experiment=smore_prior_pretrain``; without ``output=`` the file
replaces the shipped weights inside the package (``smore_prior``, :func:`mrisr.nets.pretrained.shipped_weights`).
Prints the file, its size and the provenance recorded in it as one JSON object on the last line.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mrisr.core.errors import MrisrInputError
from mrisr.nets.pretrained import weights_folder
from mrisr.systems.zero_shot_prior import export_prior
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
        output = weights_folder() / "smore_prior.pt"
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
