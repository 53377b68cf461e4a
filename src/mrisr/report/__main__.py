"""``python -m mrisr.report runs=… output=…``: the benchmark report command line (:func:`mrisr.report.cli.main`)."""

from __future__ import annotations

from mrisr.report.cli import main
from mrisr.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
