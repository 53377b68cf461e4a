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
* ``rrdbnet``: the RRDBNet generator of ``model=realesrgan_smoke`` (ESRGAN losses: L1 + perceptual + 0.05 GAN), one
  channel, scale 1, trained on the full stack (row 8), applied like every plane model here: cubic onto the 1 mm
  grid, then the network on the planes that contain the I–S axis (:class:`mrisr.systems.supervised.SupervisedSR`);
* ``edsr``: the EDSR of ``model=edsr_smoke`` (one channel, scale 1, L1 + perceptual), same training and inference;
* ``diffusion_row<N>`` (N = 2…8): the conditional diffusion model of ``experiment=palette_smoke`` (``palette_tiny``,
  DDIM-2, sagittal planes: :class:`mrisr.systems.diffusion.DiffusionSR`) trained with the Table 2 row N preset;
  ``diffusion_row8`` is Table 1's diffusion model.

Scores per test subject (no vertebra segmenter is available offline, so the paper's detection rate, Betti errors and
vertebra Dice cannot be measured): PSNR / mean SSIM on the HR grid over the whole volume and inside the field of
view of the thick stack (``psnr_fov``, ``ssim_fov``; docs/evaluation.md §1), and the spinal cord of the classical
segmenter (``mrisr.segmentation.classical``, as experiments/dewey2024): C2-referenced MUCCA (mm², window
``dewey2024_text``), its absolute error against the same segmenter on HR, and the cord Dice against the manual mask.

Rows (``subject, method, metric, value, seconds, steps, status``) go to ``results/<scale>/rows.csv``; present
(subject, method) pairs are skipped, so an interrupted run resumes. ``run.json`` records the commit, the composed
configurations, the drawn test acquisitions and the wall times. Scales: ``smoke`` (tiny nets, 300 optimiser steps
each, 32² crops, CPU) and ``paper`` (``experiment=palette``: 160² crops, batch 32, 195 312 steps, DDIM-20, full
RRDBNet / EDSR; a GPU; not run here).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mrisr.api import super_resolve
from mrisr.core.atomic import write_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.data.pairs import crop_volume
from mrisr.degradations.stack import DegradationStack
from mrisr.eval.cord import compute_mucca, landmark_point
from mrisr.eval.image import image_metrics
from mrisr.eval.lesions import dice
from mrisr.io.nifti import Volume, as_volume, load_volume
from mrisr.io.regrid import field_of_view_mask, on_grid
from mrisr.segmentation.classical import ClassicalSegmenter
from mrisr.systems.supervised import SupervisedSR
from mrisr.utils.config import compose
from mrisr.utils.experiments import append_invocation, fit_system, git_commit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

TRAIN = ("errsm_20", "errsm_22")
VAL = ("errsm_30",)
TEST = ("errsm_11", "errsm_18", "errsm_21")
AXIS = 1  # I–S voxel axis of the shared PSR spines: an axial acquisition
LANDMARKS = "t2_landmarks_C2_T2_center.nii.gz"
MANUAL = "t2_manual_segmentation.nii.gz"
#: Voxels kept along the A–P axis (0) of the test volumes: all of the neck (anatomy spans voxels 62–319 in the
#: three test subjects), two thirds of the compute of the full 384-voxel field of view.
AP_CROP = (64, 320)
ROWS = tuple(range(2, 9))
METHODS = ("cubic", "rrdbnet", "edsr", *(f"diffusion_row{n}" for n in ROWS))
COLUMNS = ["subject", "method", "metric", "value", "seconds", "steps", "status"]

#: 1-channel, scale-1 plane networks (the PRETTIER nets at their smoke sizes refine cubic-interpolated planes).
PLANE_NET_OVERRIDES = {
    "rrdbnet": ["++model.net.num_in_ch=1", "++model.net.num_out_ch=1", "++model.net.scale=1",
                "++model.discriminator.num_in_ch=1"],
    "edsr": ["model.net.in_channels=1", "model.net.out_channels=1", "model.net.upscale=1", "model.net_range=1.0"],
}  # fmt: skip

#: Per scale: configs of each model family and the optimiser-step budget. Smoke: the CPU sizes of
#: ``experiment=palette_smoke`` (32² crops, batch 8, DDIM-2) with a longer step budget; paper: ``experiment=palette``.
SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "max_steps": 300,
        "diffusion": ["experiment=palette_smoke", "model.ema_decay=0.95"],
        "rrdbnet": ["data=spine_diffusion", "model=realesrgan_smoke"],
        "edsr": ["data=spine_diffusion", "model=edsr_smoke"],
        "data": ["data.patch_size=32", "data.batch_size=8", "++data.val_patches=8"],
        "accelerator": "cpu",
        "trainer": {},
    },
    "paper": {
        "max_steps": 195312,
        "diffusion": ["experiment=palette"],
        "rrdbnet": ["data=spine_diffusion", "model=realesrgan", "++data.num_workers=8"],
        "edsr": ["data=spine_diffusion", "model=edsr", "++data.num_workers=8"],
        "data": [],
        "accelerator": "gpu",
        # experiment=palette's trainer settings (manual-optimisation RRDBNet cannot take gradient_clip_val).
        "trainer": {"diffusion": {"precision": "bf16-mixed", "gradient_clip_val": 1.0}},
    },
}


def read_rows(path: Path) -> pd.DataFrame:
    """The tidy rows written so far (empty frame when the file does not exist yet)."""
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=COLUMNS)


def append_rows(path: Path, rows: Sequence[dict[str, object]]) -> None:
    """Append ``rows`` to the CSV atomically (the whole file is rewritten)."""
    frame = pd.concat([read_rows(path), pd.DataFrame(rows, columns=COLUMNS)], ignore_index=True)
    write_atomic(path, lambda handle: frame.to_csv(handle, index=False))


def training_config(method: str, scale: str, seed: int, data: Path) -> Any:
    """The composed ``train`` config of a trained method (its preset, model and the scale's data sizes)."""
    spec = SCALES[scale]
    row = int(method.removeprefix("diffusion_row")) if method.startswith("diffusion_row") else 8
    family = "diffusion" if method.startswith("diffusion_row") else method
    steps = int(spec["max_steps"])
    overrides = [
        *spec[family],
        f"degradation=graf_table2_row{row}",
        f"++degradation.axis={AXIS}",
        *spec["data"],
        f"paths.data={data}",
        f"seed={seed}",
        *PLANE_NET_OVERRIDES.get(family, []),
    ]
    cfg = compose("train", overrides)
    # One epoch holds the whole step budget, so validation runs once, at the end.
    cfg.data.patches_per_epoch = steps * int(cfg.data.batch_size) * (2 if family == "rrdbnet" else 1)
    return cfg


def trainer_options(method: str, scale: str) -> dict[str, Any]:
    """Lightning Trainer arguments of a method's family at ``scale`` (none at the smoke scale)."""
    family = "diffusion" if method.startswith("diffusion_row") else method
    return dict(SCALES[scale]["trainer"].get(family, {}))


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


def score_rows(
    subject: str, method: str, sr: Volume, hr: Volume, fov: Volume, seconds: float, steps: int | None,
    cord: dict[str, Any],
) -> list[dict[str, object]]:  # fmt: skip
    """Image metrics on the HR grid (whole volume and thick-stack field of view) and cord metrics of one output."""
    metrics = image_metrics(sr, hr, mask=fov)
    values = {"psnr": metrics["psnr"], "ssim": metrics["ssim"], "psnr_fov": metrics["psnr_mask"],
              "ssim_fov": metrics["ssim_mask"]}  # fmt: skip
    rows = [{"subject": subject, "method": method, "metric": k, "value": float(v), "seconds": round(seconds, 2),
             "steps": steps, "status": "ok"} for k, v in values.items()]  # fmt: skip
    start = time.perf_counter()
    try:
        mask = cord["segmenter"].segment(sr)
    except (MrisrInputError, ValueError) as err:
        # No cord found: MUCCA is missing and the cord counts as missed (Dice 0), as a missed vertebra counts as an
        # error in Graf et al.
        failed = {"seconds": round(seconds, 2), "steps": steps, "status": f"segmentation failed: {err}"}
        missed = (("mucca_mm2", np.nan), ("mucca_abs_err_mm2", np.nan), ("cord_dice_manual", 0.0))
        return [*rows, *({"subject": subject, "method": method, "metric": k, "value": v, **failed} for k, v in missed)]
    mask_hr = Volume(data=on_grid(mask, hr, order=0).astype(np.float32), affine=hr.affine)
    result = compute_mucca(mask_hr.data, hr.affine, c2_mm=cord["c2"])
    status = result.status if result.status == "ok" else f"{result.status}: {result.reason}"
    extra = {
        "mucca_mm2": result.mucca_mm2,
        "mucca_abs_err_mm2": abs(result.mucca_mm2 - cord["hr_mucca"]) if cord.get("hr_mucca") is not None else np.nan,
        "cord_dice_manual": dice(mask_hr.data, cord["manual"]) if cord.get("manual") is not None else np.nan,
    }
    seg_s = round(time.perf_counter() - start, 2)
    rows += [{"subject": subject, "method": method, "metric": k, "value": float(v), "seconds": seg_s,
              "steps": steps, "status": status} for k, v in extra.items()]  # fmt: skip
    return rows


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
        hr_mask = segmenter.segment(hr)
        hr_mucca = compute_mucca(hr_mask.data, hr_mask.affine, c2_mm=c2).mucca_mm2
        cord = {"segmenter": segmenter, "c2": c2, "manual": manual, "hr_mucca": hr_mucca,
                "hr_dice_manual": dice(hr_mask.data, manual)}  # fmt: skip
        out[subject] = {"hr": hr, "lr": lr, "fov": fov, "cord": cord, "seed": subject_seed,
                        "acquisition": stack.last_record, "lr_shape": list(lr.shape),
                        "lr_zooms": [float(z) for z in lr.zooms]}  # fmt: skip
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--subjects", nargs="+", default=list(TEST), choices=list(TEST))
    parser.add_argument("--max-steps", type=int, default=None, help="optimiser steps per model (default: the scale's)")
    parser.add_argument("--data", type=Path, default=None, help="data root (default: the config's paths.data)")
    parser.add_argument("--out", type=Path, default=None, help="rows CSV (default results/<scale>/rows.csv)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out = args.out or HERE / "results" / args.scale / "rows.csv"
    if args.max_steps is not None:
        SCALES[args.scale]["max_steps"] = int(args.max_steps)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # Barely trained nets drift into denormal floats, which slow CPU arithmetic by an order of magnitude or more
    # (measured: 20 diffusion steps 145 s → 12 s); flushing them to zero changes no result beyond float32 noise.
    torch.set_flush_denormal(True)
    data = Path(args.data or compose("train", []).paths.data)
    missing = [s for s in (*TRAIN, *VAL, *args.subjects) if not (data / "spine_hr" / s / "t2.nii.gz").exists()]
    if missing:
        raise MrisrInputError(data / "spine_hr", f"no t2.nii.gz for {missing}", "point --data at the shared data")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started, start, commit = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter(), git_commit(REPO)
    inputs = subject_inputs(data, args.subjects, args.seed)
    done = {(r.subject, r.method) for r in read_rows(args.out).itertuples()}
    hr_rows = [
        {"subject": s, "method": "HR", "metric": m, "value": float(v), "seconds": 0.0, "steps": None, "status": "ok"}
        for s, x in inputs.items()
        if (s, "HR") not in done
        for m, v in (("mucca_mm2", x["cord"]["hr_mucca"]), ("cord_dice_manual", x["cord"]["hr_dice_manual"]))
    ]
    if hr_rows:
        append_rows(args.out, hr_rows)
    configs: dict[str, Any] = {}
    timings: dict[str, dict[str, float | int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            todo = [s for s in args.subjects if (s, method) not in done]
            if not todo:
                continue
            model: Any = "cubic"
            steps, train_s = None, 0.0
            if method != "cubic":
                cfg = training_config(method, args.scale, args.seed, data)
                configs[method] = OmegaConf.to_container(cfg.model, resolve=True)
                system, train_s, steps = fit_system(cfg, args.seed, Path(tmp) / method,
                                                    max_steps=int(SCALES[args.scale]["max_steps"]),
                                                    accelerator=SCALES[args.scale]["accelerator"],
                                                    trainer_options=trainer_options(method, args.scale))  # fmt: skip
                model = inference_model(method, system)
            timings[method] = {"train_s": round(train_s, 1), "steps": steps if steps is not None else 0}
            for subject in todo:
                x = inputs[subject]
                t0 = time.perf_counter()
                sr = as_volume(super_resolve(x["lr"].to_nifti(), model=model, axis=AXIS, seed=args.seed))
                seconds = time.perf_counter() - t0
                rows = score_rows(subject, method, sr, x["hr"], x["fov"], seconds, steps, x["cord"])
                append_rows(args.out, rows)
                timings[method][f"infer_s_{subject}"] = round(seconds, 1)
                shown = {r["metric"]: round(float(r["value"]), 3) for r in rows}
                print(subject, method, f"train {train_s:.0f} s, infer {seconds:.0f} s", shown, flush=True)
    record_path = args.out.with_name("run.json")
    append_invocation(
        record_path,
        {
            **commit,
            "started": started,
            "wall_s": round(time.perf_counter() - start, 1),
            "scale": args.scale,
            "command": " ".join(["python", "experiments/graf2024/run.py", *(sys.argv[1:] if argv is None else argv)]),
            "split": {"train": list(TRAIN), "val": list(VAL), "test": args.subjects},
            "axis": AXIS,
            "methods": args.methods,
            "max_steps": SCALES[args.scale]["max_steps"],
            "seed": args.seed,
            "scale_config": SCALES[args.scale],
            "test_acquisitions": {
                s: {k: x[k] for k in ("seed", "lr_shape", "lr_zooms", "acquisition")} for s, x in inputs.items()
            },
            "model_configs": configs,
            "timings": timings,
            "segmenter": "mrisr.segmentation.classical.ClassicalSegmenter()",
            "mucca": "compute_mucca(window='dewey2024_text', c2_mm=C2 landmark) on the HR grid",
            "csv": "rows.csv",
        },
    )
    print(json.dumps({"csv": str(args.out), "rows": len(read_rows(args.out)), "run_json": str(record_path)}))


if __name__ == "__main__":
    main()
