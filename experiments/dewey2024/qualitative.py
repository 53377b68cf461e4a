"""Qualitative zero-shot SR of the real thick-slice inputs (no ground truth): axial input, cubic and SR reformats.

For each volume in ``<data>/thick/`` (axial 2-D acquisitions, 5–7.5 mm slices) the zero-shot model of the smoke scale
(``smore_fast``, 200 steps) is fitted on the volume itself and compared with cubic B-spline interpolation on the
same isotropic grid. The slice thickness of these acquisitions is not in their headers, so the fit estimates it
from the image as any run without a sidecar does (the estimate and its source are in the JSON beside the PNG). One
PNG montage (``results/<scale>/qualitative_thick.png``): per input, one axial input slice, then a sagittal reformat
through the image centre of the input (nearest neighbour: the acquired slices), of cubic and of SR.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mrisr.core.atomic import write_json_atomic
from mrisr.experiment.helpers import fit_zero_shot
from mrisr.inference import interpolate_volume
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import as_volume
from mrisr.report.plotting import pyplot, save_and_close
from mrisr.utils.config import compose

HERE = Path(__file__).resolve().parent
INPUTS = ("t2_axial_7p5mm_ms.nii.gz", "t2s_axial_7p5mm.nii.gz", "t1w_axial_5mm.nii.gz", "mton_axial_5mm.nii.gz")


def _display(data: np.ndarray) -> np.ndarray:
    """Intensities scaled to [0, 1] by the 0.5 and 99.5 percentiles (display only)."""
    lo, hi = np.percentile(data, [0.5, 99.5])
    return np.clip((data - lo) / max(hi - lo, 1e-6), 0, 1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["smoke", "paper"], default="smoke")
    parser.add_argument("--inputs", nargs="+", default=list(INPUTS))
    parser.add_argument("--data", type=Path, default=None, help="data root (default: the config's paths.data)")
    parser.add_argument("--model", default="smore_fast")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--budget-s", type=float, default=600.0, help="fit + inference cap per volume (s)")
    parser.add_argument("--out", type=Path, default=None, help="PNG (default results/<scale>/qualitative_thick.png)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = compose("infer", [f"model={args.model}", "input=x", "output=y"])
    data_root = Path(args.data or cfg.paths.data)
    out = args.out or HERE / "results" / args.scale / "qualitative_thick.png"
    plt = pyplot()
    fig, axes = plt.subplots(len(args.inputs), 4, figsize=(11, 2.9 * len(args.inputs)), squeeze=False)
    record = []
    for row, name in enumerate(args.inputs):
        volume = as_volume(data_root / "thick" / name)
        geometry = detect_slice_axis(volume)
        run = fit_zero_shot(cfg.model, volume, geometry.axis, args.seed, args.budget_s, args.max_steps)
        result, fit, seconds = run.result, run.fit, run.seconds
        cubic = interpolate_volume(volume, result.grid, order=3)
        nearest = interpolate_volume(volume, result.grid, order=0)
        axis = geometry.axis
        inplane = [a for a in range(3) if a != axis]
        # Sagittal-type reformat: fix the first in-plane axis at the centre; rows = through-plane, columns = other.
        fixed, other = inplane
        centre = volume.shape[fixed] // 2
        axial = np.take(volume.data, volume.shape[axis] // 2, axis=axis)
        panels = [("axial input slice", axial, volume.zooms[inplane[0]] / volume.zooms[inplane[1]])]
        views = (("input (slices)", nearest), ("cubic", cubic), (f"zero-shot SR ({args.model})", result.sr))
        for label, image in views:
            plane = np.take(image.data, centre, axis=fixed)  # axes (other, axis) in stored order
            plane = plane.T if other < axis else plane
            panels.append((label, plane, result.grid.spacing_mm / volume.zooms[other]))
        for col, (label, plane, aspect) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(_display(plane), cmap="gray", aspect=aspect, origin="lower", interpolation="nearest")
            ax.set_title(f"{name.removesuffix('.nii.gz')}\n{label}" if col == 0 else label, fontsize=8)
            ax.axis("off")
        record.append({"input": name, "shape": list(volume.shape), "zooms_mm": [float(z) for z in volume.zooms],
                       "axis": axis, "steps": fit.get("steps"), "thickness_mm": fit.get("thickness_mm"),
                       "thickness_source": fit.get("thickness_source"), "seconds": round(seconds, 1)})  # fmt: skip
        print(record[-1], flush=True)
    fig.suptitle("Real thick-slice inputs (no ground truth): acquired slices, cubic and zero-shot SR", fontsize=10)
    fig.tight_layout()
    save_and_close(fig, out)
    # Every panel is grey-scale: a single-channel PNG at most 1000 px wide keeps the montage small (< 300 kB).
    with Image.open(out) as image:
        grey = image.convert("L")
    if grey.width > 1000:
        grey = grey.resize((1000, round(grey.height * 1000 / grey.width)), Image.Resampling.LANCZOS)
    grey.save(out, optimize=True)
    write_json_atomic({"inputs": record, "model": args.model, "max_steps": args.max_steps}, out.with_suffix(".json"))
    print(json.dumps({"png": str(out)}))


if __name__ == "__main__":
    main()
