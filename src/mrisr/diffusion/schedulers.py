"""Noise schedules: the DDPM training scheduler, its training target, and few-step samplers built from it.

Training (docs/models.md §3.2, §3.4): a discrete DDPM (Ho et al., NeurIPS 2020) with a linear β schedule
1e-4 → 0.02 over 1000 steps, x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, and the network regresses ε (or v = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀,
Salimans & Ho 2022, or x₀ itself).

Sampling reuses the ε-model without retraining. Each sampler below is a small config object (Hydra ``_target_``,
``steps`` as a field) whose :meth:`build` makes a fresh diffusers scheduler from the *training* scheduler's config, so
the betas always match the trained model, and whose :meth:`step` calls that scheduler's update with the sampler's own
options:

- :class:`DDIMSampler` — DDIM (Song et al., ICLR 2021), Graf et al.'s 20-step sampler. Spacing is fixed to
  "leading" (timesteps k·⌊T/n⌋, i.e. [950, 900, …, 0] for n = 20) with ``set_alpha_to_one`` so the last step returns
  x̂₀. "linspace"/"trailing" are refused: ``DDIMScheduler.step`` computes the previous timestep as t − T//n, which
  disagrees with ``timesteps`` for those spacings (diffusers issue #12633).
- :class:`DPMSolverSampler` — DPM-Solver++ multistep (Lu et al. 2022), 10–20 steps.
- :class:`UniPCSampler` — UniPC predictor–corrector (Zhao et al., NeurIPS 2023), aimed at < 10 steps.

Multistep schedulers keep the previous model outputs as state, so :meth:`build` must be called once per sampling run
(:func:`mrisr.diffusion.sampling.sample` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from mrisr.core.errors import MrisrInputError

__all__ = [
    "DDIMSampler",
    "DPMSolverSampler",
    "Sampler",
    "UniPCSampler",
    "ddpm_scheduler",
    "diffusion_training_target",
]

PredictionType = Literal["epsilon", "v_prediction", "sample"]


def ddpm_scheduler(
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    prediction_type: PredictionType = "epsilon",
    beta_schedule: str = "linear",
    clip_sample: bool = True,
) -> DDPMScheduler:
    """Training scheduler of Graf et al. (docs/models.md §3.2).

    Args:
        num_train_timesteps: T, number of discrete noise levels (t ∈ {0, …, T − 1}).
        beta_start: β at t = 0.
        beta_end: β at t = T − 1.
        prediction_type: what the network regresses: "epsilon" (Graf), "v_prediction" or "sample".
        beta_schedule: diffusers β schedule name ("linear" for Graf).
        clip_sample: clamp x̂₀ to [−1, 1] during ancestral sampling (images live in [−1, 1]).

    Returns:
        ``DDPMScheduler`` with fixed-large posterior variance (β_t), as in the reference.
    """
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        variance_type="fixed_large",
        clip_sample=clip_sample,
    )


def diffusion_training_target(
    scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy input and regression target of one DDPM training step (docs/models.md §3.4).

    Args:
        scheduler: the training scheduler (its ``prediction_type`` chooses the target).
        x0: clean HR images in [−1, 1], (B, C, H, W).
        noise: ε ~ N(0, I), same shape as ``x0``.
        timesteps: integer t per sample, (B,), in [0, T − 1].

    Returns:
        ``(x_t, target)``: x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε and ε, v or x₀; the loss is MSE(net(x_t, c, t), target).

    Raises:
        MrisrInputError: mismatched shapes or out-of-range timesteps.
    """
    if noise.shape != x0.shape:
        raise MrisrInputError(None, f"noise {tuple(noise.shape)} differs from x0 {tuple(x0.shape)}", "draw ε like x0")
    steps = scheduler.config.num_train_timesteps
    if timesteps.shape != (x0.shape[0],) or int(timesteps.min()) < 0 or int(timesteps.max()) >= steps:
        raise MrisrInputError(
            None,
            f"timesteps must be (B,) = ({x0.shape[0]},) integers in [0, {steps - 1}], got shape "
            f"{tuple(timesteps.shape)}",
            "draw t with torch.randint(0, num_train_timesteps, (B,))",
        )
    x_t = scheduler.add_noise(x0, noise, timesteps)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return x_t, noise
    if kind == "v_prediction":
        return x_t, scheduler.get_velocity(x0, noise, timesteps)
    if kind == "sample":
        return x_t, x0
    raise MrisrInputError(None, f"prediction_type {kind!r} is not supported", "use epsilon, v_prediction or sample")


def _as_config(train_config: Mapping[str, Any]) -> dict[str, Any]:
    # Only the schedule itself is inherited; diffusers' own bookkeeping keys and DDPM-only options are dropped.
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type")
    missing = [k for k in keep[:3] if k not in train_config]
    if missing:
        raise MrisrInputError(
            None, f"training scheduler config lacks {missing}", "pass the training scheduler's .config"
        )
    return {k: train_config[k] for k in keep if k in train_config}


@runtime_checkable
class Sampler(Protocol):
    """What :func:`mrisr.diffusion.sampling.sample` needs from a sampler config."""

    steps: int

    def build(self, train_config: Mapping[str, Any], device: torch.device | str | None = None) -> SchedulerMixin:
        """Fresh scheduler, betas from ``train_config``, ``set_timesteps(steps, device)`` applied."""
        ...

    def step(
        self,
        scheduler: SchedulerMixin,
        model_output: torch.Tensor,
        timestep: torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One update x_t → x_{t_prev} with the sampler's options; returns the previous sample."""
        ...


def _check_steps(sampler: Sampler, train_config: Mapping[str, Any]) -> None:
    total = int(train_config["num_train_timesteps"])
    if not 1 <= sampler.steps <= total:
        raise MrisrInputError(
            None, f"{type(sampler).__name__}.steps = {sampler.steps} outside [1, {total}]", "choose 1 <= steps <= T"
        )


@dataclass
class DDIMSampler:
    """DDIM with Graf et al.'s striding (docs/models.md §3.2, §3.5).

    Args:
        steps: number of denoising steps n; timesteps are k·⌊T/n⌋ for k = n − 1, …, 0.
        eta: DDIM stochasticity (0 = deterministic ODE sampler, 1 ≈ DDPM posterior variance).
        clip_sample: clamp x̂₀ to [−1, 1] at every step (reference behaviour).
    """

    steps: int = 20
    eta: float = 0.0
    clip_sample: bool = True

    def build(self, train_config: Mapping[str, Any], device: torch.device | str | None = None) -> DDIMScheduler:
        _check_steps(self, train_config)
        scheduler = DDIMScheduler.from_config(
            _as_config(train_config),
            timestep_spacing="leading",
            set_alpha_to_one=True,
            steps_offset=0,
            clip_sample=self.clip_sample,
        )
        scheduler.set_timesteps(self.steps, device=device)
        return scheduler

    def step(
        self,
        scheduler: SchedulerMixin,
        model_output: torch.Tensor,
        timestep: torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if self.eta > 0 and generator is None:
            raise MrisrInputError(None, f"DDIM eta = {self.eta} > 0 needs a generator", "pass a seeded generator")
        return scheduler.step(model_output, timestep, sample, eta=self.eta, generator=generator).prev_sample


@dataclass
class DPMSolverSampler:
    """DPM-Solver++ multistep sampler (``DPMSolverMultistepScheduler``).

    Args:
        steps: number of model evaluations.
        order: solver order (2 recommended for guided/conditional sampling, 3 for unconditional).
        algorithm_type: "dpmsolver++" (data prediction, deterministic) or "sde-dpmsolver++" (stochastic).
        timestep_spacing: "linspace" (diffusers default: [999, …]) or "trailing"/"leading".
        thresholding: dynamic thresholding of x̂₀ (Saharia et al. 2022); off unless asked for.
        lower_order_final: use first order for the last steps (stabilises < 15 steps).
    """

    steps: int = 10
    order: int = 2
    algorithm_type: str = "dpmsolver++"
    timestep_spacing: str = "linspace"
    thresholding: bool = False
    lower_order_final: bool = True

    def build(
        self, train_config: Mapping[str, Any], device: torch.device | str | None = None
    ) -> DPMSolverMultistepScheduler:
        _check_steps(self, train_config)
        scheduler = DPMSolverMultistepScheduler.from_config(
            _as_config(train_config),
            solver_order=self.order,
            algorithm_type=self.algorithm_type,
            timestep_spacing=self.timestep_spacing,
            thresholding=self.thresholding,
            lower_order_final=self.lower_order_final,
            final_sigmas_type="zero",
        )
        scheduler.set_timesteps(self.steps, device=device)
        return scheduler

    def step(
        self,
        scheduler: SchedulerMixin,
        model_output: torch.Tensor,
        timestep: torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if self.algorithm_type.startswith("sde") and generator is None:
            raise MrisrInputError(None, f"{self.algorithm_type} needs a generator", "pass a seeded generator")
        return scheduler.step(model_output, timestep, sample, generator=generator).prev_sample


@dataclass
class UniPCSampler:
    """UniPC multistep predictor–corrector (``UniPCMultistepScheduler``), deterministic.

    Args:
        steps: number of model evaluations.
        order: predictor order (2 for conditional sampling).
        solver_type: "bh2" (recommended with ≤ 10 steps) or "bh1".
        timestep_spacing: "linspace" (diffusers default) or "trailing"/"leading".
        thresholding: dynamic thresholding of x̂₀; off unless asked for.
    """

    steps: int = 10
    order: int = 2
    solver_type: str = "bh2"
    timestep_spacing: str = "linspace"
    thresholding: bool = False

    def build(
        self, train_config: Mapping[str, Any], device: torch.device | str | None = None
    ) -> UniPCMultistepScheduler:
        _check_steps(self, train_config)
        scheduler = UniPCMultistepScheduler.from_config(
            _as_config(train_config),
            solver_order=self.order,
            solver_type=self.solver_type,
            timestep_spacing=self.timestep_spacing,
            thresholding=self.thresholding,
            predict_x0=True,
            final_sigmas_type="zero",
        )
        scheduler.set_timesteps(self.steps, device=device)
        return scheduler

    def step(
        self,
        scheduler: SchedulerMixin,
        model_output: torch.Tensor,
        timestep: torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return scheduler.step(model_output, timestep, sample).prev_sample
