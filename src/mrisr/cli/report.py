"""Benchmark tables (Markdown, LaTeX booktabs, CSV) and figures from the tidy CSVs of many runs.

Usage: ``mrisr-report runs=runs/train/multirun_<time> output=report [reference=cubic] [metrics=[psnr,ssim]]``
(also ``mrisr report …`` or ``python -m mrisr.cli.report …``).

Runs are run directories, directories holding runs (searched recursively, e.g. a multirun) or tidy CSVs; the
tables mark the best value per metric and significant differences against ``reference`` (paired t-test per run
and subject). Prints what was written as one JSON object on the last line.
"""

from __future__ import annotations

from mrisr.utils.cli import print_help, run_cli, wants_help


def main(argv: list[str]) -> int:
    """Run the tool on the command line ``argv`` (Hydra-style ``key=value`` overrides); returns the exit status."""
    if wants_help(argv):
        return print_help(__doc__, "report", argv)
    from mrisr.report.cli import main as report_main  # imported on use: the report stack loads pandas/matplotlib

    return int(report_main(argv) or 0)


def run() -> None:
    """Console-script entry point: :func:`main` on ``sys.argv``, exiting with its status."""
    run_cli(main)


if __name__ == "__main__":
    run()
