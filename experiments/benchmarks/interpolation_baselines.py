"""PSNR / mean SSIM of nearest, linear and cubic B-spline interpolation on simulated thick-slice spines.

Dewey et al. (2024) settings T||G = 3||0, 3||0.3, 3||0.5, 3||1 (T = 3 mm, S = 3.0, 3.3, 3.5, 4.0 mm), SLR profile,
variance convention, sagittal slices along axis 2 of the 1 mm HR spines errsm_11/18/21. Metrics on the HR grid with the
intensity rule of docs/evaluation.md §1 (HR 99.5th foreground percentile → 1, clip [0, 1]), whole volume and inside the
manual cord mask.

Run: ``.venv/bin/python experiments/benchmarks/interpolation_baselines.py`` → ``results/interpolation_baselines.csv``
and a plain-text summary table next to it.

Uses the installed package (``make setup`` installs mrisr editable into ``.venv``), so no ``PYTHONPATH`` is needed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from mrisr.api import simulate, super_resolve
from mrisr.eval.image import image_metrics
from mrisr.io.nifti import as_volume

REPO = Path(__file__).resolve().parents[2]

SETTINGS = {"3||0": 3.0, "3||0.3": 3.3, "3||0.5": 3.5, "3||1": 4.0}
SUBJECTS = ("errsm_11", "errsm_18", "errsm_21")
METHODS = ("nearest", "linear", "cubic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "interpolation_baselines.csv")
    args = parser.parse_args()
    rows = []
    for subject in SUBJECTS:
        hr = as_volume(args.data / "spine_hr" / subject / "t2.nii.gz")
        mask = as_volume(args.data / "spine_hr" / subject / "t2_manual_segmentation.nii.gz", allow_constant=True)
        for setting, separation in SETTINGS.items():
            lr = simulate(hr, thickness_mm=3.0, separation_mm=separation, axis=2, profile="slr")
            for method in METHODS:
                start = time.perf_counter()
                sr = super_resolve(lr, model=method, axis=2, target_spacing_mm=1.0)
                seconds = time.perf_counter() - start
                metrics = image_metrics(as_volume(sr), hr, mask=mask)
                for metric in ("psnr", "ssim", "psnr_mask", "ssim_mask"):
                    rows.append(
                        {
                            "subject": subject,
                            "setting": setting,
                            "method": method,
                            "metric": metric,
                            "value": float(metrics[metric]),
                            "resampled": metrics["resampled"],
                            "seconds": seconds,
                        }
                    )
                print(
                    subject,
                    setting,
                    method,
                    f"psnr={metrics['psnr']:.3f} ssim={metrics['ssim']:.4f}",
                    flush=True,
                )
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    summary = (
        table[table.metric.isin(["psnr", "ssim"])]
        .pivot_table(index=["subject", "setting"], columns=["metric", "method"], values="value")
        .round(4)
    )
    args.out.with_suffix(".txt").write_text(summary.to_string() + "\n")
    print(summary.to_string())


if __name__ == "__main__":
    main()
