"""Slice-profile estimation error on simulated thick-slice volumes (mrisr.physics.estimation).

The 1 mm spines (sagittal slices along axis 2; errsm_11/18/21 = development, errsm_20/22/30 = check) and the brain
FLAIR (1 mm) and T1 (0.88 mm), sliced along axis 0 (their axis with the fewest voxels: sagittal), are simulated with
``mrisr.api.simulate`` at thickness T ∈ {2, 3, 4, 5} mm with gap 0 and 1 mm plus 3||0.3 and 3||0.5, slice profiles
gaussian / slr / rect. The estimator sees only the thick-slice volume and its header (separation S) and searches all
three kinds; each row records the estimate with the automatically chosen kind, the estimate assuming slr (the
estimator's default) and the estimate for the true kind.

Run (resumable: finished rows are kept; subset with the flags)::

    PYTHONPATH=$PWD/src nice -n 10 python experiments/benchmarks/profile_estimation.py \
        [--subjects errsm_11 flair] [--profiles slr] [--settings 3||0 3||1] [--slab-compensation]

Outputs ``results/profile_estimation.csv`` (one row per estimate) and ``results/profile_estimation_summary.csv``
(mean |error| per group, profile and setting; also printed).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from mrisr.api import simulate
from mrisr.core.atomic import write_rows_atomic
from mrisr.inference.acquisition import estimate_volume_profile
from mrisr.io.nifti import as_volume

REPO = Path(__file__).resolve().parents[2]

#: subject → (path below the data folder, slice axis, group)
SUBJECTS: dict[str, tuple[str, int, str]] = {
    **{s: (f"spine_hr/{s}/t2.nii.gz", 2, "spine_dev") for s in ("errsm_11", "errsm_18", "errsm_21")},
    **{s: (f"spine_hr/{s}/t2.nii.gz", 2, "spine_check") for s in ("errsm_20", "errsm_22", "errsm_30")},
    "flair": ("brain/flair_1mm_skullstripped.nii.gz", 0, "brain"),
    "t1": ("brain/t1_0p88mm.nii.gz", 0, "brain"),
}
SETTINGS: dict[str, tuple[float, float]] = {
    f"{t:g}||{g:g}": (t, g)
    for t, g in [(2, 0), (3, 0), (4, 0), (5, 0), (2, 1), (3, 1), (4, 1), (5, 1), (3, 0.3), (3, 0.5)]
}
PROFILES = ("gaussian", "slr", "rect")
FIELDS = (
    "subject",
    "group",
    "axis",
    "profile",
    "setting",
    "thickness_mm",
    "gap_mm",
    "separation_mm",
    "slab_compensation",
    "estimated_fwhm_mm",
    "estimated_shape",
    "error_mm",
    "true_kind_fwhm_mm",
    "true_kind_error_mm",
    "slr_fwhm_mm",
    "slr_error_mm",
    "spread_mm",
    "seconds",
)


def summarise(rows: list[dict], path: Path) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table["abs_error_mm"] = table.error_mm.abs()
    table["abs_true_kind_error_mm"] = table.true_kind_error_mm.abs()
    table["abs_slr_error_mm"] = table.slr_error_mm.abs()
    table["kind_correct"] = table.estimated_shape == table.profile
    summary = (
        table.groupby(["slab_compensation", "group", "profile", "setting"], sort=True)
        .agg(
            n=("error_mm", "size"),
            mean_abs_error_mm=("abs_error_mm", "mean"),
            max_abs_error_mm=("abs_error_mm", "max"),
            mean_error_mm=("error_mm", "mean"),
            mean_abs_true_kind_error_mm=("abs_true_kind_error_mm", "mean"),
            max_abs_true_kind_error_mm=("abs_true_kind_error_mm", "max"),
            mean_abs_slr_error_mm=("abs_slr_error_mm", "mean"),
            kind_correct=("kind_correct", "mean"),
            mean_seconds=("seconds", "mean"),
        )
        .round(3)
        .reset_index()
    )
    write_rows_atomic(summary.to_dict("records"), path, fields=list(summary.columns))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "profile_estimation.csv")
    parser.add_argument("--subjects", nargs="+", default=list(SUBJECTS), choices=list(SUBJECTS))
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=PROFILES)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--slab-compensation", action="store_true", help="estimator's slab_compensation option")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the summary from the CSV")
    args = parser.parse_args()

    rows: list[dict] = pd.read_csv(args.out).to_dict("records") if args.out.exists() else []
    done = {(r["subject"], r["profile"], r["setting"], bool(r["slab_compensation"])) for r in rows}
    if not args.summary_only:
        for subject in args.subjects:
            rel, axis, group = SUBJECTS[subject]
            hr = None
            for setting in args.settings:
                thickness, gap = SETTINGS[setting]
                for profile in args.profiles:
                    key = (subject, profile, setting, bool(args.slab_compensation))
                    if key in done:
                        continue
                    hr = as_volume(args.data / rel) if hr is None else hr
                    lr = as_volume(simulate(hr, thickness_mm=thickness, gap_mm=gap, axis=axis, profile=profile))
                    start = time.perf_counter()
                    est = estimate_volume_profile(
                        lr, axis=axis, shapes=("slr", "gaussian", "rect"), slab_compensation=args.slab_compensation
                    )
                    seconds = time.perf_counter() - start
                    true_kind = est.fits[profile].fwhm_mm
                    slr = est.fits["slr"].fwhm_mm
                    rows.append(
                        {
                            "subject": subject,
                            "group": group,
                            "axis": axis,
                            "profile": profile,
                            "setting": setting,
                            "thickness_mm": thickness,
                            "gap_mm": gap,
                            "separation_mm": est.separation_mm,
                            "slab_compensation": bool(args.slab_compensation),
                            "estimated_fwhm_mm": round(est.fwhm_mm, 4),
                            "estimated_shape": est.shape,
                            "error_mm": round(est.fwhm_mm - thickness, 4),
                            "true_kind_fwhm_mm": round(true_kind, 4),
                            "true_kind_error_mm": round(true_kind - thickness, 4),
                            "slr_fwhm_mm": round(slr, 4),
                            "slr_error_mm": round(slr - thickness, 4),
                            "spread_mm": round(est.fwhm_spread_mm, 4),
                            "seconds": round(seconds, 2),
                        }
                    )
                    done.add(key)
                    write_rows_atomic(rows, args.out, fields=FIELDS)
                    print(
                        f"{subject} {profile} {setting}: {est.fwhm_mm:.2f} mm ({est.shape}), error "
                        f"{est.fwhm_mm - thickness:+.2f}, true kind {true_kind - thickness:+.2f}, {seconds:.1f} s",
                        flush=True,
                    )
    if rows:
        summary = summarise(rows, args.out.with_name(args.out.stem + "_summary.csv"))
        with pd.option_context("display.width", 200, "display.max_rows", 500):
            print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
