"""Few-step sampling of the conditional diffusion SR model: sampler × steps → PSNR / SSIM and CPU seconds per plane.

A DDPM-trained :class:`~mrisr.systems.diffusion.DiffusionSR` checkpoint (``--ckpt``) is sampled with DDIM
(Song et al. 2021), DPM-Solver++ multistep (Lu et al. 2022) and UniPC (Zhao et al. 2023) at 1, 2, 4, 10, 20 and 50
model evaluations, beside cubic B-spline interpolation; a checkpoint of the InDI residual formulation
(``--residual-ckpt``, docs/models.md §3.7) adds its Euler sampler at 1, 2 and 4 steps. DDIM-20, the sampler of
Graf et al. (docs/models.md §3.5), is the reference: ``dpsnr_ddim20`` is each row's PSNR minus DDIM-20's.

Inputs: a held-out test spine (default errsm_21, 1 mm sagittal T2w; errsm_20/22 are the training spines of
``data=spine``), cropped to ``--planes`` central sagittal planes, with a thick axial acquisition simulated through
:func:`mrisr.api.simulate` (default 5 mm SLR slices, no gap, along the I–S axis, seeded). Every method
super-resolves the crop with the same seeded noise map; metrics are those of docs/evaluation.md §1 on the evaluated
planes of the HR grid: intensities divided by the HR crop's foreground 99.5th percentile and clipped to [0, 1],
PSNR over all planes, SSIM the mean of the 2-D mean SSIM of each plane (a few planes are shorter than the 3-D SSIM
window). ``seconds_per_plane`` is the wall time of the plane sampling loop (cubic: the interpolation) divided by the
number of planes, on CPU with the threads ``OMP_NUM_THREADS`` allows.

``--train-smoke`` makes the benchmark self-contained: it trains ``python train.py experiment=palette_smoke`` (tiny
U-Net, 48² crops of errsm_20/22, EMA 0.99) for at most ``--train-minutes`` / ``--train-steps`` (and a residual
twin with ``--train-residual``) and benchmarks those checkpoints; a model given by ``--ckpt`` / ``--residual-ckpt``
is not retrained. Such a CPU smoke model is far from converged: its numbers show the machinery and the relative
cost of the samplers, not the quality of a trained Palette model (nor the paper's).

On CPU a tiny-U-Net evaluation costs about 0.3 s per full 384 × 215 plane (1 thread), so the whole grid
(3 samplers × 87 evaluations + residual) takes about 80 s per plane.

Rows go to ``results/diffusion_sampling.csv`` (rows already present are skipped, so an interrupted run resumes; the
ΔPSNR column is recomputed on every write) and the plot to ``results/diffusion_sampling.png``. Example:
``OMP_NUM_THREADS=1 python experiments/benchmarks/diffusion_sampling.py --train-smoke --train-residual --planes 8``.

Uses the installed package (``make setup`` installs mrisr editable into ``.venv``), so no ``PYTHONPATH`` is needed.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from mrisr.api import simulate
from mrisr.core.atomic import save_figure_atomic, write_rows_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.diffusion.schedulers import DDIMSampler, DPMSolverSampler, UniPCSampler
from mrisr.eval.image import normalize_intensity, psnr, ssim
from mrisr.inference import interpolate_volume, output_grid
from mrisr.inference.diffusion import stack_axes
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume, as_volume
from mrisr.io.regrid import resample_to_reference, same_grid
from mrisr.systems.diffusion import DiffusionSR, ResidualSampler

REPO = Path(__file__).resolve().parents[2]

#: Sampler name → config class (Hydra-free: the benchmark swaps ``model.sampler`` directly).
SAMPLERS = {"ddim": DDIMSampler, "dpmpp": DPMSolverSampler, "unipc": UniPCSampler}
STEPS = (1, 2, 4, 10, 20, 50)
RESIDUAL_STEPS = (1, 2, 4)
REFERENCE = ("ddim", 20)
FIELDS = [
    "subject",
    "setting",
    "model",
    "method",
    "steps",
    "planes",
    "psnr",
    "ssim",
    "dpsnr_ddim20",
    "seconds_per_plane",
]


def crop_planes(hr: Volume, axis: int, planes: int) -> tuple[Volume, int]:
    """The ``planes`` central planes of ``hr`` that contain the through-plane ``axis``, with their exact affine.

    Args:
        hr: HR volume.
        axis: through-plane axis of the simulated acquisition.
        planes: number of planes kept (along the axis the diffusion model stacks its planes on).

    Returns:
        ``(crop, stack_axis)``.
    """
    stack_axis = stack_axes(hr, axis, 1)[0]
    size = hr.shape[stack_axis]
    if not 1 <= planes <= size:
        raise MrisrInputError(hr.path, f"--planes {planes} outside [1, {size}]", f"choose 1 … {size} planes")
    start = (size - planes) // 2
    index = [slice(None)] * 3
    index[stack_axis] = slice(start, start + planes)
    shift = np.eye(4)
    shift[stack_axis, 3] = start  # voxel offset of the crop → world offset through the affine
    image = nib.Nifti1Image(np.ascontiguousarray(hr.data[tuple(index)], dtype=np.float32), hr.affine @ shift)
    return as_volume(image), stack_axis


def plane_metrics(sr: Volume, hr: Volume, stack_axis: int) -> dict[str, float]:
    """PSNR over the planes and mean of the per-plane 2-D SSIM, on the HR grid (docs/evaluation.md §1 rule)."""
    sr_data = sr.data if same_grid(sr, hr) else resample_to_reference(sr, hr, order=3)
    hr_n, sr_n = normalize_intensity(hr.data, sr_data, percentile=99.5, clip=True)
    scores = [ssim(np.take(sr_n, k, stack_axis), np.take(hr_n, k, stack_axis)) for k in range(hr.shape[stack_axis])]
    return {"psnr": psnr(sr_n, hr_n), "ssim": float(np.mean(scores))}


def benchmark(
    model: DiffusionSR | None,
    hr: Volume,
    lr: Volume,
    stack_axis: int,
    samplers: Sequence[str] = tuple(SAMPLERS),
    steps: Sequence[int] = STEPS,
    residual_model: DiffusionSR | None = None,
    residual_steps: Sequence[int] = RESIDUAL_STEPS,
    seed: int = 0,
    skip: set[tuple[str, int]] | None = None,
) -> list[dict[str, object]]:
    """Cubic + every (sampler, steps) of ``model`` + the residual sampler of ``residual_model`` on one crop.

    Args:
        model: DDPM-formulation system (``None``: no diffusion rows).
        hr: HR crop (the evaluation grid).
        lr: its simulated thick-slice version.
        stack_axis: axis along which the evaluated planes are stacked.
        samplers: names in :data:`SAMPLERS`.
        steps: model evaluations per sampling run.
        residual_model: residual-formulation system, or ``None``.
        residual_steps: Euler steps of the residual sampler.
        seed: seed of the noise map (the same for every row).
        skip: ``(method, steps)`` already measured.

    Returns:
        One row per method: ``method, steps, planes, psnr`` (dB), ``ssim``, ``seconds_per_plane`` (s).
    """
    skip = skip or set()
    geometry = detect_slice_axis(lr)
    grid = output_grid(geometry, lr.shape[geometry.axis])
    planes = hr.shape[stack_axis]
    rows: list[dict[str, object]] = []

    def row(method: str, n: int, sr: Volume, seconds: float) -> None:
        rows.append({"method": method, "steps": n, "planes": planes, **plane_metrics(sr, hr, stack_axis)})
        rows[-1]["seconds_per_plane"] = seconds / planes
        print(f"{method:>8} {n:>3} steps  psnr {rows[-1]['psnr']:.3f}  {seconds / planes:.3f} s/plane", flush=True)

    if ("cubic", 0) not in skip:
        started = time.perf_counter()
        cubic = interpolate_volume(lr, grid, order=3)
        row("cubic", 0, cubic, time.perf_counter() - started)
    runs: list[tuple[DiffusionSR, str, object]] = []
    if model is not None:
        runs += [(model, name, SAMPLERS[name](steps=int(n))) for name in samplers for n in steps]
    if residual_model is not None:
        runs += [(residual_model, "residual", ResidualSampler(steps=int(n))) for n in residual_steps]
    for system, name, sampler in runs:
        if (name, int(sampler.steps)) in skip:
            continue
        system.sampler = sampler
        system.samples, system.passes, system.progress = 1, 1, False
        system.validate_inference_options()
        started = time.perf_counter()
        with torch.inference_mode():
            output = system.inferer()(lr, geometry, grid, torch.Generator().manual_seed(seed))
        row(name, int(sampler.steps), output.sr, time.perf_counter() - started)
    return rows


def with_reference_gap(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Adds ``dpsnr_ddim20`` = PSNR − PSNR of DDIM-20 of the same subject, setting and model (empty without one)."""
    reference = {
        (r["subject"], r["setting"], r["model"]): float(r["psnr"])
        for r in rows
        if (r["method"], int(r["steps"])) == REFERENCE
    }
    out = []
    for r in rows:
        ref = reference.get((r["subject"], r["setting"], r["model"]))
        out.append({**r, "dpsnr_ddim20": "" if ref is None else round(float(r["psnr"]) - ref, 4)})
    return out


def train_smoke(runs_dir: Path, minutes: float, steps: int, residual: bool, seed: int) -> Path:
    """Trains ``experiment=palette_smoke`` (optionally the residual formulation) for ≤ ``minutes``; its last.ckpt."""
    name = "residual" if residual else "ddpm"
    out = runs_dir / name
    seconds = int(minutes * 60)
    overrides = [
        "experiment=palette_smoke",
        f"paths.runs_dir={out}",
        f"seed={seed}",
        f"trainer.max_steps={steps}",
        "trainer.max_epochs=100000",
        f"trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}",
        "data.patch_size=48",
        "model.ema_decay=0.99",
        "test=false",
    ]
    if residual:
        overrides += ["+model.formulation=residual", "model.sampler._target_=mrisr.systems.diffusion.ResidualSampler"]
    subprocess.run([sys.executable, str(REPO / "train.py"), *overrides], cwd=REPO, check=True)
    ckpts = sorted(out.glob("train/*/checkpoints/last.ckpt"))
    if not ckpts:
        raise MrisrInputError(out, "training wrote no checkpoints/last.ckpt", "check the training log above")
    return ckpts[-1]


def load_system(path: Path) -> DiffusionSR:
    from mrisr.app.models import load_model

    system = load_model(str(path))
    if not isinstance(system, DiffusionSR):
        raise MrisrInputError(path, f"checkpoint holds a {type(system).__name__}", "pass a DiffusionSR checkpoint")
    return system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--ckpt", type=Path, help="DDPM-formulation DiffusionSR checkpoint")
    parser.add_argument("--residual-ckpt", type=Path, help="residual-formulation DiffusionSR checkpoint")
    parser.add_argument("--train-smoke", action="store_true", help="train CPU smoke models not given")
    parser.add_argument("--train-residual", action="store_true", help="with --train-smoke: also a residual model")
    parser.add_argument("--train-minutes", type=float, default=2.5, help="wall-time cap of each smoke training")
    parser.add_argument("--train-steps", type=int, default=400, help="optimiser-step cap of each smoke training")
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "diffusion_sampling")
    parser.add_argument("--subjects", nargs="+", default=["errsm_21"])
    parser.add_argument("--thickness", type=float, default=5.0, help="simulated slice thickness = separation, mm")
    parser.add_argument("--axis", type=int, default=1, help="through-plane voxel axis (1 = I–S of the PSR spines)")
    parser.add_argument("--planes", type=int, default=8)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--steps", nargs="+", type=int, default=list(STEPS))
    parser.add_argument("--residual-steps", nargs="+", type=int, default=list(RESIDUAL_STEPS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "diffusion_sampling.csv")
    args = parser.parse_args()
    if args.train_smoke:  # trains the models that no checkpoint option names
        if args.ckpt is None:
            args.ckpt = train_smoke(args.runs_dir, args.train_minutes, args.train_steps, False, args.seed)
        if args.train_residual and args.residual_ckpt is None:
            args.residual_ckpt = train_smoke(args.runs_dir, args.train_minutes, args.train_steps, True, args.seed)
    if args.ckpt is None and args.residual_ckpt is None:
        parser.error("give --ckpt and/or --residual-ckpt, or --train-smoke")
    model = load_system(args.ckpt) if args.ckpt else None
    residual = load_system(args.residual_ckpt) if args.residual_ckpt else None
    label = "smoke" if args.train_smoke else (args.ckpt or args.residual_ckpt).stem
    setting = f"{args.thickness:g}mm_axis{args.axis}"

    args.out.parent.mkdir(parents=True, exist_ok=True)
    done: list[dict[str, object]] = []
    if args.out.exists():
        with args.out.open(newline="") as handle:
            done = list(csv.DictReader(handle))
    for subject in args.subjects:
        hr_full = as_volume(args.data / "spine_hr" / subject / "t2.nii.gz")
        hr, stack_axis = crop_planes(hr_full, args.axis, args.planes)
        lr = as_volume(simulate(hr, thickness_mm=args.thickness, axis=args.axis, seed=args.seed))
        key = (subject, setting, label)
        skip = {(r["method"], int(r["steps"])) for r in done if (r["subject"], r["setting"], r["model"]) == key}
        rows = benchmark(
            model,
            hr,
            lr,
            stack_axis,
            args.samplers,
            args.steps,
            residual,
            args.residual_steps,
            args.seed,
            skip,
        )
        new = [{"subject": subject, "setting": setting, "model": label, **r} for r in rows]
        done = with_reference_gap([*done, *new])
        write_rows_atomic(done, args.out, FIELDS)
    plot(args.out)


def plot(csv_path: Path) -> None:
    """PSNR / SSIM against steps and against seconds per plane, one line per sampler (mean over subjects)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(csv_path)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    cubic = table[table.method == "cubic"][["psnr", "ssim"]].mean()
    for index, (method, group) in enumerate(table[table.method != "cubic"].groupby("method")):
        mean = group.groupby("steps")[["psnr", "ssim", "seconds_per_plane"]].mean()
        for row, column in enumerate(("psnr", "ssim")):
            axes[row, 0].plot(mean.index, mean[column], "o-", color=f"C{index}", label=method)
            axes[row, 1].plot(mean.seconds_per_plane, mean[column], "o-", color=f"C{index}", label=method)
    for row, (column, name) in enumerate((("psnr", "PSNR (dB)"), ("ssim", "mean SSIM"))):
        for col in range(2):
            ax = axes[row, col]
            if not math.isnan(float(cubic[column])):
                ax.axhline(float(cubic[column]), color="k", lw=0.8, ls="--", label="cubic")
            ax.set_xscale("log")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
        axes[row, 0].set_xlabel("model evaluations (steps)")
        axes[row, 1].set_xlabel("seconds per plane (CPU)")
    axes[0, 0].legend(fontsize=8)
    models = ", ".join(sorted(table.model.astype(str).unique()))
    fig.suptitle(f"Diffusion SR samplers ({models}; a smoke model is far from converged)", fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, csv_path.with_suffix(".png"))
    plt.close(fig)


if __name__ == "__main__":
    main()
