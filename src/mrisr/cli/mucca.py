"""Mean upper cervical cord area (MUCCA) of one image.

Usage: ``mrisr-mucca image=T2w.nii.gz [seg=SEG.nii.gz] [segmenter=classical] (pmj=PMJ.nii.gz | c2=LAB.nii.gz)``
(also ``mrisr mucca …`` or ``python -m mrisr.cli.mucca …``).

MUCCA (docs/evaluation.md §3): the cord mask is read from ``seg`` or computed by the
configured segmenter on the image's own grid; the landmark (PMJ label value 50, or C2 body centre value 2 for
fields of view that start below the PMJ, §3.2) is converted to a world position and projected onto the mask's
centerline. Prints a summary and, on the last line, one JSON object with ``mucca_mm2``. A window that does not
fit the segmentation fails soft: ``mucca_mm2`` is ``"nan"``, ``status`` is ``"failed"`` with the reason, exit 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from hydra.utils import instantiate

from mrisr.core.atomic import check_output_folder, write_rows_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.eval.cord import WINDOW_PRESETS, compute_mucca, landmark_point
from mrisr.io.nifti import load_volume, save_volume
from mrisr.utils.cli import print_help, print_json_line, run_cli, wants_help
from mrisr.utils.config import compose

log = logging.getLogger("mrisr.mucca")


def load_landmark(path: Path, value: int, what: str) -> np.ndarray:
    """World position (mm) of label ``value`` in the label image ``path``.

    Raises:
        MrisrInputError: Unreadable file or no voxel with that value.
    """
    labels = load_volume(path, dtype=np.float32, allow_constant=True)
    try:
        return landmark_point(labels.data, labels.affine, value)
    except ValueError as err:
        present = sorted({int(v) for v in np.unique(labels.data) if v != 0})[:10]
        raise MrisrInputError(
            path,
            f"no {what} label of value {value} (non-zero values present: {present or 'none'})",
            f"pass the right file, or the label value with {what.lower()}_label=VALUE",
        ) from err


def main(argv: list[str]) -> int:
    """Run the tool on the command line ``argv`` (Hydra-style ``key=value`` overrides); returns the exit status."""
    if wants_help(argv):
        return print_help(__doc__, "mucca", argv)
    cfg = compose("mucca", argv)
    for output in (cfg.perslice_output, cfg.seg_output):
        check_output_folder(output)
    if cfg.window not in WINDOW_PRESETS:
        raise MrisrInputError(None, f"unknown window {cfg.window!r}", f"choose one of {sorted(WINDOW_PRESETS)}")
    if (cfg.pmj is None) == (cfg.c2 is None):
        raise MrisrInputError(
            None, "exactly one landmark is needed", "pass pmj=PMJ_LABEL.nii.gz or c2=C2_LABELS.nii.gz (not both)"
        )
    # The landmark is read before any segmentation, so a wrong landmark file fails at once, not after the segmenter.
    reference = "pmj" if cfg.pmj is not None else "c2"
    point = (
        load_landmark(Path(cfg.pmj), int(cfg.pmj_label), "PMJ")
        if reference == "pmj"
        else load_landmark(Path(cfg.c2), int(cfg.c2_label), "C2")
    )
    backend = "provided"
    if cfg.seg is not None:
        mask = load_volume(Path(cfg.seg), allow_constant=True)
    elif cfg.image is not None:
        image = load_volume(Path(cfg.image))
        segmenter = instantiate(cfg.segmenter)
        backend = str(getattr(segmenter, "name", type(segmenter).__name__))
        mask = segmenter.segment(image)
        if cfg.seg_output:
            save_volume(mask, Path(cfg.seg_output), dtype=np.float32)
    else:
        raise MrisrInputError(None, "no cord mask and no image", "pass seg=SEG.nii.gz or image=T2w.nii.gz")
    if not np.any(mask.data > 0):
        raise MrisrInputError(mask.path, "the cord mask is empty", "check the segmentation")
    result = compute_mucca(
        np.asarray(mask.data, dtype=np.float32),
        mask.affine,
        pmj_mm=point if reference == "pmj" else None,
        c2_mm=point if reference == "c2" else None,
        window=str(cfg.window),
        angle_mode=cfg.angle_mode,
        convention=cfg.convention,
        origin=cfg.origin,
        projection=cfg.projection,
    )
    if cfg.perslice_output:
        selected = set(result.slices)
        rows = [
            {"z": int(z), "distance_mm": float(d), "csa_mm2": float(a), "in_window": int(int(z) in selected)}
            for z, d, a in zip(result.profile_z, result.profile_distance_mm, result.profile_csa_mm2, strict=True)
        ]
        write_rows_atomic(rows, Path(cfg.perslice_output), fields=("z", "distance_mm", "csa_mm2", "in_window"))
    summary = result.as_dict()
    log.info(
        "MUCCA %s (%s window, %s reference, slices %s-%s): %.2f mm²",
        result.status,
        result.window,
        result.reference,
        summary["z_first"],
        summary["z_last"],
        result.mucca_mm2,
    )
    print_json_line({**summary, "backend": backend, "angle_mode": cfg.angle_mode, "convention": cfg.convention})
    return 0 if result.status == "ok" else 1


def run() -> None:
    """Console-script entry point: :func:`main` on ``sys.argv``, exiting with its status."""
    run_cli(main)


if __name__ == "__main__":
    run()
