"""Estimate the slice thickness of a thick-slice volume from the image alone.

Usage: ``mrisr-estimate-profile input=LR.nii.gz [axis=2] [separation_mm=4] [shapes=[slr]] [output=k.npy]`` (also
``mrisr estimate_profile …`` or ``python -m mrisr.cli.estimate_profile …``).

Estimates the slice thickness (FWHM of the slice profile) of a thick-slice volume from the image alone
(:func:`mrisr.inference.acquisition.estimate_volume_profile`), optionally saves the kernel as ``.npy`` (in-plane voxels,
unit sum) and prints the estimate as one JSON object on the last line (``fwhm_mm``, ``shape``, ``kernel``, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrisr.core.atomic import atomic_path
from mrisr.core.errors import MrisrInputError
from mrisr.inference.acquisition import estimate_volume_profile
from mrisr.io.nifti import as_volume
from mrisr.utils.cli import print_help, print_json_line, run_cli, wants_help
from mrisr.utils.config import compose


def main(argv: list[str]) -> int:
    """Run the tool on ``argv`` (``key=value`` overrides of conf/estimate_profile.yaml); returns the exit status."""
    if wants_help(argv):
        return print_help(__doc__, "estimate_profile", argv)
    cfg = compose("estimate_profile", argv)
    source = Path(cfg.input)
    output = Path(cfg.output) if cfg.output else None
    if output is not None and output.suffix != ".npy":
        raise MrisrInputError(output, "the kernel output must be a .npy file", "pass output=NAME.npy")
    volume = as_volume(source)
    axis = cfg.axis if cfg.axis == "auto" else int(cfg.axis)
    estimate = estimate_volume_profile(
        volume,
        axis=axis,
        separation_mm=None if cfg.separation_mm is None else float(cfg.separation_mm),
        shapes=tuple(str(s) for s in cfg.shapes),
        slab_compensation=bool(cfg.slab_compensation),
    )
    if output is not None:
        with atomic_path(output, suffix=".npy") as tmp:
            np.save(tmp, estimate.kernel)
    record = {"input": str(source), **estimate.as_dict(), "kernel_file": str(output) if output else None}
    record.pop("fits")
    record["fits"] = {k: {"fwhm_mm": f.fwhm_mm, "mismatch": f.mismatch} for k, f in estimate.fits.items()}
    print_json_line(record)
    return 0


def run() -> None:
    """Console-script entry point (``mrisr-estimate-profile``)."""
    run_cli(main)


if __name__ == "__main__":
    run()
