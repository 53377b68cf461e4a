"""Simulate a thick-slice acquisition from a high-resolution volume.

Usage: ``mrisr-simulate input=HR.nii.gz output=LR.nii.gz thickness=3 gap=1 [axis=2] [profile=slr] [seed=0]``
(also ``mrisr simulate …`` or ``python -m mrisr.cli.simulate …``).

Writes the simulated thick-slice volume with an exact affine (docs/physics.md §1, §3), its BIDS sidecar ``<output
stem>.json`` with ``SliceThickness`` and ``SpacingBetweenSlices`` (as a scanner's converter would, so that ``infer.py``
on the output knows the thickness), and prints one JSON line with the applied parameters. ``notation="3||1"`` (Dewey et
al.) may replace thickness/gap. The input is never modified.

``degradation=<preset>`` applies a preset of ``conf/degradation/`` instead (same seed → identical output, another
seed → another draw); the record of every applied step is printed and written next to the output as
``<output stem>.mrisr.json``. ``montage=preview.png`` writes HR next to ``montage_draws`` random draws.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from mrisr.api import simulate, simulation_axis
from mrisr.core.atomic import check_output_folder, write_json_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.degradations.thick_slice import ThickSlice
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.intensity import foreground_percentile
from mrisr.io.nifti import Volume, as_volume, same_file, save_volume
from mrisr.io.sidecar import write_acquisition_sidecar
from mrisr.physics.forward import parse_dewey_notation
from mrisr.utils.cli import print_help, print_json_line, run_cli, wants_help
from mrisr.utils.config import compose

log = logging.getLogger("mrisr.simulate")


#: Expected types of the options whose default (``null``/``???``) does not tell.
OPTION_TYPES: dict[str, type] = {"thickness": float, "separation": float}


def _sidecar(output: Path) -> Path:
    """``LR.nii.gz`` → ``LR.mrisr.json``."""
    return output.with_name(f"{output.name.removesuffix('.gz').removesuffix('.nii')}.mrisr.json")


def _record_value(record: dict[str, Any], key: str) -> float | None:
    """``key`` of a degradation record, at the top level or in one of its steps; ``None`` when absent or ambiguous."""
    if isinstance(record.get(key), int | float):
        return float(record[key])
    values = {float(step[key]) for step in record.get("steps", []) if isinstance(step, dict) and key in step}
    return values.pop() if len(values) == 1 else None


def _montage(cfg: DictConfig, volume: Volume, degradation: Any, axis: int) -> str | None:
    if cfg.montage is None:
        return None
    from mrisr.degradations.preview import degradation_montage

    seeds = [int(cfg.seed) + k for k in range(max(1, int(cfg.montage_draws)))]
    return str(degradation_montage(volume, degradation, Path(cfg.montage), seeds, axis))


def _apply_preset(cfg: DictConfig, source: Path, target: Path) -> int:
    """``degradation=<preset>``: apply the preset with ``seed``, write the output, its record and the montage."""
    volume = as_volume(source)
    axis = int(cfg.degradation.get("axis", 2)) if cfg.axis == "auto" else int(cfg.axis)
    axis = detect_slice_axis(volume, axis=axis).axis
    degradation = instantiate(cfg.degradation, axis=axis)  # config errors surface as Hydra errors (clean exit)
    if not callable(getattr(degradation, "describe", None)):
        raise MrisrInputError(None, "the degradation config does not build a degradation", "use conf/degradation")
    seed = int(cfg.seed)
    try:
        lr = degradation(volume, seed=seed)
    except ValueError as err:
        raise MrisrInputError(source, str(err), "choose a preset that fits this volume or another axis") from err
    record = dict(getattr(degradation, "last_record", None) or degradation.describe(seed))
    written = save_volume(lr, target, header=volume.header)
    image = lr.to_nifti()
    record.update(
        {
            "input": str(source),
            "output": str(written),
            "shape": list(lr.shape),
            "zooms": [round(float(z), 6) for z in image.header.get_zooms()[:3]],
        }
    )
    write_json_atomic(record, _sidecar(written))
    thickness, separation = _record_value(record, "thickness_mm"), _record_value(record, "separation_mm")
    if thickness is not None and separation is not None:
        record["bids_sidecar"] = str(write_acquisition_sidecar(written, thickness, separation))
    montage = _montage(cfg, volume, degradation, axis)
    print_json_line({**record, "montage": montage} if montage else record)
    return 0


def main(argv: list[str]) -> int:
    """Run the tool on the command line ``argv`` (Hydra-style ``key=value`` overrides); returns the exit status."""
    if wants_help(argv):
        return print_help(__doc__, "simulate", argv)
    cfg = compose("simulate", argv, types=OPTION_TYPES)
    source, target = Path(cfg.input), Path(cfg.output)
    for output in (target, cfg.montage):
        check_output_folder(output)
    if target.exists() and same_file(source, target):
        raise MrisrInputError(
            target, "output is the input file", "choose another output path; inputs are never overwritten"
        )
    if cfg.get("degradation") is not None:
        return _apply_preset(cfg, source, target)
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
    result = {
        "output": str(written),
        "axis": axis,
        "thickness_mm": thickness,
        "separation_mm": separation,
        "gap_mm": separation - thickness,
        "profile": cfg.profile,
        "shape": list(lr.shape),
        "zooms": [round(float(z), 6) for z in image.header.get_zooms()[:3]],
    }
    # The BIDS sidecar carries the thickness like a scanner's would, so `infer.py` on this output finds it.
    result["bids_sidecar"] = str(write_acquisition_sidecar(written, thickness, separation))
    if cfg.montage is not None:
        noise = 0.0
        if float(cfg.noise_std) > 0:
            noise = float(cfg.noise_std) * foreground_percentile(volume.data, source=volume.path)
        model = ThickSlice(
            thickness_mm=thickness,
            separation_mm=separation,
            axis=axis,
            profile=cfg.profile,
            fwhm_convention=cfg.fwhm_convention,
            kernel_file=cfg.kernel_file,
            noise_std=noise,
        )
        result["montage"] = _montage(cfg, volume, model, axis)
    print_json_line(result)
    return 0


def run() -> None:
    """Console-script entry point: :func:`main` on ``sys.argv``, exiting with its status."""
    run_cli(main)


if __name__ == "__main__":
    run()
