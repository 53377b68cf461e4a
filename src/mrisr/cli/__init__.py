"""mrisr's command-line tools, one module each, and the ``mrisr <tool> …`` dispatcher.

Every tool takes Hydra-style ``key=value`` overrides of its config ``conf/<tool>.yaml``, prints its options with
their defaults on ``--help`` and ends a user error in one ``error:`` line (exit status 2). Installed console
scripts: ``mrisr-<tool>`` and ``mrisr``; without installing, ``python -m mrisr.cli.<tool>`` or ``python -m mrisr.cli``.
Training and inference are the Hydra applications ``train.py`` and ``infer.py`` at the root of the checkout.
"""

from __future__ import annotations

import importlib
import sys

from mrisr.core.errors import MrisrInputError
from mrisr.utils.cli import HELP_FLAGS, run_cli

#: Tool name → what it does (shown by ``mrisr --help``; each module's docstring holds the full usage).
TOOLS: dict[str, str] = {
    "simulate": "simulate a thick-slice acquisition from a high-resolution volume",
    "evaluate": "compare a super-resolved volume with its high-resolution reference (PSNR, SSIM, …)",
    "segment": "segment the spinal cord of an image",
    "mucca": "mean upper cervical cord area (MUCCA) of one image",
    "longitudinal": "longitudinal MUCCA atrophy model over the visits of a cohort",
    "report": "benchmark tables and figures from the results of many runs",
    "estimate_profile": "estimate the slice thickness (slice-profile FWHM) of a thick-slice volume from the image",
    "export_prior": "export a prior-pretraining checkpoint as the small weights file of model=smore_prior",
    "export_weights": "ship a trained model with mrisr: its weights file and the model=zoo/<name> config",
}


def usage() -> str:
    """The dispatcher's help text: the tools and how to get each one's options."""
    width = max(map(len, TOOLS))
    lines = [
        "usage: mrisr <tool> [key=value ...]      (or mrisr-<tool> …, python -m mrisr.cli.<tool> …)",
        "",
        "Tools:",
        *(f"  {name:<{width}}  {summary}" for name, summary in TOOLS.items()),
        "",
        "`mrisr <tool> --help` prints a tool's usage and its options with their defaults.",
        "`mrisr --version` prints the version.",
        "Training and inference: `mrisr-train --help` and `mrisr-infer --help` (or `python train.py|infer.py`).",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run ``mrisr <tool> <args>``: the tool's ``main`` on the remaining arguments; returns its exit status."""
    if not argv:
        raise MrisrInputError(None, "no tool given", f"name one, e.g. `mrisr simulate …`: {', '.join(TOOLS)}")
    if argv[0] in HELP_FLAGS:
        print(usage(), flush=True)
        return 0
    if argv[0] in ("--version", "-V"):
        from mrisr.core.version import VERSION

        print(f"mrisr {VERSION}", flush=True)
        return 0
    name, args = argv[0], argv[1:]
    if name not in TOOLS:
        raise MrisrInputError(None, f"unknown tool {name!r}", f"choose one of: {', '.join(TOOLS)} (`mrisr --help`)")
    tool = importlib.import_module(f"mrisr.cli.{name}")
    return int(tool.main(args) or 0)


def run() -> None:
    """Console-script entry point (``mrisr``): :func:`main` on ``sys.argv``, exiting with its status."""
    run_cli(main, sys.argv[1:])
