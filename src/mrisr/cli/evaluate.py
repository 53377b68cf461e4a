"""Compare a super-resolved volume with its high-resolution reference.

Usage: ``mrisr-evaluate sr=SR.nii.gz hr=HR.nii.gz [mask=M.nii.gz] [output=metrics.csv]``
(also ``mrisr evaluate …`` or ``python -m mrisr.cli.evaluate …``).

Compares on the HR grid (SR resampled by world coordinates when the grids differ) with the intensity rule of
docs/evaluation.md §1, and prints the metrics as one JSON object on the last line.
"""

from __future__ import annotations

from pathlib import Path

from mrisr.core.atomic import check_output_folder, write_rows_atomic
from mrisr.eval.image import image_metrics
from mrisr.io.nifti import as_volume
from mrisr.utils.cli import print_help, print_json_line, run_cli, wants_help
from mrisr.utils.config import compose


def main(argv: list[str]) -> int:
    """Run the tool on the command line ``argv`` (Hydra-style ``key=value`` overrides); returns the exit status."""
    if wants_help(argv):
        return print_help(__doc__, "evaluate", argv)
    cfg = compose("evaluate", argv)
    check_output_folder(cfg.output)
    sr, hr = as_volume(Path(cfg.sr)), as_volume(Path(cfg.hr))
    mask = as_volume(Path(cfg.mask), allow_constant=True) if cfg.mask else None
    norm_mask = as_volume(Path(cfg.normalization_mask), allow_constant=True) if cfg.normalization_mask else None
    metrics = image_metrics(sr, hr, mask=mask, percentile=float(cfg.percentile), normalization_mask=norm_mask)
    if cfg.output:
        rows = [
            {"sr": str(cfg.sr), "hr": str(cfg.hr), "mask": str(cfg.mask or ""), "metric": key, "value": value}
            for key, value in metrics.items()
            if isinstance(value, float)
        ]
        write_rows_atomic(rows, Path(cfg.output), fields=("sr", "hr", "mask", "metric", "value"))
    print_json_line(metrics)
    return 0


def run() -> None:
    """Console-script entry point: :func:`main` on ``sys.argv``, exiting with its status."""
    run_cli(main)


if __name__ == "__main__":
    run()
