"""Seams of zero-shot SR on the real thick-slice scans: through-plane detail by phase relative to the input slices.

For every real 2-D acquisition in ``<data>/thick/`` (axial, 5–7.5 mm slices, no ground truth) the input is
super-resolved onto the isotropic grid by cubic B-spline interpolation and by each ``--models`` zero-shot config
fitted on the volume itself within ``--budget-s`` seconds (fit + inference), the thickness resolved as a user's run
would (no thickness in these headers: estimated from the image). :func:`mrisr.eval.seams.seam_profile` bins the
mean foreground through-plane gradient magnitude of each output by its phase relative to the input slice centres;
the seam ratio is its max / min over the bins (1 = the same detail everywhere; docs/evaluation.md "Seams"). An SR
whose ratio exceeds cubic's adds detail locked to the acquisition grid: horizontal bands in a reformat.

Rows (one per input and method; rows already in the CSV are skipped, so an interrupted run resumes):
``results/seams_thick.csv`` with the wall time, optimiser steps, thickness used and its source, the seam ratio and
the per-phase gradient means; ``results/seams_thick.png`` plots gradient vs phase (normalised by each curve's mean).
Time-budgeted fits depend on the machine's load: run them on an otherwise idle machine (``--threads``, default 2),
or bound the fits by optimiser steps (``--max-steps``, with ``--budget-s`` as a cap) for load-independent rows.

Uses the installed package (``make setup``), so no ``PYTHONPATH`` is needed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mrisr.api import super_resolve
from mrisr.core.atomic import write_rows_atomic
from mrisr.eval.seams import seam_profile
from mrisr.experiment.helpers import fit_zero_shot, git_commit
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import as_volume
from mrisr.report.plotting import pyplot, save_and_close
from mrisr.utils.config import compose

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results"
INPUTS = ("t2_axial_7p5mm_ms.nii.gz", "t2s_axial_7p5mm.nii.gz", "t1w_axial_5mm.nii.gz", "mton_axial_5mm.nii.gz")
COLUMNS = (
    "input",
    "method",
    "budget_s",
    "max_steps",
    "wall_s",
    "steps",
    "thickness_mm",
    "thickness_source",
    "separation_mm",
    "seam_ratio",
    "phases",
    "gradient",
    "commit",
)


def _row(name: str, method: str, profile, separation: float, **fields: object) -> dict[str, object]:
    return {
        "input": name,
        "method": method,
        "separation_mm": round(separation, 4),
        "seam_ratio": round(profile.ratio, 4),
        "phases": json.dumps([round(p, 3) for p in profile.phases]),
        "gradient": json.dumps([round(g, 4) for g in profile.gradient]),
        **fields,
    }


def measure(
    name: str, path: Path, models: Sequence[str], budget_s: float, max_steps: int | None, seed: int, done: set
) -> list[dict]:
    """Rows of the methods of one input not yet in ``done`` (cubic first, then each zero-shot model)."""
    lr = as_volume(path)
    geometry = detect_slice_axis(lr)
    separation = float(geometry.separation_mm)
    commit = git_commit(REPO)["commit"]
    rows = []
    if (name, "cubic") not in done:
        start = time.perf_counter()
        cubic = as_volume(super_resolve(lr, model="cubic", axis=geometry.axis))
        wall = time.perf_counter() - start
        rows.append(_row(name, "cubic", seam_profile(cubic, lr), separation, wall_s=round(wall, 1), commit=commit))
    for model in models:
        if (name, model) in done:
            continue
        cfg = compose("infer", [f"model={model}", "input=x", "output=y"])
        run = fit_zero_shot(cfg.model, lr, geometry.axis, seed, budget_s, max_steps)
        result, fit, wall = run.result, run.fit, run.seconds
        rows.append(
            _row(
                name,
                model,
                seam_profile(result.sr, lr),
                separation,
                budget_s=budget_s,
                max_steps=max_steps,
                wall_s=round(wall, 1),
                steps=fit.get("steps"),
                thickness_mm=fit.get("thickness_mm"),
                thickness_source=fit.get("thickness_source"),
                commit=commit,
            )
        )
        print(name, model, f"{wall:.0f} s", f"seam ratio {rows[-1]['seam_ratio']}", flush=True)
    return rows


def plot(frame: pd.DataFrame, out: Path) -> None:
    """Gradient (normalised by its mean) vs phase, one panel per input, one curve per method."""
    names = list(dict.fromkeys(frame["input"]))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for _, row in frame[frame["input"] == name].iterrows():
            phases, gradient = np.array(json.loads(row["phases"])), np.array(json.loads(row["gradient"]))
            ax.plot(
                phases, gradient / np.nanmean(gradient), marker="o", label=f"{row['method']} ({row['seam_ratio']:.2f})"
            )
        ax.set_title(name.replace(".nii.gz", ""), fontsize=9)
        ax.set_xlabel("phase (input slices; 0 = slice centre)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("through-plane gradient / mean")
    save_and_close(fig, out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root (default: the config's paths.data)")
    parser.add_argument("--inputs", nargs="+", default=list(INPUTS))
    parser.add_argument("--models", nargs="*", default=["smore_fast", "smore_prior"], help="zero-shot model configs")
    parser.add_argument("--budget-s", type=float, default=60.0, help="fit + inference per volume (s)")
    parser.add_argument("--max-steps", type=int, default=None, help="optimiser steps per fit (with a budget cap)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "seams_thick.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data or compose("infer", ["input=x", "output=y"]).paths.data)
    frame = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame(columns=list(COLUMNS))
    for name in args.inputs:
        done = set(zip(frame["input"], frame["method"], strict=True))
        rows = measure(name, data / "thick" / name, args.models, args.budget_s, args.max_steps, args.seed, done)
        if rows:
            frame = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)[list(COLUMNS)]
            write_rows_atomic(frame.to_dict("records"), args.out, fields=COLUMNS)
    plot(frame, args.out.with_suffix(".png"))
    print(frame[["input", "method", "steps", "thickness_mm", "seam_ratio"]].to_string(index=False))


if __name__ == "__main__":
    main()
