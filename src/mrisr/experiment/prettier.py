"""Leave-one-volume-out PRETTIER experiment on the shared brain volumes (Giraldo et al. 2024, Front. Neurosci.).

Shared by ``experiments/giraldo2024/run.py`` (the paper reproduction, scale files) and
``experiments/benchmarks/prettier_brain.py`` (the benchmark command line). Volumes (``<data>/brain``):
``flair_1mm_skullstripped.nii.gz`` (1 mm isotropic) and ``t1_0p88mm.nii.gz`` (0.88 mm, resampled onto a 1 mm
isotropic grid with an exact affine by cubic B-spline, :func:`mrisr.io.regrid.resample_isotropic`, because the
PRETTIER pairs need separation / spacing to be an integer). The held-out HR volume, cropped to a multiple of 6 voxels
along the degraded axis, is re-acquired by the ``prettier`` preset (5 mm SLR slices every 6 mm, LR grid), then

* ``cubic``: cubic B-spline interpolation;
* ``smore_fast``: the zero-shot model fitted on the LR volume itself (thickness 5 mm given), an optimiser-step
  budget and a wall-time cap;
* each trained method (EDSR, RealESRGAN): trained by :func:`mrisr.experiment.helpers.train_model` (the one training
  path) with its experiment config on the *other* brain volume(s) + the MNI152 template (validation: an MNI152
  slab), best checkpoint by the model's validation metric, applied to the held-out LR volume.

Each output and the reference rows (``floor_zero``, ``floor_mean``, ``ceiling_bandlimit``) are scored by
:func:`mrisr.eval.scoring.score_volume` inside the brain mask (:func:`mrisr.eval.prettier.brain_mask`: FLAIR voxels
> 0; T1 a head mask), intensities divided by the HR P99.5 inside it: ``psnr_mask`` / ``ssim_mask`` (Table 3) and the
piq patch metrics over the HR slices along the degraded axis (``patch_*``, Table 2). Rows of the tidy schema go to a
:class:`~mrisr.io.rows.RowStore` (subject = held-out volume); present results are skipped (resume).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mrisr.io.nifti import Volume

__all__ = ["VOLUMES", "held_out_input", "load_hr", "method_label", "run_held_out", "zero_shot"]

#: Volume name → (file under ``<data>/brain``, brain-mask rule).
VOLUMES: dict[str, tuple[str, str]] = {
    "flair": ("flair_1mm_skullstripped.nii.gz", "nonzero"),
    "t1": ("t1_0p88mm.nii.gz", "head"),
}
#: Through-plane thickness of the ``prettier`` preset (mm), given to the zero-shot model.
THICKNESS_MM = 5.0


def load_hr(data: Path, name: str) -> Volume:
    """The HR volume on a 1 mm isotropic grid (cubic B-spline resampling when its spacing differs)."""
    from mrisr.io.nifti import load_volume
    from mrisr.io.regrid import resample_isotropic

    return resample_isotropic(load_volume(Path(data) / "brain" / VOLUMES[name][0]), 1.0)


def held_out_input(hr: Volume, name: str, axis: int, seed: int) -> tuple[Volume, Volume, Volume]:
    """(HR cropped to a multiple of 6 voxels along ``axis``, its ``prettier`` LR, the brain mask on the HR grid)."""
    import numpy as np
    from hydra.utils import instantiate

    from mrisr.data.pairs import crop_volume
    from mrisr.eval.prettier import brain_mask
    from mrisr.utils.config import compose

    hr = crop_volume(hr, axis, 0, (hr.shape[axis] // 6) * 6)
    degradation = instantiate(compose("train", ["degradation=prettier"]).degradation).with_axis(axis)
    mask = Volume(data=brain_mask(hr.data, VOLUMES[name][1]).astype(np.float32), affine=hr.affine)
    return hr, degradation(hr, seed=seed), mask


def zero_shot(lr: Volume, axis: int, model: str, max_steps: int | None, cap_s: float | None, seed: int) -> Any:
    """The zero-shot ``model`` fitted on ``lr`` (thickness 5 mm given) and applied: an :class:`InferenceResult`."""
    from mrisr.app.models import build_inference_model
    from mrisr.inference import InferenceSettings, run_on_volume
    from mrisr.utils.config import compose

    options: dict[str, Any] = {"max_time_s": cap_s, "thickness_mm": THICKNESS_MM, "progress_bar": False}
    if max_steps is not None:
        options["max_steps"] = int(max_steps)
    resolver = build_inference_model(compose("infer", [f"model={model}"]).model, None, options)
    return run_on_volume(resolver, lr, InferenceSettings(axis=axis, seed=seed))


def method_label(overrides: Sequence[str], method: str) -> str:
    """The row label of a trained method: the model config it names (``model=edsr_smoke`` → ``edsr_smoke``)."""
    names = [o.split("=", 1)[1] for o in overrides if o.startswith("model=")]
    return names[-1] if names else method


def run_held_out(
    data: Path,
    held_out: Sequence[str],
    methods: Sequence[str],
    out: Path,
    trained: Mapping[str, Sequence[str]],
    common: Sequence[str] = (),
    max_steps: int = 150,
    validations: int = 1,
    zero_shot_model: str = "smore_fast",
    zero_shot_cap_s: float | None = None,
    setting: str = "prettier",
    axis: int = 2,
    seed: int = 0,
    train_root: Path | None = None,
    qc: Path | None = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Every missing result of the held-out volumes into the row store ``out`` (module docstring); all rows.

    Args:
        data: data root (``<data>/brain``).
        held_out: volumes held out in turn (keys of :data:`VOLUMES`).
        methods: ``cubic``, ``smore_fast``, shipped models ``zoo/<name>`` (applied as they are) and keys of ``trained``.
        out: the tidy rows CSV.
        trained: trained method → its ``train`` overrides (experiment and model configs).
        common: overrides of every trained method (data sizes, trainer settings).
        max_steps: optimiser steps of every trained or fitted model.
        validations: validation passes over the budget (best checkpoint among them).
        zero_shot_model: model config of ``smore_fast``; ``zero_shot_cap_s``: its wall-time cap (s).
        setting: the ``setting`` of the rows.
        axis: simulated through-plane axis.
        seed: seed of the degradation, the training and the fit.
        train_root: folder of the training runs (``<train_root>/<held_out>/<method>``); default a temporary one.
        qc: HTML QC report folder (:func:`mrisr.experiment.qc.experiment_qc_page`): a page per output scored now.
        log: progress lines.

    Returns:
        The rows of ``out`` (and a ``run_records`` attribute: training records by (volume, method)).
    """
    from mrisr.api import super_resolve
    from mrisr.eval.prettier import PATCH_METRICS
    from mrisr.eval.scoring import reference_volumes, score_volume
    from mrisr.experiment.helpers import train_model
    from mrisr.experiment.qc import experiment_qc_page
    from mrisr.io.nifti import as_volume, save_volume
    from mrisr.io.rows import REFERENCE_METHODS, RowStore

    store = RowStore(out)
    done = store.done()
    unknown = [m for m in methods if m not in ("cubic", "smore_fast", *trained) and not m.startswith("zoo/")]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose cubic, smore_fast, zoo/<name> or {sorted(trained)}")
    records: dict[str, dict[str, Any]] = {}
    hr_all = {name: load_hr(data, name) for name in VOLUMES}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, volume in hr_all.items():
            files[name] = Path(tmp) / f"{name}_1mm.nii.gz"
            save_volume(volume, files[name])
        root = Path(train_root) if train_root is not None else Path(tmp) / "train"
        for name in held_out:
            hr, lr, mask = held_out_input(hr_all[name], name, axis, seed)

            def score(sr: Volume, method: str, seconds: float, steps: int | None, name: str = name,
                      hr: Volume = hr, mask: Volume = mask) -> list:  # fmt: skip
                return score_volume(sr, hr, name, setting, method, mask=mask, normalization_mask=mask,
                                    patch_axis=axis, patch_metrics=PATCH_METRICS, seconds=seconds,
                                    steps=steps)  # fmt: skip

            todo_refs = [m for m in REFERENCE_METHODS if (name, setting, m) not in done]
            if todo_refs:
                references = reference_volumes(hr, lr, axis)
                for method in todo_refs:
                    store.append(score(references[method], method, 0.0, None))
            sources = [n for n in VOLUMES if n != name]
            for method in methods:
                label = method_label(trained[method], method) if method in trained else method
                if (name, setting, label) in done:
                    continue
                start = time.perf_counter()
                steps: int | None = None
                if method == "cubic" or method.startswith("zoo/"):
                    # Interpolation, or a shipped model as it is (its training data must not hold this volume).
                    sr = as_volume(super_resolve(lr.to_nifti(), model=method, axis=axis, seed=seed))
                elif method == "smore_fast":
                    result = zero_shot(lr, axis, zero_shot_model, max_steps, zero_shot_cap_s, seed)
                    sr = result.sr
                    steps = int(result.fit.record["steps"]) if result.fit is not None else None
                else:
                    overrides = [
                        *trained[method],
                        f"data.train=[{','.join(str(files[s]) for s in sources)},mni152]",
                        "data.val=[mni152]",
                        "data.test=[mni152]",
                        "data.axes=[0,1,2]",
                        *common,
                    ]
                    model = train_model(overrides, root / name / method, max_steps, seed, validations)
                    records[f"{name}/{method}"] = {**model.record, "sources": [*sources, "mni152"]}
                    steps = model.steps
                    sr = as_volume(super_resolve(lr.to_nifti(), model=model.model, axis=axis, seed=seed))
                seconds = time.perf_counter() - start
                rows = score(sr, label, seconds, steps)
                store.append(rows)
                if qc is not None:
                    experiment_qc_page(qc, lr, sr, rows, axis, THICKNESS_MM)
                shown = {r["metric"]: round(float(r["value"]), 4) for r in rows if r["metric"].endswith("_mask")}
                log(f"{name} {label} {seconds:.0f} s {shown}")
    if qc is not None:
        from mrisr.report.qc import write_qc_index

        write_qc_index(qc)
    frame = store.read()
    frame.attrs["run_records"] = records
    return frame
