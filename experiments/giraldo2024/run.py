"""Giraldo et al. (Front. Neurosci. 2024, PRETTIER) on the shared brain volumes: bicubic, EDSR, RealESRGAN, zero-shot.

Leave one volume out over ``<data>/brain`` (``flair_1mm_skullstripped``: T2w FLAIR, 1 mm; ``t1_0p88mm``: T1w, resampled
onto 1 mm): the held-out HR volume is degraded by the ``prettier`` preset (5 mm SLR slices every 6 mm, along axis 2),
then reconstructed by cubic B-spline ("bicubic"), by PRETTIER EDSR and RealESRGAN trained on the *other* volume + the
MNI152 template, and by the zero-shot model (``smore_fast``, SMORE-style, fitted on the LR volume itself; the paper's
Table 3 compares SMORE v4). Scores (docs/evaluation.md §1, :mod:`mrisr.eval.prettier`): volume PSNR / SSIM inside the
brain mask (Table 3) and the offline piq patch metrics over the HR slices along the degraded axis (Table 2).

The computation is that of ``experiments/benchmarks/prettier_brain.py`` (:func:`run_held_out`, imported from it), run
with an optimiser-step budget per model so that reruns reproduce; this script fixes the scale, records provenance in
``run.json`` beside the CSV (commit, configuration, wall time) and ``tables.py`` lays the rows out as the paper's
tables.

Scales: ``smoke`` (tiny nets ``edsr_smoke`` / ``realesrgan_smoke``, random perceptual trunk, 150 optimiser steps each,
``smore_fast`` 150 steps; minutes on CPU) and ``paper`` (the full nets ``edsr`` / ``realesrgan`` with the paper's
data sizes, 100 epochs of 2220 patches at batch 6 = 37 000 steps, for a GPU with natural-image and VGG-19 weights
set in the model configs; not run here).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch
from omegaconf import OmegaConf

from mrisr.core.errors import MrisrInputError
from mrisr.utils.config import compose
from mrisr.utils.experiments import append_invocation, git_commit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BENCHMARK = REPO / "experiments" / "benchmarks" / "prettier_brain.py"

#: Per scale: model configs, experiment configs (data settings), data-size overrides, optimiser steps per model and
#: the wall-time cap (minutes) per model. RealESRGAN's Lightning step counts its generator and discriminator step.
SCALES: dict[str, dict[str, object]] = {
    "smoke": {
        "edsr": "edsr_smoke",
        "realesrgan": "realesrgan_smoke",
        "edsr_experiment": "prettier_edsr_smoke",
        "realesrgan_experiment": "prettier_realesrgan_smoke",
        "data_overrides": ["data.batch_size=4", "data.patches_per_epoch=64", "data.val_patches=4"],
        "max_steps": 150,
        "cap_minutes": 10.0,
    },
    "paper": {
        "edsr": "edsr",
        "realesrgan": "realesrgan",
        "edsr_experiment": "prettier_edsr",
        "realesrgan_experiment": "prettier_realesrgan",
        "data_overrides": [],
        "max_steps": 37000,
        "cap_minutes": 600.0,
    },
}
METHODS = ("cubic", "smore_fast", "edsr", "realesrgan")


def load_benchmark() -> object:
    """The module ``experiments/benchmarks/prettier_brain.py`` (experiments are files, not a package)."""
    spec = importlib.util.spec_from_file_location("prettier_brain", BENCHMARK)
    if spec is None or spec.loader is None:
        raise MrisrInputError(BENCHMARK, "cannot load the PRETTIER benchmark", "run from a complete checkout")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    parser.add_argument("--held-out", nargs="+", default=["flair", "t1"], choices=["flair", "t1"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--max-steps", type=int, default=None, help="optimiser steps per model (default: the scale's)")
    parser.add_argument("--data", type=Path, default=None, help="data root (default: the config's paths.data)")
    parser.add_argument("--out", type=Path, default=None, help="rows CSV (default results/<scale>/rows.csv)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out = args.out or HERE / "results" / args.scale / "rows.csv"
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # Barely trained nets drift into denormal floats, which slow CPU arithmetic by an order of magnitude or more
    # (measured: 20 diffusion steps 145 s → 12 s); flushing them to zero changes no result beyond float32 noise.
    torch.set_flush_denormal(True)
    scale = dict(SCALES[args.scale])
    max_steps = int(args.max_steps if args.max_steps is not None else scale["max_steps"])
    cfg = compose("train", [])
    data = Path(args.data or cfg.paths.data)
    bench = load_benchmark()
    started, start, commit = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter(), git_commit(REPO)
    rows = bench.run_held_out(
        data, args.held_out, args.methods, float(scale["cap_minutes"]), args.out,
        edsr=str(scale["edsr"]), realesrgan=str(scale["realesrgan"]), axis=2, seed=args.seed, max_steps=max_steps,
        log=lambda line: print(line, flush=True), edsr_experiment=str(scale["edsr_experiment"]),
        realesrgan_experiment=str(scale["realesrgan_experiment"]), data_overrides=list(scale["data_overrides"]),
    )  # fmt: skip
    models = {
        m: OmegaConf.to_container(compose("train", [f"model={scale[m]}"]).model, resolve=True)
        for m in ("edsr", "realesrgan")
    }
    record_path = args.out.with_name("run.json")
    append_invocation(
        record_path,
        {
            **commit,
            "started": started,
            "wall_s": round(time.perf_counter() - start, 1),
            "scale": args.scale,
            "command": " ".join(
                ["python", "experiments/giraldo2024/run.py", *(sys.argv[1:] if argv is None else argv)]
            ),
            "held_out": args.held_out,
            "methods": args.methods,
            "max_steps": max_steps,
            "cap_minutes": scale["cap_minutes"],
            "degradation": "prettier (SLR 5 mm every 6 mm, axis 2, seed)",
            "seed": args.seed,
            "scale_config": scale,
            "model_configs": models,
            "csv": "rows.csv" if args.out.parent == record_path.parent else str(args.out),
        },
    )
    print(json.dumps({"csv": str(args.out), "rows": len(rows), "run_json": str(record_path)}))


if __name__ == "__main__":
    main()
