"""Dewey et al. (AJNR 2024) on the shared HR spines: thick-slice simulation, cubic LR, zero-shot SR, PSNR/MSSIM, MUCCA.

For every HR spine (1 mm sagittal T2w, ``<data>/spine_hr/<subject>/t2.nii.gz``) and every setting T||G of the paper
(3||0, 3||0.3, 3||0.5, 3||1: thickness T = 3 mm, separation S = 3.0 / 3.3 / 3.5 / 4.0 mm, SLR profile, slices along
axis 2, seed 0; docs/physics.md §1):

* LR: the simulated thick-slice volume interpolated by cubic B-spline onto the isotropic 1 mm grid (same-FOV rule,
  docs/physics.md §3);
* SR: the zero-shot model (``model=smore_fast`` / ``smore`` / ``smore_v4``) fitted on the LR volume itself with the
  slice thickness given (3 mm; the paper estimates the profile with ESPRESO) and the wall-time budget of the scale;
* image metrics of LR and SR against HR on the HR grid (PSNR, mean SSIM; docs/evaluation.md §1);
* for the subjects with a C2 landmark (errsm_11/18/21): C2-referenced MUCCA (window ``dewey2024_text``) of HR, LR
  and SR, all segmented by the same classical segmenter, and of the manual mask (reference).

Every output is scored by :func:`mrisr.eval.scoring.score_volume` (the one scoring function; MUCCA of the mask put
onto the HR grid by nearest neighbour), and every (subject, setting) gets the reference rows ``floor_zero``,
``floor_mean`` (an all-zero output and the LR mean everywhere: what a model that learned nothing scores) and
``ceiling_bandlimit`` (HR band-limited to the setting's slice Nyquist frequency along axis 2), image metrics only.

Rows are written to a tidy CSV (:mod:`mrisr.io.rows`: ``subject, setting, method, metric, value, status,
backend, seconds, steps``); HR and manual rows have setting ``HR``. A (subject, setting, method) already in the CSV
is skipped, so an interrupted run resumes. ``run.json`` beside the CSV records the commit, the configuration and the
wall times of every invocation.

Scales (``scales/<scale>.yaml``): ``smoke`` (``smore_fast``, 200 optimiser steps per volume, at most 600 s for fit +
inference), ``cpu`` (``smore_prior``, the zero-shot fit started from the prior that ships with mrisr, 2,000 steps
per volume, the slice thickness estimated from the image as a user's run would, only the subjects the prior never
saw) and ``paper`` (``smore``, 300 s per volume on CPU; ``--model smore_v4 --budget-s 0`` for the step-limited reference
settings, 26 000 steps, on a GPU). A scale may set ``subjects`` (default: all six) and ``thickness_given`` (default
true: the fit is told T = 3 mm; false: thickness resolved from the image, docs/physics.md §5).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from mrisr.api import simulate, super_resolve
from mrisr.core.atomic import write_json_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.eval.cord import landmark_point
from mrisr.eval.scoring import CordReference, cord_reference, mask_mucca, reference_volumes, score_volume
from mrisr.experiment.helpers import Invocation, fit_zero_shot, host_record, load_scale, run_parser, run_paths
from mrisr.experiment.qc import experiment_qc_page
from mrisr.io.nifti import as_volume, load_volume
from mrisr.io.rows import REFERENCE_METHODS, RowStore, make_row
from mrisr.report.qc import write_qc_index
from mrisr.segmentation.classical import ClassicalSegmenter
from mrisr.utils.config import compose

HERE = Path(__file__).resolve().parent

#: Setting label → slice separation (mm); thickness 3 mm throughout (Dewey et al.: T||G with gap G = S − T).
SETTINGS: dict[str, float] = {"3||0": 3.0, "3||0.3": 3.3, "3||0.5": 3.5, "3||1": 4.0}
THICKNESS_MM = 3.0
AXIS = 2
SUBJECTS = ("errsm_11", "errsm_18", "errsm_21", "errsm_20", "errsm_22", "errsm_30")
LANDMARKS = "t2_landmarks_C2_T2_center.nii.gz"
MANUAL = "t2_manual_segmentation.nii.gz"
SEGMENTER_BACKEND = "mrisr.eval.cord/classical"


def run_subject(
    subject: str, settings: Sequence[str], args: argparse.Namespace, model_cfg: object, done: set[tuple[str, str, str]]
) -> dict[str, dict[str, object]]:
    """All missing rows of one subject (HR and manual MUCCA, then references, LR and SR per setting).

    Returns:
        ``"<subject> <setting>"`` → the SR fit's steps and the thickness and profile it used (with their sources),
        for every SR fitted now.
    """
    fits: dict[str, dict[str, object]] = {}
    base = args.data / "spine_hr" / subject
    hr = as_volume(base / "t2.nii.gz")
    store = RowStore(args.out)
    cord: CordReference | None = None
    if (base / LANDMARKS).exists():
        labels = load_volume(base / LANDMARKS, allow_constant=True)
        c2 = landmark_point(labels.data, labels.affine, 2)
        cord, hr_values = cord_reference(hr, ClassicalSegmenter(), c2)
        if (subject, "HR", "HR") not in done:
            store.append([make_row(subject, "HR", "HR", "mucca_mm2", hr_values["mucca_mm2"], "ok", SEGMENTER_BACKEND,
                                   0.0)])  # fmt: skip
        if (base / MANUAL).exists() and (subject, "HR", "manual") not in done:
            manual = load_volume(base / MANUAL)
            mucca, status = mask_mucca(manual, cord)
            store.append([make_row(subject, "HR", "manual", "mucca_mm2", mucca, status, "manual mask", 0.0)])
    for setting in settings:
        missing = [m for m in ("LR", "SR", *REFERENCE_METHODS) if (subject, setting, m) not in done]
        if not missing:
            continue
        lr = as_volume(simulate(hr, thickness_mm=THICKNESS_MM, separation_mm=SETTINGS[setting], axis=AXIS,
                                seed=args.seed))  # fmt: skip
        references = reference_volumes(hr, lr, AXIS) if set(missing) & set(REFERENCE_METHODS) else {}
        for method in (m for m in REFERENCE_METHODS if m in missing):
            store.append(score_volume(references[method], hr, subject, setting, method, seconds=0.0))
        if "LR" in missing:
            start = time.perf_counter()
            cubic = as_volume(super_resolve(lr, model="cubic", axis=AXIS))
            seconds = time.perf_counter() - start
            rows = score_volume(cubic, hr, subject, setting, "LR", cord=cord, seconds=seconds)
            store.append(rows)
            if args.qc:
                experiment_qc_page(args.qc, lr, cubic, rows, AXIS, THICKNESS_MM, cord=cord)
            print(subject, setting, "LR", {r["metric"]: round(float(r["value"]), 4) for r in rows}, flush=True)
        if "SR" in missing:
            thickness = THICKNESS_MM if args.thickness_given else None  # else estimated, as in a user's run
            run = fit_zero_shot(model_cfg, lr, AXIS, args.seed, args.budget_s, args.max_steps, thickness)
            sr, fit, seconds = run.result.sr, run.fit, run.seconds
            steps = int(fit["steps"]) if "steps" in fit else None
            rows = score_volume(sr, hr, subject, setting, "SR", cord=cord, seconds=seconds, steps=steps)
            store.append(rows)
            if args.qc:
                experiment_qc_page(args.qc, lr, sr, rows, AXIS, THICKNESS_MM, cord=cord, extra={"fit": fit})
            print(subject, setting, "SR", f"{seconds:.0f} s, {steps} steps",
                  {r["metric"]: round(float(r["value"]), 4) for r in rows}, flush=True)  # fmt: skip
            keys = ("steps", "thickness_mm", "thickness_source", "thickness_detail", "profile", "profile_source")
            fits[f"{subject} {setting}"] = {k: fit[k] for k in keys if k in fit}
    return fits


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = run_parser(__doc__.splitlines()[0], HERE)
    parser.add_argument("--subjects", nargs="+", default=None, help="default: the scale's (all six if it names none)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--model", default=None, help="zero-shot model config (default: the scale's)")
    parser.add_argument("--budget-s", type=float, default=None, help="fit + inference cap per volume (s; 0: none)")
    parser.add_argument("--max-steps", type=int, default=None, help="optimiser steps per volume (0: the model's)")
    args = run_paths(parser.parse_args(argv), HERE)
    scale = load_scale(HERE, args.scale)
    args.model = args.model or str(scale["model"])
    args.subjects = args.subjects or list(scale.get("subjects", SUBJECTS))
    args.thickness_given = bool(scale.get("thickness_given", True))
    budget = float(scale["budget_s"]) if args.budget_s is None else args.budget_s
    args.budget_s = None if budget <= 0 else budget
    steps = scale["max_steps"] if args.max_steps is None else args.max_steps
    args.max_steps = int(steps) if steps else None
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = compose("infer", [f"model={args.model}", "input=x", "output=y"])
    args.data = Path(args.data or cfg.paths.data)
    unknown = [s for s in args.subjects if not (args.data / "spine_hr" / s / "t2.nii.gz").exists()]
    if unknown:
        raise MrisrInputError(args.data / "spine_hr", f"no t2.nii.gz for {unknown}", f"choose among {list(SUBJECTS)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = RowStore(args.out).done()
    invocation = Invocation.start(HERE, args.scale, argv)
    fits: dict[str, dict[str, object]] = {}
    for subject in args.subjects:
        fits.update(run_subject(subject, args.settings, args, cfg.model, done))
    if args.qc:
        write_qc_index(args.qc)
    record_path = args.out.with_name("run.json")
    record = json.loads(record_path.read_text()) if record_path.exists() else {"invocations": []}
    rows = RowStore(args.out).read()
    sr = rows[(rows["method"] == "SR") & (rows["metric"] == "psnr")]
    host = host_record()
    record["invocations"].append(
        {
            **invocation.header(),
            "subjects": args.subjects,
            "settings": args.settings,
            "thickness_mm": THICKNESS_MM,
            "separation_mm": {s: SETTINGS[s] for s in args.settings},
            "axis": AXIS,
            "profile": "slr",
            "seed": args.seed,
            "model": args.model,
            "thickness_given": args.thickness_given,
            "budget_s": args.budget_s,
            "max_steps": args.max_steps,
            "model_config": OmegaConf.to_container(cfg.model, resolve=True),
            "segmenter": "mrisr.segmentation.classical.ClassicalSegmenter()",
            "scoring": "mrisr.eval.scoring.score_volume (MUCCA window dewey2024_text at the C2 landmark, mask on the "
            "HR grid)",
            "csv": os.path.relpath(args.out, record_path.parent),
            "qc": str(args.qc) if args.qc else None,
            "host": host,
            "fits": fits,
        }
    )
    record["sr_seconds_total"] = round(float(sr["seconds"].sum()), 1)
    record["sr_steps_mean"] = float(sr["steps"].mean()) if len(sr) else None
    write_json_atomic(record, record_path)
    print(json.dumps({"csv": str(args.out), "rows": len(rows), "run_json": str(record_path)}))


if __name__ == "__main__":
    main()
