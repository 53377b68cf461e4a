"""Learning curves behind the CPU-scale diffusion recipes (``experiment=palette_cpu``, ``palette_residual_cpu``).

Every probe is one training run through mrisr's training path, :func:`mrisr.app.train.train` on a config composed
from ``conf/`` (the recipe's ``experiment=…`` plus the probe's overrides), step-bounded (``trainer.max_steps``,
reproducible under the seed), validated every ``val_every`` optimiser steps on the fixed validation crops of
``errsm_30`` (the Graf full stack, row 8, along I–S). The training spines are ``errsm_20`` and ``errsm_22``; the test
subjects ``errsm_11/18/21`` are never loaded (``test=false``). A :class:`CurveRecorder` callback writes one row per
validation into the run folder (``curve.csv``):

* ``psnr`` / ``psnr_input``: PSNR (dB, images in [0, 1]) of the EMA samples with the recipe's own sampler and of the
  interpolated LR crops against HR (``val/psnr``, ``val/psnr_input`` of :class:`~mrisr.systems.diffusion.DiffusionSR`;
  ``val/psnr`` selects the best checkpoint), ``gain`` = their difference;
* ``psnr_<sampler><steps>``: the same crops sampled with other samplers (e.g. ``psnr_residual2``, ``psnr_ddim20``);
* ``loss``: the validation loss; ``x0_ratio_<bin>`` / ``eps_ratio_<bin>``: the network's clean-image / noise MSE in
  four noise-level bins relative to the trivial predictor (docs/models.md §3.4; < 1 = better than trivial; for the
  residual family the trivial x̂ is the net's input x_t, rows recorded before that change used the LR plane);
* ``train_cpu_s`` / ``train_wall_s``: CPU and wall seconds spent training up to that step, validation excluded
  (``val_cpu_s``, ``val_wall_s``: cumulative validation time). Runs use one thread (``num_threads=1``), so the CPU
  time is what the run costs one idle core; the wall time also holds the waits of a machine shared with other jobs.
  A budget of B minutes on 2 cores is met by any run whose one-thread CPU time (training + validation) is ≤ B
  minutes (the second core is not even counted).

Rows of every probe go to ``results/diffusion_cpu_scale_curves.csv`` (probe, family, overrides, …) and the plots to
``results/diffusion_cpu_scale_residual.png`` and ``…_ddpm.png``. Resumable: a probe whose ``curve.csv`` reaches its
last step is skipped; an interrupted one continues from its ``checkpoints/last.ckpt`` (written at every validation),
its time counters restored from the checkpoint. The recipe probes (``residual_recipe``, ``ddpm_recipe``) are exactly
``python train.py experiment=palette_residual_cpu`` / ``palette_cpu`` (plus ``test=false``); their best checkpoints
are the shipped ``zoo/palette_residual_spine`` and ``zoo/palette_spine``.

Example: ``OMP_NUM_THREADS=1 PYTHONPATH=src python experiments/benchmarks/diffusion_cpu_scale.py --probes
res_base res_sample``; ``--plot`` only merges the run folders into the CSV and redraws.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import open_dict

from mrisr.core.atomic import save_figure_atomic, write_rows_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.diffusion.sampling import from_signed, to_signed
from mrisr.diffusion.schedulers import DDIMSampler, DPMSolverSampler, UniPCSampler

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results"

#: Sampler names of the ``psnr_<name><steps>`` columns → config classes.
SAMPLER_KINDS = {"ddim": DDIMSampler, "dpmpp": DPMSolverSampler, "unipc": UniPCSampler}
#: Extra validation samplers per family (the recipe's own sampler is ``psnr``).
EXTRA_SAMPLERS = {
    "residual": ("residual:1", "residual:2", "residual:4"),
    "ddpm": ("ddim:1", "ddim:4", "ddim:20"),
}
EXPERIMENTS = {"residual": "palette_residual_cpu", "ddpm": "palette_cpu"}


@dataclass(frozen=True)
class Probe:
    """One learning-curve run: a recipe (family) with overrides.

    Attributes:
        name: run folder name and ``probe`` column.
        family: ``"residual"`` (``experiment=palette_residual_cpu``) or ``"ddpm"`` (``experiment=palette_cpu``).
        overrides: Hydra overrides on top of the recipe.
        steps: optimiser steps (``None``: the recipe's ``trainer.max_steps``).
        val_every: validation interval (optimiser steps).
        notes: what the probe varies.
    """

    name: str
    family: str
    overrides: tuple[str, ...] = ()
    steps: int | None = 1000
    val_every: int = 250
    notes: str = ""


def _probes() -> dict[str, Probe]:
    probes = [
        # Residual (InDI) formulation: the recipe's net, crops, batch and lr, 1,000 steps unless stated.
        Probe(
            "res_base",
            "residual",
            ("model.residual_time_power=1",),
            notes="velocity prediction, uniform t, lr 1e-3, 64² crops, batch 8",
        ),
        Probe("res_sample", "residual", ("model.residual_prediction=sample",), notes="x̂-prediction"),
        Probe("res_lr3e-4", "residual", ("model.optimizer.lr=3e-4",), notes="lr 3e-4"),
        Probe(
            "res_crop48",
            "residual",
            ("data.patch_size=48",),
            steps=1500,
            val_every=250,
            notes="48² crops (≈ the CPU time of 1,000 steps at 64²)",
        ),
        Probe(
            "res_wide_lr3e-4",
            "residual",
            ("model.net.block_out_channels=[32,64,128]", "model.optimizer.lr=3e-4"),
            notes="the 32/64/128 U-Net and lr of an earlier probe that beat its input",
        ),
        Probe(
            "residual_recipe",
            "residual",
            steps=None,
            val_every=500,
            notes="experiment=palette_residual_cpu (t density 3t²)",
        ),
        # DDPM formulation.
        Probe("ddpm_eps", "ddpm", ("model.prediction_type=epsilon",), notes="ε-prediction (Graf)"),
        Probe("ddpm_v", "ddpm", ("model.prediction_type=v_prediction",), notes="v-prediction"),
        Probe("ddpm_x0", "ddpm", ("model.prediction_type=sample",), notes="x₀-prediction"),
        Probe(
            "ddpm_image",
            "ddpm",
            ("model.ddpm_target=image",),
            steps=4000,
            val_every=500,
            notes="experiment=palette_cpu diffusing the HR plane itself (Graf) instead of the residual",
        ),
        Probe(
            "ddpm_scale1",
            "ddpm",
            ("model.ddpm_residual_scale=1",),
            steps=3500,
            val_every=500,
            notes="residual target not scaled (std ≈ 0.17 in [−1, 1])",
        ),
        Probe(
            "ddpm_scale3",
            "ddpm",
            steps=1000,
            val_every=500,
            notes="the recipe's first 1,000 steps (residual × 3); the run continued as ddpm_recipe",
        ),
        Probe("ddpm_recipe", "ddpm", steps=None, val_every=500, notes="experiment=palette_cpu (residual target × 3)"),
    ]
    return {p.name: p for p in probes}


PROBES = _probes()


def make_sampler(spec: str) -> Any:
    """``"ddim:20"`` → ``DDIMSampler(steps=20)``; ``"residual:2"`` → ``ResidualSampler(steps=2)``."""
    from mrisr.systems.diffusion import ResidualSampler

    kind, _, steps = spec.partition(":")
    if kind == "residual":
        return ResidualSampler(steps=int(steps))
    if kind not in SAMPLER_KINDS or not steps.isdigit():
        raise MrisrInputError(None, f"sampler spec {spec!r} is not <kind>:<steps>", f"kinds: residual, {SAMPLER_KINDS}")
    return SAMPLER_KINDS[kind](steps=int(steps))


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file (empty list when it does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(rows: Sequence[Mapping[str, Any]], path: Path, first: Sequence[str] = ()) -> None:
    """Write ``rows`` atomically; columns: ``first``, then every other key in order of appearance."""
    fields = [f for f in first if any(f in r for r in rows)]
    for row in rows:
        fields += [k for k in row if k not in fields]
    write_rows_atomic(rows, path, fields)


class CurveRecorder(L.Callback):
    """Writes one learning-curve row per validation (module docstring) into ``path``.

    Args:
        path: the run's ``curve.csv``.
        samplers: extra sampler specs (:func:`make_sampler`) whose PSNR on the validation crops is added to each row
            as ``psnr_<kind><steps>``.
    """

    def __init__(self, path: str, samplers: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.samplers = [str(s) for s in samplers]
        self.clock = {"train_wall_s": 0.0, "train_cpu_s": 0.0, "val_wall_s": 0.0, "val_cpu_s": 0.0}
        self._mark: tuple[float, float] | None = None
        self._val_mark: tuple[float, float] | None = None

    def state_dict(self) -> dict[str, float]:
        return dict(self.clock)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.clock.update({k: float(v) for k, v in state_dict.items() if k in self.clock})

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def _add(self, kind: str, mark: tuple[float, float]) -> tuple[float, float]:
        now = self._now()
        self.clock[f"{kind}_wall_s"] += now[0] - mark[0]
        self.clock[f"{kind}_cpu_s"] += now[1] - mark[1]
        return now

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark = self._now()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._mark is None:
            return
        self._val_mark = self._add("train", self._mark)

    @torch.no_grad()
    def sampler_psnr(self, trainer: L.Trainer, pl_module: Any) -> dict[str, float]:
        """PSNR (dB) of the EMA samples of every extra sampler on the validation crops (noise seeded per batch)."""
        out: dict[str, float] = {}
        original = pl_module.sampler
        try:
            for spec in self.samplers:
                pl_module.sampler = make_sampler(spec)
                squared, count = 0.0, 0
                for index, batch in enumerate(trainer.val_dataloaders):
                    generator = torch.Generator().manual_seed(index)
                    condition = to_signed(batch["lr"].float())
                    noise = pl_module.plane_noise(condition.shape[2:], generator)
                    pred = from_signed(pl_module.sample_planes(condition, noise, generator)).cpu()
                    hr = batch["hr"].float().clamp(0, 1)
                    squared += float(torch.mean((pred - hr) ** 2)) * hr.shape[0]
                    count += hr.shape[0]
                kind, _, steps = spec.partition(":")
                out[f"psnr_{kind}{steps}"] = -10 * math.log10(max(squared / count, 1e-12))
        finally:
            pl_module.sampler = original
        return out

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._val_mark is None:
            return
        extra = self.sampler_psnr(trainer, pl_module)
        self._add("val", self._val_mark)
        metrics = {
            k.removeprefix("val/"): round(float(v), 6)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("val/")
        }
        row: dict[str, Any] = {"step": int(trainer.global_step), **{k: round(v, 2) for k, v in self.clock.items()}}
        row.update(metrics)
        row.update({k: round(v, 4) for k, v in extra.items()})
        if "psnr" in row and "psnr_input" in row:
            row["gain"] = round(row["psnr"] - row["psnr_input"], 4)
        rows = [r for r in read_rows(self.path) if int(r["step"]) != row["step"]]
        write_rows([*rows, row], self.path, ("step",))
        self._mark = self._now()


def probe_overrides(probe: Probe, run: Path, data: Path | None) -> list[str]:
    """Hydra overrides of a probe's run: the recipe, the probe's changes, its folder, no test stage."""
    overrides = [
        f"experiment={EXPERIMENTS[probe.family]}",
        *probe.overrides,
        f"paths.output_dir={run}",
        "test=false",
        "print_config=false",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        f"trainer.val_check_interval={probe.val_every}",
    ]
    if probe.steps is not None:
        overrides.append(f"trainer.max_steps={probe.steps}")
    if data is not None:
        overrides.append(f"paths.data={data}")
    return overrides


def run_probe(probe: Probe, runs_dir: Path, data: Path | None) -> Path:
    """Train ``probe`` (or continue it) through :func:`mrisr.app.train.train`; returns its ``curve.csv``."""
    from mrisr.app.train import train
    from mrisr.utils.config import compose

    run = runs_dir / probe.name
    curve = run / "curve.csv"
    cfg = compose("train", probe_overrides(probe, run, data))
    last_step = int(cfg.trainer.max_steps)
    if any(int(r["step"]) >= last_step for r in read_rows(curve)):
        return curve
    last = run / "checkpoints" / "last.ckpt"
    with open_dict(cfg):
        # One epoch per validation interval, so that every checkpoint ends an epoch and a resumed run continues
        # exactly; crops are drawn by their global index, so the data do not depend on the epoch length.
        cfg.data.patches_per_epoch = probe.val_every * int(cfg.data.batch_size)
        cfg.callbacks.curve = {
            "_target_": f"{Path(__file__).stem}.CurveRecorder",
            "path": str(curve),
            "samplers": list(EXTRA_SAMPLERS[probe.family]),
        }
        if last.is_file():
            cfg.ckpt_path = str(last)
    started = time.perf_counter()
    result = train(cfg)
    print(
        f"{probe.name}: {result.global_step} steps in {time.perf_counter() - started:.0f} s; best "
        f"{result.best_checkpoint} ({result.metrics.get('val/psnr', float('nan')):.3f} dB last)",
        flush=True,
    )
    return curve


#: Leading columns of the merged CSV.
FIRST = ("probe", "family", "overrides", "step", "train_cpu_s", "train_wall_s", "val_cpu_s", "val_wall_s",
         "psnr", "psnr_input", "gain", "loss")  # fmt: skip


def merge(runs_dir: Path, probes: Iterable[Probe], out: Path) -> list[dict[str, Any]]:
    """Every probe's ``curve.csv`` as rows of one table (probes without a curve keep the rows already in ``out``)."""
    names = {p.name for p in probes}
    kept = [r for r in read_rows(out) if r["probe"] not in names or not (runs_dir / r["probe"] / "curve.csv").is_file()]
    rows: list[dict[str, Any]] = list(kept)
    for probe in probes:
        for row in read_rows(runs_dir / probe.name / "curve.csv"):
            rows.append({"probe": probe.name, "family": probe.family, "overrides": " ".join(probe.overrides), **row})
    order = list(PROBES)
    rows.sort(key=lambda r: (order.index(r["probe"]) if r["probe"] in order else len(order), int(r["step"])))
    write_rows(rows, out, FIRST)
    return rows


def plot(csv_path: Path) -> list[Path]:
    """Per family: validation PSNR gain against steps and CPU minutes, the clean-image error ratios per noise bin
    (and the ε ratios for the DDPM) against steps, and the PSNR of other samplers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(csv_path)
    written = []
    for family, frame in table.groupby("family"):
        fig, axes = plt.subplots(2, 2, figsize=(11, 8))
        for index, (probe, group) in enumerate(frame.groupby("probe", sort=False)):
            colour = f"C{index % 10}"
            axes[0, 0].plot(group.step, group.gain, "o-", ms=3, color=colour, label=probe)
            axes[0, 1].plot(group.train_cpu_s / 60, group.gain, "o-", ms=3, color=colour, label=probe)
            ratios = sorted(c for c in group.columns if c.startswith("x0_mse_ratio_") and group[c].notna().any())
            if ratios:
                axes[1, 0].plot(group.step, group[ratios[-1]], "o-", ms=3, color=colour, label=f"{probe} {ratios[-1]}")
                axes[1, 0].plot(group.step, group[ratios[0]], "s--", ms=3, color=colour, alpha=0.6)
            extra = [c for c in group.columns if c.startswith("psnr_") and c != "psnr_input" and group[c].notna().any()]
            for k, column in enumerate(extra):
                axes[1, 1].plot(group.step, group[column] - group.psnr_input, ["o-", "s--", "^:", "v-."][k % 4],
                                ms=3, color=colour, label=f"{probe} {column}")  # fmt: skip
        axes[0, 0].set(xlabel="optimiser steps", ylabel="val PSNR − input PSNR (dB)", title="recipe sampler")
        axes[0, 1].set(xlabel="training CPU minutes (1 thread)", ylabel="val PSNR − input PSNR (dB)")
        axes[1, 0].set(xlabel="optimiser steps", ylabel="clean-image MSE / trivial", yscale="log",
                       title="highest-t bin (o) and lowest-t bin (s)")  # fmt: skip
        axes[1, 1].set(xlabel="optimiser steps", ylabel="val PSNR − input PSNR (dB)", title="other samplers")
        for ax in axes.flat:
            ax.grid(alpha=0.3)
            ax.axhline(1.0 if ax is axes[1, 0] else 0.0, color="k", lw=0.8, ls="--")
        axes[0, 0].legend(fontsize=7)
        axes[1, 1].legend(fontsize=6, ncol=2)
        fig.suptitle(f"CPU-scale {family} diffusion: validation crops of errsm_30, Graf full stack", fontsize=10)
        fig.tight_layout()
        path = csv_path.with_name(f"diffusion_cpu_scale_{family}.png")
        save_figure_atomic(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", nargs="+", default=list(PROBES), choices=list(PROBES))
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "diffusion_cpu_scale")
    parser.add_argument("--data", type=Path, default=None, help="data root (default: the config's paths.data)")
    parser.add_argument("--out", type=Path, default=RESULTS / "diffusion_cpu_scale_curves.csv")
    parser.add_argument("--plot", action="store_true", help="only merge the run folders and redraw")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if str(HERE) not in sys.path:  # the CurveRecorder is instantiated by its module name
        sys.path.insert(0, str(HERE))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    probes = [PROBES[name] for name in args.probes]
    for probe in [] if args.plot else probes:
        run_probe(probe, args.runs_dir, args.data)
        merge(args.runs_dir, probes, args.out)
        plot(args.out)
    merge(args.runs_dir, probes, args.out)
    plot(args.out)


if __name__ == "__main__":
    main()
