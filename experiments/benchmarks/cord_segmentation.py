"""Built-in cord segmenter against the manual masks of the shared spines: Dice and C2-referenced MUCCA.

For errsm_11/18/21 (1 mm sagittal T2w) the classical segmenter (``segmenter=classical``) is run on the HR volume and
on thick-slice versions simulated at each Dewey et al. setting (3||0 … 3||1, SLR, axis 2, upsampled back by cubic
interpolation; the grid covers the LR field of view, so the mask is brought onto the HR grid through world
coordinates, nearest neighbour, for Dice). Dice against the manual mask and MUCCA (window ``dewey2024_text``
referenced to C2, landmark from ``t2_landmarks_C2_T2_center.nii.gz``) against the manual mask's MUCCA are written
to ``results/cord_segmentation.csv``.

Uses the installed package (``make setup`` installs mrisr editable into ``.venv``), so no ``PYTHONPATH`` is needed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from mrisr.api import simulate, super_resolve
from mrisr.core.atomic import write_atomic
from mrisr.eval.cord import compute_mucca, landmark_point
from mrisr.eval.lesions import dice
from mrisr.io.nifti import as_volume, load_volume
from mrisr.io.regrid import resample_to_reference
from mrisr.segmentation.classical import ClassicalSegmenter

REPO = Path(__file__).resolve().parents[2]

SETTINGS = {"HR": None, "3||0": 3.0, "3||0.3": 3.3, "3||0.5": 3.5, "3||1": 4.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--subjects", nargs="+", default=["errsm_11", "errsm_18", "errsm_21"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cord_segmentation.csv")
    args = parser.parse_args()
    segmenter = ClassicalSegmenter()
    rows = []
    for subject in args.subjects:
        base = args.data / "spine_hr" / subject
        hr = load_volume(base / "t2.nii.gz")
        manual = load_volume(base / "t2_manual_segmentation.nii.gz")
        labels = load_volume(base / "t2_landmarks_C2_T2_center.nii.gz", allow_constant=True)
        c2 = landmark_point(labels.data, labels.affine, 2)
        reference = compute_mucca(manual.data, manual.affine, c2_mm=c2)
        for setting in args.settings:
            image = hr
            if SETTINGS[setting] is not None:
                lr = simulate(hr, thickness_mm=3.0, separation_mm=SETTINGS[setting], axis=2, seed=0)
                image = as_volume(super_resolve(lr, model="cubic"))
            start = time.perf_counter()
            mask = segmenter.segment(image)
            seconds = time.perf_counter() - start
            ours = compute_mucca(mask.data, mask.affine, c2_mm=c2)
            on_hr = mask.data if mask.shape == manual.shape else resample_to_reference(mask, manual, order=0)
            rows.append(
                {
                    "subject": subject,
                    "setting": setting,
                    "input": "HR" if SETTINGS[setting] is None else "LR (cubic to HR grid)",
                    "segmenter": "classical",
                    "dice": dice(on_hr, manual.data),
                    "mucca_mm2": ours.mucca_mm2,
                    "mucca_manual_mm2": reference.mucca_mm2,
                    "mucca_error_pct": 100 * (ours.mucca_mm2 / reference.mucca_mm2 - 1),
                    "status": ours.status,
                    "seconds": round(seconds, 1),
                }
            )
            print(subject, setting, {k: rows[-1][k] for k in ("dice", "mucca_error_pct")}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, lambda handle: pd.DataFrame(rows).to_csv(handle, index=False))


if __name__ == "__main__":
    main()
