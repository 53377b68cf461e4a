"""Segment the spinal cord of an image.

Usage: ``mrisr-segment image=T2w.nii.gz output=seg.nii.gz [segmenter=classical|provided|sct|unet]``
(also ``mrisr segment …`` or ``python -m mrisr.cli.segment …``).

Segments the spinal cord on the image's own grid (docs/evaluation.md §4) and writes the mask atomically with the
image's geometry. Prints one JSON object on the last line: output path, backend, voxel count and volume (mm³),
and the slice range of the mask. The input is never modified.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from hydra.utils import instantiate

from mrisr.core.atomic import check_output_folder
from mrisr.core.errors import MrisrInputError
from mrisr.io.nifti import load_volume, same_file, save_volume
from mrisr.utils.cli import print_help, print_json_line, run_cli, wants_help
from mrisr.utils.config import compose

log = logging.getLogger("mrisr.segment")


def main(argv: list[str]) -> int:
    """Run the tool on the command line ``argv`` (Hydra-style ``key=value`` overrides); returns the exit status."""
    if wants_help(argv):
        return print_help(__doc__, "segment", argv)
    cfg = compose("segment", argv)
    source, target = Path(cfg.image), Path(cfg.output)
    check_output_folder(target)
    if target.exists() and same_file(source, target):
        raise MrisrInputError(target, "output is the input file", "choose another output path")
    image = load_volume(source)
    segmenter = instantiate(cfg.segmenter)
    mask = segmenter.segment(image)
    written = save_volume(mask, target, header=image.header, dtype=np.float32)
    data = np.asarray(mask.data)
    voxel_mm3 = float(abs(np.linalg.det(mask.affine[:3, :3])))
    print_json_line(
        {
            "output": str(written),
            "backend": str(getattr(segmenter, "name", type(segmenter).__name__)),
            "voxels": int(np.count_nonzero(data > 0.5)),
            "volume_mm3": float(data.sum() * voxel_mm3),
            "shape": list(mask.shape),
        }
    )
    return 0


def run() -> None:
    """Console-script entry point: :func:`main` on ``sys.argv``, exiting with its status."""
    run_cli(main)


if __name__ == "__main__":
    run()
