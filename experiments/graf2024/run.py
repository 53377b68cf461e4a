"""Graf et al. (MIDL 2024) on the shared spines: axial-from-sagittal simulation, model comparison, degradation ablation.

Split by subject (as ``conf/data/spine.yaml``): the models train on 2-D sagittal crops of ``errsm_20`` and
``errsm_22`` (validation crops of ``errsm_30``), degraded on the fly along the I–S axis (voxel axis 1) by a Graf
Table 2 preset (``conf/degradation/graf_table2_row<N>.yaml``; ``conf/data/spine_diffusion.yaml``); they are tested on
the held-out ``errsm_11``, ``errsm_18`` and ``errsm_21`` (the subjects with a manual cord mask and a C2 landmark),
cropped to A–P voxels 64–319 (:data:`AP_CROP`; the whole neck).

Test inputs (identical for every model and row: the fair-ablation preset ``conf/degradation/graf_eval.yaml``, seeded
per subject): the 1 mm sagittal HR volume is re-acquired as a thick **axial** stack — multi-PSF SLR slices of
4–9 mm (separation = thickness), a centred interslice gap, Gaussian noise — kept on its own thick-slice grid (the
preset's final upsampling is left out, so the models receive a real anisotropic volume). Every method then maps it
onto the isotropic 1 mm grid through :func:`mrisr.api.super_resolve` along axis 1:

* ``cubic``: cubic B-spline (Table 1 row 1 and Table 2 row 1);
* ``rrdbnet``: the RRDBNet generator of ``model=realesrgan_smoke`` at the smoke scale (ESRGAN losses: L1 + perceptual
  + 0.05 GAN), one channel, scale 1, trained on the full stack (row 8), applied like every plane model here: cubic
  onto the 1 mm grid, then the network on the planes that contain the I–S axis
  (:class:`mrisr.systems.supervised.SupervisedSR`);
* ``edsr``: the EDSR of ``model=edsr_plane_smoke`` at the smoke scale (one channel, scale 1, L1 + perceptual), same
  training and inference (each scale file names the nets and their one-channel, scale-1 overrides);
* ``diffusion_row<N>`` (N = 2…8): the conditional diffusion model of ``experiment=palette_smoke`` (``palette_tiny``,
  DDIM-2, sagittal planes: :class:`mrisr.systems.diffusion.DiffusionSR`) trained with the Table 2 row N preset;
  ``diffusion_row8`` is Table 1's diffusion model.

Scores per test subject (no vertebra segmenter is available offline, so the paper's detection rate, Betti errors and
vertebra Dice cannot be measured): PSNR / mean SSIM on the HR grid over the whole volume and inside the field of
view of the thick stack (``psnr_fov``, ``ssim_fov``; docs/evaluation.md §1), and the spinal cord of the classical
segmenter (``mrisr.segmentation.classical``, as experiments/dewey2024): C2-referenced MUCCA (mm², window
``dewey2024_text``), its absolute error against the same segmenter on HR, and the cord Dice against the manual mask.

All scores come from :func:`mrisr.eval.scoring.score_volume` (the one scoring function), with the reference rows of
every subject beside the methods: ``floor_zero`` and ``floor_mean`` (an all-zero output and the input's mean: what a
model that learned nothing scores) and ``ceiling_bandlimit`` (HR band-limited to the thick stack's Nyquist
frequency along the I–S axis). Every trained model is trained by :func:`mrisr.experiment.helpers.train_model` (the one
training path, :func:`mrisr.app.train.train`): an optimiser-step budget, validation passes spread over it, and the
best checkpoint by the model's validation loss; its run folder (checkpoints, ``metrics.json``) is
``results/<scale>/train/<method>/``.

Rows (the tidy schema of :mod:`mrisr.io.rows`: ``subject, setting, method, metric, value, status, backend,
seconds, steps``; setting ``graf_eval``) go to ``results/<scale>/rows.csv``; present (subject, setting, method) results
are skipped, so an interrupted run resumes. ``run.json`` records the commit, the scale, the composed model
configurations, the training records (best checkpoint and its score), the drawn test acquisitions and the wall times.
Scales: ``scales/smoke.yaml`` (tiny nets, 300 optimiser steps each, 32² crops, CPU) and ``scales/paper.yaml``
(``experiment=palette``: 160² crops, batch 32, 195 312 steps, DDIM-20, full RRDBNet / EDSR; a GPU; not run here).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate

from mrisr.api import super_resolve
from mrisr.core.errors import MrisrInputError
from mrisr.data.pairs import crop_volume
from mrisr.degradations.stack import DegradationStack
from mrisr.eval.cord import landmark_point
from mrisr.eval.scoring import cord_reference, reference_volumes, score_volume
from mrisr.experiment.helpers import (
    Invocation,
    append_invocation,
    load_scale,
    run_parser,
    run_paths,
    train_model,
)
from mrisr.experiment.qc import experiment_qc_page
from mrisr.io.nifti import Volume, as_volume, load_volume
from mrisr.io.regrid import field_of_view_mask
from mrisr.io.rows import REFERENCE_METHODS, RowStore, metric_rows
from mrisr.report.qc import write_qc_index
from mrisr.segmentation.classical import ClassicalSegmenter
from mrisr.systems.supervised import SupervisedSR
from mrisr.utils.config import compose

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

TRAIN = ("errsm_20", "errsm_22")
VAL = ("errsm_30",)
TEST = ("errsm_11", "errsm_18", "errsm_21")
AXIS = 1  # I–S voxel axis of the shared PSR spines: an axial acquisition
SETTING = "graf_eval"
LANDMARKS = "t2_landmarks_C2_T2_center.nii.gz"
MANUAL = "t2_manual_segmentation.nii.gz"
#: Voxels kept along the A–P axis (0) of the test volumes: all of the neck (anatomy spans voxels 62–319 in the
#: three test subjects), two thirds of the compute of the full 384-voxel field of view.
AP_CROP = (64, 320)
ROWS = tuple(range(2, 9))
METHODS = ("cubic", "rrdbnet", "edsr", *(f"diffusion_row{n}" for n in ROWS))


def family(method: str) -> str:
    """The scale file's method entry of ``method`` (``diffusion`` for every ``diffusion_row<N>``)."""
    return "diffusion" if method.startswith("diffusion_row") else method


def training_overrides(method: str, scale: dict[str, Any], data: Path) -> list[str]:
    """The ``train`` overrides of a trained method: its scale entry, the row's preset on axis 1, the common ones."""
    row = int(method.removeprefix("diffusion_row")) if method.startswith("diffusion_row") else 8
    return [
        *scale["methods"][family(method)],
        f"degradation=graf_table2_row{row}",
        f"++degradation.axis={AXIS}",
        *scale["common"],
        f"paths.data={data}",
    ]


def test_acquisition(scale_seed: int, index: int) -> tuple[DegradationStack, int]:
    """The ``graf_eval`` stack on axis 1 without its final upsampling (output on the thick-slice grid), and its seed."""
    stack = instantiate(compose("train", ["degradation=graf_eval", f"++degradation.axis={AXIS}"]).degradation)
    if type(stack.steps[-1]).__name__ != "Upsample":
        raise MrisrInputError(None, "graf_eval no longer ends with Upsample", "update experiments/graf2024/run.py")
    return DegradationStack(stack.steps[:-1], axis=AXIS, setting="graf_eval_lr"), scale_seed + index


def inference_model(method: str, system: Any) -> Any:
    """The model ``super_resolve`` applies: the diffusion system itself, or the trained plane net as SupervisedSR."""
    if method.startswith("diffusion_row"):
        return system
    return SupervisedSR(net=system.generator(), method=method).eval()


def subject_inputs(data: Path, subjects: Sequence[str], seed: int) -> dict[str, dict[str, Any]]:
    """Per test subject: HR, the thick axial LR, its field-of-view mask, cord references and the drawn acquisition."""
    out: dict[str, dict[str, Any]] = {}
    segmenter = ClassicalSegmenter()
    for index, subject in enumerate(subjects):
        base = data / "spine_hr" / subject
        hr = crop_volume(as_volume(base / "t2.nii.gz"), 0, *AP_CROP)
        stack, subject_seed = test_acquisition(seed, index)
        lr = stack(hr, seed=subject_seed)
        fov = Volume(data=field_of_view_mask(lr, hr).astype(np.float32), affine=hr.affine)
        labels = load_volume(base / LANDMARKS, allow_constant=True)
        c2 = landmark_point(labels.data, labels.affine, 2)
        manual = crop_volume(load_volume(base / MANUAL), 0, *AP_CROP).data > 0.5
        cord, hr_values = cord_reference(hr, segmenter, c2, manual)
        out[subject] = {"hr": hr, "lr": lr, "fov": fov, "cord": cord, "hr_values": hr_values, "seed": subject_seed,
                        "acquisition": stack.last_record, "lr_shape": list(lr.shape),
                        "lr_zooms": [float(z) for z in lr.zooms]}  # fmt: skip
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = run_parser(__doc__.splitlines()[0], HERE)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--subjects", nargs="+", default=list(TEST), choices=list(TEST))
    parser.add_argument("--max-steps", type=int, default=None, help="optimiser steps per model (default: the scale's)")
    args = run_paths(parser.parse_args(argv), HERE)
    args.scale_spec = load_scale(HERE, args.scale)
    if args.max_steps is not None:
        args.scale_spec["max_steps"] = int(args.max_steps)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    scale = args.scale_spec
    # Barely trained nets drift into denormal floats, which slow CPU arithmetic by an order of magnitude or more
    # (measured: 20 diffusion steps 145 s → 12 s); flushing them to zero changes no result beyond float32 noise.
    torch.set_flush_denormal(True)
    data = Path(args.data or compose("train", []).paths.data)
    missing = [s for s in (*TRAIN, *VAL, *args.subjects) if not (data / "spine_hr" / s / "t2.nii.gz").exists()]
    if missing:
        raise MrisrInputError(data / "spine_hr", f"no t2.nii.gz for {missing}", "point --data at the shared data")
    store = RowStore(args.out)
    invocation = Invocation.start(HERE, args.scale, argv)
    inputs = subject_inputs(data, args.subjects, args.seed)
    done = store.done()
    for subject, x in inputs.items():
        if (subject, SETTING, "HR") not in done:
            store.append(metric_rows(subject, SETTING, "HR", x["hr_values"], backend="mrisr.eval.cord/classical",
                                     seconds=0.0))  # fmt: skip
        references = None
        for method in REFERENCE_METHODS:
            if (subject, SETTING, method) in done:
                continue
            references = references or reference_volumes(x["hr"], x["lr"], AXIS)
            store.append(score_volume(references[method], x["hr"], subject, SETTING, method, fov=x["fov"],
                                      cord=x["cord"], seconds=0.0))  # fmt: skip
    configs: dict[str, Any] = {}
    training: dict[str, dict[str, Any]] = {}
    timings: dict[str, dict[str, float]] = {}
    for method in args.methods:
        todo = [s for s in args.subjects if (s, SETTING, method) not in done]
        if not todo:
            continue
        model: Any = "cubic"
        steps: int | None = None
        if method != "cubic":
            overrides = training_overrides(method, scale, data)
            configs[method] = overrides
            trained = train_model(overrides, args.out.parent / "train" / method, int(scale["max_steps"]), args.seed,
                                  int(scale["validations"]))  # fmt: skip
            training[method] = trained.record
            model, steps = inference_model(method, trained.model), trained.steps
        timings[method] = {}
        for subject in todo:
            x = inputs[subject]
            t0 = time.perf_counter()
            sr = as_volume(super_resolve(x["lr"].to_nifti(), model=model, axis=AXIS, seed=args.seed))
            seconds = time.perf_counter() - t0
            rows = score_volume(sr, x["hr"], subject, SETTING, method, fov=x["fov"], cord=x["cord"], seconds=seconds,
                                steps=steps)  # fmt: skip
            store.append(rows)
            if args.qc:
                acquisition = x["acquisition"]
                profile = next((s["profile"] for s in acquisition["steps"] if "profile" in s), "slr")
                experiment_qc_page(args.qc, x["lr"], sr, rows, AXIS, acquisition.get("thickness_mm"), profile=profile,
                                   cord=x["cord"], extra={"acquisition": acquisition})  # fmt: skip
            timings[method][f"infer_s_{subject}"] = round(seconds, 1)
            shown = {r["metric"]: round(float(r["value"]), 3) for r in rows}
            print(subject, method, f"infer {seconds:.0f} s", shown, flush=True)
    if args.qc:
        write_qc_index(args.qc)
    record_path = args.out.with_name("run.json")
    append_invocation(
        record_path,
        {
            **invocation.header(),
            "split": {"train": list(TRAIN), "val": list(VAL), "test": args.subjects},
            "axis": AXIS,
            "methods": args.methods,
            "seed": args.seed,
            "scale_config": scale,
            "test_acquisitions": {
                s: {k: x[k] for k in ("seed", "lr_shape", "lr_zooms", "acquisition")} for s, x in inputs.items()
            },
            "training_overrides": configs,
            "training": training,
            "timings": timings,
            "segmenter": "mrisr.segmentation.classical.ClassicalSegmenter()",
            "scoring": "mrisr.eval.scoring.score_volume (fov = thick-stack field of view; MUCCA window "
            "dewey2024_text at the C2 landmark on the HR grid)",
            "csv": "rows.csv",
            "qc": str(args.qc) if args.qc else None,
        },
    )
    print(json.dumps({"csv": str(args.out), "rows": len(store.read()), "run_json": str(record_path)}))


if __name__ == "__main__":
    main()
