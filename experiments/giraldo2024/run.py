"""Giraldo et al. (Front. Neurosci. 2024, PRETTIER) on the shared brain volumes: bicubic, EDSR, RealESRGAN, zero-shot.

Leave one volume out over ``<data>/brain`` (``flair_1mm_skullstripped``: T2w FLAIR, 1 mm; ``t1_0p88mm``: T1w, resampled
onto 1 mm): the held-out HR volume is degraded by the ``prettier`` preset (5 mm SLR slices every 6 mm, along axis 2),
then reconstructed by cubic B-spline ("bicubic"), by PRETTIER EDSR and RealESRGAN trained on the *other* volume + the
MNI152 template, and by the zero-shot model (``smore_fast``, SMORE-style, fitted on the LR volume itself; the paper's
Table 3 compares SMORE v4). The computation is :func:`mrisr.experiment.prettier.run_held_out` (shared with
``experiments/benchmarks/prettier_brain.py``): models are trained by the one training path
(:func:`mrisr.experiment.helpers.train_model`: an optimiser-step budget, validation passes, the best checkpoint by the
model's validation metric; run folders ``results/<scale>/train/<volume>/<method>/``), every output and the reference
rows (``floor_zero``, ``floor_mean``, ``ceiling_bandlimit``) are scored by :func:`mrisr.eval.scoring.score_volume`:
volume PSNR / SSIM inside the brain mask (Table 3) and the offline piq patch metrics over the HR slices along the
degraded axis (Table 2).

Rows (:mod:`mrisr.io.rows`; subject = held-out volume, setting ``prettier``) go to ``results/<scale>/rows.csv``
(present results are skipped: an interrupted run resumes); ``run.json`` beside it records provenance (commit, scale,
model configurations, training records, wall time) and ``tables.py`` lays the rows out as the paper's tables.

Scales (``scales/<scale>.yaml``): ``smoke`` (tiny nets ``edsr_smoke`` / ``realesrgan_smoke``, random perceptual
trunk, 150 optimiser steps each, ``smore_fast`` 150 steps; minutes on CPU) and ``paper`` (the full nets ``edsr`` /
``realesrgan`` with the paper's data sizes, 37 000 steps, for a GPU with natural-image and VGG-19 weights set in the
model configs; not run here).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf

from mrisr.experiment.helpers import Invocation, append_invocation, load_scale, run_parser, run_paths
from mrisr.experiment.prettier import VOLUMES, method_label, run_held_out
from mrisr.utils.config import compose

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
METHODS = ("cubic", "smore_fast", "edsr", "realesrgan")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = run_parser(__doc__.splitlines()[0], HERE)
    parser.add_argument("--held-out", nargs="+", default=list(VOLUMES), choices=list(VOLUMES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--max-steps", type=int, default=None, help="optimiser steps per model (default: the scale's)")
    return run_paths(parser.parse_args(argv), HERE)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # Barely trained nets drift into denormal floats, which slow CPU arithmetic by an order of magnitude or more
    # (measured: 20 diffusion steps 145 s → 12 s); flushing them to zero changes no result beyond float32 noise.
    torch.set_flush_denormal(True)
    scale = load_scale(HERE, args.scale)
    max_steps = int(args.max_steps if args.max_steps is not None else scale["max_steps"])
    data = Path(args.data or compose("train", []).paths.data)
    invocation = Invocation.start(HERE, args.scale, argv)
    rows = run_held_out(
        data, args.held_out, args.methods, args.out, trained=scale["methods"], common=scale["common"],
        max_steps=max_steps, validations=int(scale["validations"]), zero_shot_model=scale["zero_shot"]["model"],
        zero_shot_cap_s=scale["zero_shot"]["cap_s"], axis=2, seed=args.seed, train_root=args.out.parent / "train",
        qc=args.qc, log=lambda line: print(line, flush=True),
    )  # fmt: skip
    models = {
        method_label(overrides, m): OmegaConf.to_container(compose("train", list(overrides)).model, resolve=True)
        for m, overrides in scale["methods"].items()
    }
    record_path = args.out.with_name("run.json")
    append_invocation(
        record_path,
        {
            **invocation.header(),
            "held_out": args.held_out,
            "methods": args.methods,
            "max_steps": max_steps,
            "degradation": "prettier (SLR 5 mm every 6 mm, axis 2, seed)",
            "seed": args.seed,
            "scale_config": scale,
            "model_configs": models,
            "training": rows.attrs.get("run_records", {}),
            "scoring": "mrisr.eval.scoring.score_volume (mask = normalisation region = brain mask; patch metrics "
            "along axis 2)",
            "csv": "rows.csv" if args.out.parent == record_path.parent else str(args.out),
            "qc": str(args.qc) if args.qc else None,
        },
    )
    print(json.dumps({"csv": str(args.out), "rows": len(rows), "run_json": str(record_path)}))


if __name__ == "__main__":
    main()
