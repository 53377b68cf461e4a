"""``python -m mrisr.simulate input=HR.nii.gz output=LR.nii.gz thickness=3 gap=1 [axis=2] [profile=slr] [seed=0]``.

Writes the simulated thick-slice volume with an exact affine (physics.md §1, §3) and prints one JSON line with the
applied parameters. ``notation="3||1"`` (Dewey et al.) may replace thickness/gap. The input is never modified.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mrisr.api import as_volume, simulate, simulation_axis
from mrisr.io.errors import MrisrInputError
from mrisr.io.nifti import Volume, same_file, save_volume
from mrisr.physics.forward import parse_dewey_notation
from mrisr.utils.cli import print_json_line, run_cli
from mrisr.utils.config import compose

log = logging.getLogger("mrisr.simulate")


def main(argv: list[str]) -> int:
    cfg = compose("simulate", argv)
    source, target = Path(cfg.input), Path(cfg.output)
    if target.exists() and same_file(source, target):
        raise MrisrInputError(
            target, "output is the input file", "choose another output path; inputs are never overwritten"
        )
    if cfg.notation is not None:
        try:
            thickness, gap = parse_dewey_notation(str(cfg.notation))
        except ValueError as err:
            raise MrisrInputError(None, f"notation={cfg.notation!r}: {err}", 'write it as "T||G", e.g. "3||1"') from err
    else:
        thickness, gap = float(cfg.thickness), float(cfg.gap)
    separation = float(cfg.separation) if cfg.separation is not None else thickness + gap
    volume = as_volume(source)
    axis = simulation_axis(volume, cfg.axis)
    image = simulate(
        volume,
        thickness_mm=thickness,
        separation_mm=separation,
        axis=axis,
        profile=cfg.profile,
        fwhm_convention=cfg.fwhm_convention,
        kernel_file=cfg.kernel_file,
        noise_std=float(cfg.noise_std),
        seed=int(cfg.seed),
    )
    lr = Volume(
        data=np.asanyarray(image.dataobj, dtype=np.float32),
        affine=image.affine,
        header=image.header,
        path=None,
    )
    written = save_volume(lr, target, header=volume.header)
    print_json_line(
        {
            "output": str(written),
            "axis": axis,
            "thickness_mm": thickness,
            "separation_mm": separation,
            "gap_mm": separation - thickness,
            "profile": cfg.profile,
            "shape": list(lr.shape),
            "zooms": [round(float(z), 6) for z in image.header.get_zooms()[:3]],
        }
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
