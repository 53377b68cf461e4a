"""PRETTIER EDSR learning curves on a held-out brain volume: net size, identity start, loss, patch, batch, lr, data.

Measures what a CPU-scale PRETTIER recipe should be (docs/models.md §2; the goal: EDSR ≥ cubic + 1 dB PSNR and
+ 0.05 SSIM in the brain mask, 5 mm SLR slices every 6 mm along axis 2, within 60 min of training on 2 CPU cores).
Every probe is a step-bounded training run (deterministic under ``--seed``) of ``mrisr.systems.prettier.PrettierSR``
through the one training path (:func:`mrisr.experiment.helpers.train_model`; one validation pass at the end), scored at
``eval_steps`` on the whole held-out volume by :class:`mrisr.experiment.learning_curve.LearningCurve`: the LR of the
``prettier`` preset (seed 0), super-resolved by the system at that step, masked PSNR / SSIM as in ``prettier_brain.py``
(same volumes, crops and mask rules: FLAIR mask = voxels > 0, T1 mask = head mask).

Training data (``sources``): ``target`` = the other brain volume + the MNI152 template (as ``prettier_brain.py``);
``all`` = the six cervical spines (spine_hr/errsm_*), the lumbar spine, both brains and MNI152, with the held-out
volume removed by ``data.exclude``. Every source is resampled to 1 mm (``data.isotropic_mm``; only the 0.88 mm T1
changes). MNI152 is shared with the (unused) validation split, so training sees its 70 % slab. ``train_degradation``
``prettier_random`` draws a random slice profile (slr / gaussian / rect, 3.5–6.5 mm, 6 mm separation) per patch.
A probe with two stages trains the first (pretraining) and continues from its weights with a fresh optimiser in
the second (fine-tuning); its curve continues over both.

Threads: ``torch.set_num_threads(--threads)`` (default 1; run with ``OMP_NUM_THREADS`` equal). ``train_s`` is the
training time up to a point, evaluations excluded, measured on a machine shared with other jobs: use ``--timing``
(s/step of each probe's configuration at 1 and 2 threads, 12 steps after 3 warm-up steps, no evaluation) for the
speed numbers. Rows: ``results/prettier_probe_curves.csv`` (one row per probe, stage, case and evaluated step; probes
already complete in the file are skipped) and ``results/prettier_probe_timing.csv``.

Uses the installed package (``make setup``), so no ``PYTHONPATH`` is needed.
"""

from __future__ import annotations

import argparse
import copy
import csv
import functools
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mrisr.core.atomic import write_rows_atomic
from mrisr.experiment.held_out import HeldOutCase, held_out_case, score_held_out
from mrisr.experiment.helpers import train_model
from mrisr.experiment.learning_curve import LearningCurve
from mrisr.io.nifti import load_volume
from mrisr.io.regrid import resample_isotropic
from mrisr.utils.config import compose

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results"

#: Held-out volume name → (file under ``<data>/brain``, mask rule), as in prettier_brain.py.
VOLUMES: dict[str, tuple[str, str]] = {
    "flair": ("flair_1mm_skullstripped.nii.gz", "nonzero"),
    "t1": ("t1_0p88mm.nii.gz", "head"),
}
SPINES = ("errsm_11", "errsm_18", "errsm_20", "errsm_21", "errsm_22", "errsm_30")


@dataclass(frozen=True)
class Stage:
    """One training stage: ``steps`` optimiser steps on ``sources`` with or without random acquisitions."""

    steps: int
    sources: str = "target"
    train_degradation: str | None = None
    lr: float | None = None


@dataclass(frozen=True)
class Probe:
    """A learning-curve run: network, loss and optimisation settings, one or two stages, evaluation steps."""

    name: str
    stages: tuple[Stage, ...]
    family: str = "edsr"
    n_feats: int = 32
    n_resblocks: int = 4
    res_scale: float = 1.0
    skip: bool = True
    skip_mode: str = "bicubic"
    loss: str = "l1"
    hr_patch: int = 96
    batch_size: int = 6
    lr: float = 2e-4
    schedule: str = "constant"
    net_range: float = 255.0
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    @property
    def eval_steps(self) -> tuple[int, ...]:
        """Steps scored: 0, 1/6, 1/3, 2/3 and all of the total, and the end of every stage."""
        total = self.total_steps
        ends = [sum(s.steps for s in self.stages[: i + 1]) for i in range(len(self.stages))]
        return tuple(sorted({0, total // 6, total // 3, 2 * total // 3, *ends}))

    def describe(self) -> dict[str, Any]:
        stages = "+".join(
            f"{s.steps}@{s.sources}{'/' + s.train_degradation if s.train_degradation else ''}" for s in self.stages
        )
        return {
            "net": "rrdb23x64_x4plus" if self.family == "rrdb_x4plus" else f"edsr{self.n_resblocks}x{self.n_feats}",
            "skip": self.skip_mode if self.skip else "none",
            "loss": self.loss,
            "hr_patch": self.hr_patch,
            "batch": self.batch_size,
            "lr": self.lr,
            "schedule": self.schedule,
            "net_range": self.net_range,
            "stages": stages,
        }


def _probes() -> dict[str, Probe]:
    base = Probe("base", (Stage(1500),))
    probes = [
        base,
        replace(base, name="noskip", skip=False),
        replace(base, name="mri_perceptual", loss="mri_smoke"),
        replace(base, name="lr1e-3", lr=1e-3),
        replace(base, name="small_2x16", n_feats=16, n_resblocks=2, stages=(Stage(4000),)),
        replace(base, name="edsr8x64", n_feats=64, n_resblocks=8, stages=(Stage(500),)),
        replace(base, name="patch48_b16", hr_patch=48, batch_size=16, stages=(Stage(3000),)),
        # Data: compared with lr1e-3 (the same settings on the target sources only).
        replace(base, name="all_sources", lr=1e-3, stages=(Stage(1500, "all"),)),
        replace(base, name="pretrain_random", lr=1e-3, stages=(Stage(750, "all", "prettier_random"), Stage(750))),
        replace(base, name="net_range1", net_range=1.0),
        replace(base, name="cosine", schedule="cosine"),
        replace(base, name="bspline", skip_mode="bspline"),
        replace(base, name="deep_16x32", n_resblocks=16),
        # Around the better learning rate (lr1e-3).
        replace(base, name="lr3e-3", lr=3e-3),
        replace(base, name="lr1e-3_cosine", lr=1e-3, schedule="cosine"),
        replace(base, name="lr1e-3_patch48_b16", lr=1e-3, hr_patch=48, batch_size=16, stages=(Stage(3000),)),
        replace(base, name="lr1e-3_deep_16x32", lr=1e-3, n_resblocks=16),
        replace(base, name="lr1e-3_edsr8x64", lr=1e-3, n_feats=64, n_resblocks=8, stages=(Stage(500),)),
        replace(base, name="lr1e-3_bspline", lr=1e-3, skip_mode="bspline"),
        # Longer: does the lr1e-3 cosine curve keep rising past 1500 steps?
        replace(base, name="lr1e-3_cosine_4000", lr=1e-3, schedule="cosine", stages=(Stage(4000),)),
        # Capacity: the 4 x 32 curve levels off near +0.88 dB; does a deeper trunk (16 blocks, ~1.9x the cost of a
        # step) at the same learning rate and decay rise further within the hour?
        replace(
            base, name="lr1e-3_cosine_deep16x32_2500", lr=1e-3, schedule="cosine", n_resblocks=16, stages=(Stage(2500),)
        ),
        # Real-ESRGAN's x4plus generator (natural images) inside the interpolation skip, fine-tuned with L1 on
        # [0, 1] intensities (its training range) at a small learning rate; smaller patches, as a step costs ~10x
        # an EDSR 4x32 step.
        replace(
            base,
            name="x4plus_skip_ft",
            family="rrdb_x4plus",
            lr=1e-4,
            net_range=1.0,
            hr_patch=48,
            batch_size=4,
            stages=(Stage(800),),
        ),
    ]
    return {p.name: p for p in probes}


PROBES = _probes()


# ---------------------------------------------------------------- configuration
def source_paths(data: Path, held_out: str, which: str) -> tuple[list[str], str]:
    """Training sources of ``which`` (``target`` / ``all``) and the held-out file to exclude."""
    brain = {name: str(data / "brain" / file) for name, (file, _) in VOLUMES.items()}
    other = [p for n, p in brain.items() if n != held_out]
    if which == "target":
        return [*other, "mni152"], brain[held_out]
    if which == "all":
        spines = [str(data / "spine_hr" / s / "t2.nii.gz") for s in SPINES]
        return [*spines, str(data / "spine_hr_lumbar" / "t2_lumbar.nii.gz"), *brain.values(), "mni152"], brain[held_out]
    raise ValueError(f"sources must be 'target' or 'all', got {which!r}")


def loss_config(kind: str) -> dict[str, Any]:
    """The content loss: ``l1`` (pixel L1 only), ``mri_smoke`` (L1 + perceptual on the random-init 2-stage
    MRIFeatures trunk of model=edsr_smoke), ``vgg_random`` (L1 + perceptual on a random-init VGG-19)."""
    if kind == "l1":
        return {"_target_": "torch.nn.L1Loss"}
    if kind == "mri_smoke":
        perceptual = {
            "_target_": "mrisr.losses.PerceptualLoss",
            "layer_weights": {"conv1_2": 0.1, "conv2_2": 1.0},
            "use_input_norm": False,
            "backbone": {"_target_": "mrisr.losses.MRIFeatures", "in_channels": 1, "widths": [4, 8]},
        }
        return {"_target_": "mrisr.losses.ContentLoss", "perceptual": perceptual}
    if kind == "vgg_random":
        perceptual = {"_target_": "mrisr.losses.PerceptualLoss", "weights_path": None}
        return {"_target_": "mrisr.losses.ContentLoss", "perceptual": perceptual}
    raise ValueError(f"unknown loss {kind!r}")


@functools.cache
def _composed(overrides: tuple[str, ...]) -> Any:
    """The ``train`` config composed with ``overrides``, once per process (probes share most of their overrides)."""
    return compose("train", list(overrides))


def build_config(probe: Probe, stage: Stage, data: Path, held_out: str, seed: int) -> Any:
    """The composed ``train`` config of one stage (``experiment=prettier_edsr_smoke`` + the probe's settings)."""
    sources, excluded = source_paths(data, held_out, stage.sources)
    cfg = copy.deepcopy(
        _composed(
            (
                "experiment=prettier_edsr_smoke",
                "model=edsr",
                f"data.train=[{','.join(sources)}]",
                "data.val=[mni152]",
                "data.test=[mni152]",
                f"+data.exclude=[{excluded}]",
                "+data.isotropic_mm=1.0",
                "data.axes=[0,1,2]",
                f"data.hr_patch={probe.hr_patch}",
                f"data.batch_size={probe.batch_size}",
                "data.patches_per_epoch=10000000",
                f"data.val_patches={probe.batch_size}",
                f"seed={seed}",
            )
        )
    )
    OmegaConf.set_struct(cfg, False)
    if probe.family == "rrdb_x4plus":
        net: dict[str, Any] = {"_target_": "mrisr.nets.rrdbnet.RRDBNet"}  # the x4plus architecture (defaults)
        cfg.model.pretrained = "realesrgan_x4plus"
    elif probe.family == "edsr":
        net = {
            "_target_": "mrisr.nets.edsr.EDSR",
            "in_channels": 3,
            "out_channels": 3,
            "n_feats": probe.n_feats,
            "n_resblocks": probe.n_resblocks,
            "res_scale": probe.res_scale,
            "upscale": 4,
        }
    else:
        raise ValueError(f"unknown family {probe.family!r}")
    if probe.skip:
        net = {"_target_": "mrisr.nets.skip.InterpolationSkip", "net": net, "scale": 4, "mode": probe.skip_mode}
    cfg.model.net = net
    cfg.model.loss = loss_config(probe.loss)
    cfg.model.optimizer.lr = stage.lr if stage.lr is not None else probe.lr
    cfg.model.net_range = probe.net_range
    if probe.schedule == "constant":
        cfg.model.scheduler = None
    elif probe.schedule == "cosine":
        # Cosine decay to 0 over the stage (T_max filled with the stage's steps by BaseSystem), stepped per step.
        cfg.model.scheduler = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True}
        cfg.model.scheduler_interval = "step"
    else:
        raise ValueError(f"unknown schedule {probe.schedule!r}")
    if stage.train_degradation is not None:
        degradation = copy.deepcopy(_composed((f"degradation={stage.train_degradation}",)).degradation)
        cfg.data.train_degradation = degradation
    for key, value in probe.extra.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def held_out(data: Path, name: str, axis: int = 2) -> HeldOutCase:
    """The held-out case of ``name``: 1 mm HR (cubic B-spline when resampled), prettier LR, mask."""
    file, rule = VOLUMES[name]
    hr = resample_isotropic(load_volume(data / "brain" / file), 1.0)
    degradation = instantiate(compose("train", ["degradation=prettier"]).degradation).with_axis(axis)
    return held_out_case(name, hr, degradation, rule, seed=0)


# ---------------------------------------------------------------- runs
FIELDS = [
    "probe",
    "stage",
    "case",
    "step",
    "train_s",
    "eval_s",
    "loss",
    "psnr_mask",
    "ssim_mask",
    "d_psnr",
    "d_ssim",
    "threads",
    "seed",
    "net",
    "skip",
    "loss_kind",
    "hr_patch",
    "batch",
    "lr",
    "schedule",
    "net_range",
    "stages",
    "params",
]


class Table:
    """Rows of a CSV file, rewritten atomically after every addition."""

    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        self.path, self.fields = path, list(fields)
        self.rows: list[dict[str, Any]] = list(csv.DictReader(path.open())) if path.exists() else []

    def add(self, row: Mapping[str, Any]) -> None:
        self.rows.append({k: row.get(k) for k in self.fields})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_rows_atomic(self.rows, self.path, self.fields)


def _round(value: Any, digits: int = 4) -> Any:
    return round(float(value), digits) if isinstance(value, float) else value


def run_probe(
    probe: Probe, case: HeldOutCase, cubic: Mapping[str, float], table: Table, data: Path, seed: int, threads: int
) -> None:
    """Train every stage of ``probe``, scoring ``case`` every ``eval_every`` steps; rows go to ``table``."""
    described = probe.describe()
    described["loss_kind"] = described.pop("loss")
    offset_steps, offset_s = 0, 0.0
    state: dict[str, torch.Tensor] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for index, stage in enumerate(probe.stages):
            cfg = build_config(probe, stage, data, case.name, seed)
            if state is not None:
                weights = Path(tmp) / "stage.pt"
                torch.save(state, weights)
                cfg.model.pretrained = str(weights)
            steps = [s - offset_steps for s in probe.eval_steps if offset_steps < s <= offset_steps + stage.steps]
            steps = [0, *steps] if index == 0 else steps
            n_params = sum(p.numel() for p in instantiate(cfg.model.net).parameters())

            def on_row(row: Mapping[str, Any], index: int = index, n_params: int = n_params) -> None:
                out = {
                    "probe": probe.name,
                    "stage": index,
                    **{k: _round(v) for k, v in row.items()},
                    "d_psnr": round(row["psnr_mask"] - cubic["psnr_mask"], 4),
                    "d_ssim": round(row["ssim_mask"] - cubic["ssim_mask"], 4),
                    "threads": threads,
                    "seed": seed,
                    "params": n_params,
                    **described,
                }
                table.add(out)
                print(
                    f"{probe.name} stage {index} step {out['step']}: {out['psnr_mask']:.3f} dB ({out['d_psnr']:+.3f}), "
                    f"SSIM {out['ssim_mask']:.4f} ({out['d_ssim']:+.4f}), train {out['train_s']} s, "
                    f"eval {out['eval_s']} s, loss {out['loss']}",
                    flush=True,
                )

            curve = LearningCurve([case], steps, on_row, step_offset=offset_steps, time_offset_s=offset_s)
            trained = train_model(cfg, Path(tmp) / f"stage{index}", stage.steps, seed, callbacks=[curve])
            system, done = trained.model, trained.steps
            if done != stage.steps:
                raise RuntimeError(f"{probe.name}: stage {index} stopped after {done} of {stage.steps} steps")
            state = copy.deepcopy(system.net.state_dict())
            offset_steps += stage.steps
            offset_s += curve.train_seconds


class _StepTimer(L.Callback):
    """Seconds per training batch (data loading included), after ``warmup`` batches."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._start = warmup, [], 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step > self.warmup:
            self.times.append(time.perf_counter() - self._start)


def run_timing(probe: Probe, table: Table, data: Path, held_name: str, seed: int, threads: int, steps: int) -> None:
    """s/step of each stage of ``probe`` at ``threads`` threads: median and minimum over ``steps`` batches."""
    torch.set_num_threads(threads)
    for index, stage in enumerate(probe.stages):
        cfg = build_config(probe, replace(stage, steps=steps + 3), data, held_name, seed)
        timer = _StepTimer(3)
        with tempfile.TemporaryDirectory() as tmp:
            train_model(cfg, Path(tmp), steps + 3, seed, callbacks=[timer])
        times = sorted(timer.times)
        row = {
            "probe": probe.name,
            "stage": index,
            "threads": threads,
            "steps": len(times),
            "s_per_step_median": round(times[len(times) // 2], 4),
            "s_per_step_min": round(times[0], 4),
            "load_average": round(os.getloadavg()[0], 2),
            **probe.describe(),
        }
        table.add(row)
        print(row, flush=True)


TIMING_FIELDS = [
    *("probe", "stage", "threads", "steps", "s_per_step_median", "s_per_step_min", "load_average"),
    *("net", "skip", "loss", "hr_patch", "batch", "lr", "schedule", "net_range", "stages"),
]


def plot_curves(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Masked PSNR and SSIM gain over cubic vs optimiser step, one line per probe and held-out case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrisr.core.atomic import save_figure_atomic

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    curves: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for row in rows:
        if row["probe"] != "cubic":
            curves.setdefault((row["probe"], row["case"]), []).append(
                (int(row["step"]), float(row["d_psnr"]), float(row["d_ssim"]))
            )
    colours = plt.get_cmap("tab20").colors  # one colour per curve: more curves than the default cycle's ten
    for index, ((probe, case), points) in enumerate(sorted(curves.items())):
        points.sort()
        steps = [p[0] for p in points]
        style = {"color": colours[index % len(colours)], "linestyle": "--" if case != "flair" else "-"}
        for axis, column in zip(axes, (1, 2), strict=True):
            axis.plot(steps, [p[column] for p in points], marker="o", markersize=3, label=f"{probe} ({case})", **style)
    for axis, name in zip(axes, ("PSNR gain over cubic (dB, brain mask)", "SSIM gain over cubic"), strict=True):
        axis.axhline(0.0, color="k", linewidth=0.8)
        axis.set_xlabel("optimiser step")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    # A net without the skip starts far below (an all-zero output): off scale, so the learned gains stay readable.
    axes[0].set_ylim(bottom=-1.0)
    axes[1].set_ylim(bottom=-0.05)
    axes[1].legend(fontsize=6, ncol=2)
    figure.suptitle("PRETTIER learning curves, volume held out from training (5 mm SLR slices every 6 mm)")
    save_figure_atomic(figure, path)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--probes", nargs="+", default=list(PROBES), choices=list(PROBES))
    parser.add_argument("--held-out", default="flair", choices=list(VOLUMES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", action="store_true", help="only redraw the curves' plot from the CSV")
    parser.add_argument("--timing", action="store_true", help="s/step at 1 and 2 threads instead of curves")
    parser.add_argument("--timing-steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=RESULTS / "prettier_probe_curves.csv")
    parser.add_argument("--timing-out", type=Path, default=RESULTS / "prettier_probe_timing.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.plot:
        print(plot_curves(Table(args.out, FIELDS).rows, args.out.with_suffix(".png")))
        return
    if args.timing:
        table = Table(args.timing_out, TIMING_FIELDS)
        for name in args.probes:
            for threads in (1, 2):
                run_timing(PROBES[name], table, args.data, args.held_out, args.seed, threads, args.timing_steps)
        return
    table = Table(args.out, FIELDS)
    case = held_out(args.data, args.held_out)
    cubic_rows = [r for r in table.rows if r["probe"] == "cubic" and r["case"] == case.name]
    if cubic_rows:
        cubic = {k: float(cubic_rows[0][k]) for k in ("psnr_mask", "ssim_mask")}
    else:
        cubic = score_held_out("cubic", case)
        table.add({"probe": "cubic", "case": case.name, "step": 0, "d_psnr": 0.0, "d_ssim": 0.0,
                   **{k: round(v, 4) for k, v in cubic.items()}})  # fmt: skip
    print(f"{case.name} cubic: {cubic}", flush=True)
    for name in args.probes:
        probe = PROBES[name]
        done = {
            (r["probe"], int(r["step"]))
            for r in table.rows
            if r["case"] == case.name and r["seed"] == str(args.seed) and r["threads"] == str(args.threads)
        }
        if (name, probe.total_steps) in done:
            print(f"{name}: complete in {args.out.name}, skipped", flush=True)
            continue
        # Drop the rows of an interrupted run of this probe, then rerun it from the start.
        table.rows = [r for r in table.rows if not (r["probe"] == name and r["case"] == case.name)]
        run_probe(probe, case, cubic, table, args.data, args.seed, args.threads)


if __name__ == "__main__":
    main()
