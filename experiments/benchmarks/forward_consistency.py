"""Forward consistency (mrisr.eval.consistency) of SR outputs on the real thick-slice scans, without ground truth.

For every scan in ``thick/`` (segmentations excluded): cubic B-spline SR (``mrisr.api.super_resolve(model="cubic")``)
re-acquired with the input's own physics (slr profile, T = S unless a sidecar or the estimator says otherwise) versus
deliberately wrong outputs — the same SR shifted by one SR voxel and by one input slice along the slice axis (edge
values repeated), and the correct SR re-acquired with twice the thickness — plus, for reference, the re-acquisition
with half the thickness and with the thickness estimated from the image (mrisr.physics.estimation, slr).

Run: ``PYTHONPATH=$PWD/src python experiments/benchmarks/forward_consistency.py`` →
``results/forward_consistency.csv``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from mrisr.api import super_resolve
from mrisr.core.atomic import write_rows_atomic
from mrisr.eval.consistency import forward_consistency
from mrisr.inference.acquisition import estimate_volume_profile, resolve_acquisition
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume, as_volume

REPO = Path(__file__).resolve().parents[2]
FIELDS = (
    "scan",
    "variant",
    "thickness_mm",
    "thickness_source",
    "separation_mm",
    "inplane_spacing_mm",
    "psnr",
    "ssim",
    "median_slice_residual",
    "max_slice_residual",
    "warn",
    "seconds",
)


def shifted(volume: Volume, axis: int, voxels: int) -> Volume:
    """``volume`` moved by ``voxels`` along ``axis`` (content index i → i + voxels), edge slices repeated."""
    n = volume.shape[axis]
    source = np.clip(np.arange(n) - voxels, 0, n - 1)
    return Volume(np.take(volume.data, source, axis=axis), volume.affine, volume.header, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "forward_consistency.csv")
    args = parser.parse_args()
    rows = []
    for path in sorted((args.data / "thick").glob("*.nii.gz")):
        if path.name.endswith("_seg.nii.gz"):
            continue
        lr = as_volume(path)
        geometry = detect_slice_axis(lr)
        resolution = resolve_acquisition(path, lr, geometry, estimate=False)  # sidecar, else the separation
        thickness, source = resolution.thickness_mm, resolution.thickness_source
        sr = as_volume(super_resolve(lr, model="cubic"))
        step = round(geometry.factor)
        estimate = estimate_volume_profile(lr).fwhm_mm
        variants = [
            ("cubic", sr, thickness, source),
            ("cubic_shift_1_sr_voxel", shifted(sr, geometry.axis, 1), thickness, source),
            (f"cubic_shift_1_slice_{step}_voxels", shifted(sr, geometry.axis, step), thickness, source),
            ("cubic_thickness_x2", sr, 2.0 * thickness, "2 x " + source),
            ("cubic_thickness_x0.5", sr, 0.5 * thickness, "0.5 x " + source),
            ("cubic_thickness_estimated", sr, estimate, "estimate"),
        ]
        for name, volume, t, source in variants:
            start = time.perf_counter()
            report = forward_consistency(volume, lr, thickness_mm=t, geometry=geometry, profile="slr")
            rows.append(
                {
                    "scan": path.name.removesuffix(".nii.gz"),
                    "variant": name,
                    "thickness_mm": round(t, 4),
                    "thickness_source": source,
                    "separation_mm": round(geometry.separation_mm, 4),
                    "inplane_spacing_mm": round(geometry.inplane_spacing_mm, 4),
                    "psnr": round(report.psnr, 3),
                    "ssim": round(report.ssim, 4),
                    "median_slice_residual": round(report.median_slice_residual, 4),
                    "max_slice_residual": round(report.max_slice_residual, 4),
                    "warn": report.warn,
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
            print(
                f"{path.name} {name}: T={t:.3g} mm PSNR {report.psnr:.2f} dB SSIM {report.ssim:.4f} "
                f"median residual {report.median_slice_residual:.4f} warn={report.warn}",
                flush=True,
            )
            write_rows_atomic(rows, args.out, fields=FIELDS)


if __name__ == "__main__":
    main()
