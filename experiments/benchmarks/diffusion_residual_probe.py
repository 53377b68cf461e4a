"""Do the few-step diffusion formulations learn to restore? Training curves of small CPU variants.

Each variant trains ``model=palette_tiny``'s U-Net (two levels, 8/16 channels, zero-initialised) with
:class:`~mrisr.systems.diffusion.DiffusionSR`, mostly on its residual formulation (x_t = (1 − t)·HR + t·LR,
t ~ U(0, 1), σ = 0), with 32² crops of the training spines errsm_20/22 degraded along the I–S axis by
``--degradation``: ``graf_table2_row8`` (``experiment=palette_smoke``'s stack, drawn per crop: slice profile, gap,
noise, motion, blur, bias field and a brightness/contrast jitter of the LR crop by up to ±20 %, which a model
can only partly undo from one crop) or ``thick_slice`` (deterministic 4 mm SLR slices, cubic back onto the 1 mm
grid, no noise: a restoration a model can learn). Every ``--eval-every`` optimiser steps three sets of weights are
scored on fixed 48² validation crops of errsm_30: the live network, its EMA with warm-up (the default, decay 0.999)
and a plain EMA without warm-up (decay 0.999). Per weights:

- ``loss``: the training objective with fixed noise and times;
- ``x0_ratio_t<a>-<b>``: MSE of the network's clean-image estimate x̂ (DDPM: implied by ε̂ and clipped to [−1, 1])
  against HR divided by that of the trivial x̂ (DDPM: the LR crop; residual: the net's input x_t, whose MSE is
  t²·MSE(LR, HR); ratios recorded before that change divided by MSE(LR, HR)), in four equal bins of t (residual:
  t ∈ [0, 1]; DDPM: the 1000 timesteps; :meth:`~mrisr.systems.diffusion.DiffusionSR.time_bin_errors`; < 1 = better
  than the trivial x̂); ``eps_ratio_t<a>-<b>``
  (DDPM): MSE(ε̂, ε) / MSE(0, ε) in the same bins;
- ``psnr_<n>``: PSNR (dB, intensities in [0, 1]) of the n-step sample (n = 1, 2, 4; residual: Euler, DDPM: DDIM
  with trailing timesteps from the same noise map), beside ``psnr_input``, the PSNR of the LR crop itself, and for
  DDPM ``psnr_4_leading``, DDIM-4 with the leading timesteps 750, 500, 250, 0.

Variants (:data:`VARIANTS`): ``conditioned`` gives the residual network the LR plane as a second input channel (the
formulation before the fix: its objective can be met by inverting the path, see :mod:`mrisr.diffusion.residual`);
``indi`` is the default now (x_t and t only); ``indi_velocity`` regresses the velocity LR − HR instead of HR;
``regression`` trains the ``indi`` network at t = 1 only, i.e. plain supervised regression of HR from LR with the same
network (the reference for what the 1-step sample can reach); ``ddpm`` is the DDPM ε-formulation of Graf et al.
(condition concatenated, as there).

The training crops are drawn once per ``--seed`` and cached (``--pool``); every variant sees the same batches.
Rows are appended to ``results/diffusion_residual_probe.csv`` (one row per setting, variant, step and weights; a
rerun replaces its setting and variant). Example (6–10 minutes per variant on one loaded CPU core):
``OMP_NUM_THREADS=1 python experiments/benchmarks/diffusion_residual_probe.py --degradation thick_slice``.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from mrisr.core.atomic import write_rows_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.diffusion.ema import EMA
from mrisr.diffusion.residual import sample_residual
from mrisr.diffusion.sampling import from_signed, sample, to_signed
from mrisr.diffusion.schedulers import DDIMSampler
from mrisr.systems.diffusion import DiffusionSR, ResidualSampler
from mrisr.utils.config import compose

REPO = Path(__file__).resolve().parents[2]

#: Variant name → formulation options of :class:`DiffusionSR`.
VARIANTS: dict[str, dict[str, Any]] = {
    "conditioned": {"formulation": "residual", "residual_condition": True, "residual_prediction": "sample"},
    "indi": {"formulation": "residual", "residual_condition": False, "residual_prediction": "sample"},
    "indi_velocity": {"formulation": "residual", "residual_condition": False, "residual_prediction": "velocity"},
    "regression": {"formulation": "residual", "residual_condition": False, "residual_prediction": "sample"},
    "ddpm": {"formulation": "ddpm"},
}
#: Variants trained at one fixed time t instead of t ~ U(0, 1).
FIXED_T = {"regression": 1.0}
SAMPLE_STEPS = (1, 2, 4)
BINS = {
    "residual": ("t0.00-0.25", "t0.25-0.50", "t0.50-0.75", "t0.75-1.00"),
    "ddpm": ("t0-250", "t250-500", "t500-750", "t750-1000"),
}
FIELDS = [
    "setting",
    "variant",
    "step",
    "seconds",
    "weights",
    "loss",
    *(f"x0_ratio_{b}" for b in BINS["residual"]),
    *(f"{q}_ratio_{b}" for q in ("x0", "eps") for b in BINS["ddpm"]),
    "psnr_input",
    *(f"psnr_{n}" for n in SAMPLE_STEPS),
    "psnr_4_leading",
]


def patch_pool(
    data: Path, degradation: str, seed: int, train_patches: int, val_patches: int, cache: Path
) -> dict[str, torch.Tensor]:
    """Training crops (32²) and validation crops (48²) of ``experiment=palette_smoke``'s spines degraded by the
    ``degradation`` preset along axis 1, cached in ``cache``.

    Returns:
        ``hr``, ``lr`` (train, (N, 1, 32, 32)) and ``val_hr``, ``val_lr`` ((M, 1, 48, 48)), intensities normalised by
        the data module (about [0, 1]).
    """
    if cache.exists():
        return torch.load(cache)
    stacked: dict[str, torch.Tensor] = {}
    for split, size, count in (("train", 32, train_patches), ("val", 48, val_patches)):
        overrides = [
            "experiment=palette_smoke",
            f"degradation={degradation}",
            f"paths.data={data}",
            f"seed={seed}",
            f"data.patch_size={size}",
            f"data.val_patches={val_patches}",
            f"data.patches_per_epoch={train_patches}",
        ]
        module = instantiate(compose("train", overrides).data)
        module.setup("fit")
        dataset = module.train_set if split == "train" else module.val_set
        items = [dataset[i] for i in range(count)]
        prefix = "" if split == "train" else "val_"
        for key in ("hr", "lr"):
            stacked[prefix + key] = torch.stack([torch.as_tensor(item[key]) for item in items]).float()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(stacked, cache)
    return stacked


def psnr(x: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR (dB) of [0, 1] images."""
    return float(-10 * torch.log10(torch.mean((x - reference) ** 2).clamp_min(1e-12)))


def evaluate(system: DiffusionSR, net: torch.nn.Module, val: dict[str, torch.Tensor]) -> dict[str, float]:
    """Loss, per-bin error ratios and sample PSNRs of ``net`` on the validation crops (seeded)."""
    hr = val["hr"].clamp(0, 1)
    row: dict[str, float] = {"psnr_input": round(psnr(val["lr"].clamp(0, 1), hr), 4)}
    with torch.no_grad():
        row["loss"] = float(system.objective(net, val, torch.Generator().manual_seed(0)))
        errors = system.time_bin_errors(net, val, torch.Generator().manual_seed(0))
    formulation = system.formulation
    for quantity, pairs in errors.items():
        for name, (model, trivial) in zip(BINS[formulation], pairs, strict=True):
            row[f"{quantity}_ratio_{name}"] = round(model / trivial, 5)
    condition = to_signed(val["lr"])
    noise = system.plane_noise(condition.shape[2:], torch.Generator().manual_seed(0))
    config = system.train_scheduler.config
    for steps in SAMPLE_STEPS:
        if formulation == "residual":
            out = sample_residual(
                net,
                condition,
                steps,
                prediction=system.residual_prediction,
                conditioned=system.residual_condition,
            )
        else:
            out = sample(net, condition, DDIMSampler(steps=steps), noise, config)
        row[f"psnr_{steps}"] = round(psnr(from_signed(out), hr), 4)
    if formulation == "ddpm":
        out = sample(net, condition, DDIMSampler(steps=4, timestep_spacing="leading"), noise, config)
        row["psnr_4_leading"] = round(psnr(from_signed(out), hr), 4)
    return row


def train_variant(
    name: str,
    setting: str,
    pool: dict[str, torch.Tensor],
    steps: int,
    eval_every: int,
    batch: int,
    lr: float,
    seed: int,
) -> list[dict[str, object]]:
    """Train one variant; rows of the live net, the warmed-up EMA and a plain EMA every ``eval_every`` steps."""
    options = VARIANTS[name]
    net_cfg = compose("train", ["experiment=palette_smoke"]).model.net
    torch.manual_seed(seed)
    residual = options["formulation"] == "residual"
    net = instantiate(net_cfg, in_channels=1 if residual and not options["residual_condition"] else 2)
    sampler = ResidualSampler(2) if residual else DDIMSampler(steps=2)
    system = DiffusionSR(net, sampler=sampler, progress=False, **options)
    plain = EMA(system.net, decay=0.999, warmup=False)
    optimiser = torch.optim.Adam(system.net.parameters(), lr=lr)
    val = {"hr": pool["val_hr"], "lr": pool["val_lr"]}
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, object]] = []
    started = time.perf_counter()
    seconds = 0.0

    def score(step: int) -> None:
        for weights, module in (("live", system.net), ("ema", system.ema.module), ("ema_plain", plain.module)):
            rows.append(
                {"setting": setting, "variant": name, "step": step, "seconds": round(seconds, 1), "weights": weights}
            )
            rows[-1].update(evaluate(system, module, val))
        live, ema = rows[-3], rows[-2]
        ratios = [live[f"x0_ratio_{b}"] for b in BINS[system.formulation]]
        print(
            f"{setting} {name:>14} step {step:5d} {seconds:6.0f} s  loss {live['loss']:.5f}"
            f"  input {live['psnr_input']:.2f} dB"
            f"  live 1/2/4 steps {live['psnr_1']:.2f}/{live['psnr_2']:.2f}/{live['psnr_4']:.2f}"
            f"  ema {ema['psnr_1']:.2f}/{ema['psnr_2']:.2f}  plain ema {rows[-1]['psnr_2']:.2f}  x̂ ratios {ratios}",
            flush=True,
        )

    score(0)
    for step in range(1, steps + 1):
        index = torch.randint(0, pool["hr"].shape[0], (batch,), generator=generator)
        optimiser.zero_grad()
        batch_t = None if name not in FIXED_T else torch.full((batch,), FIXED_T[name])
        pair = system.training_pair({"hr": pool["hr"][index], "lr": pool["lr"][index]}, t=batch_t)
        loss = system.criterion(system.net(pair["x_t"], pair["condition"], pair["timesteps"]).float(), pair["target"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(system.net.parameters(), 1.0)
        optimiser.step()
        system.ema.update(system.net)
        plain.update(system.net)
        if step % eval_every == 0 or step == steps:
            seconds = time.perf_counter() - started
            score(step)
            started = time.perf_counter() - seconds  # scoring time is not training time
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--degradation", default="graf_table2_row8", choices=["graf_table2_row8", "thick_slice"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps per variant")
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--train-patches", type=int, default=8000)
    parser.add_argument("--val-patches", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", type=Path, default=REPO / "runs" / "diffusion_residual_probe" / "pool.pt")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "diffusion_residual_probe.csv")
    args = parser.parse_args()
    if args.steps < 1 or args.eval_every < 1:
        raise MrisrInputError(None, "--steps and --eval-every must be >= 1", "pass positive numbers")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    name = f"{args.pool.stem}_{args.degradation}_seed{args.seed}_{args.train_patches}_{args.val_patches}.pt"
    pool = patch_pool(
        args.data, args.degradation, args.seed, args.train_patches, args.val_patches, args.pool.with_name(name)
    )
    done: list[dict[str, object]] = []
    if args.out.exists():
        with args.out.open(newline="") as handle:
            done = list(csv.DictReader(handle))
    for variant in args.variants:
        done = [r for r in done if (r["setting"], r["variant"]) != (args.degradation, variant)]  # a rerun replaces
        rows = train_variant(
            variant, args.degradation, pool, args.steps, args.eval_every, args.batch, args.lr, args.seed
        )
        done += rows
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_rows_atomic(done, args.out, FIELDS)


if __name__ == "__main__":
    main()
