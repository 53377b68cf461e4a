"""Noise schedules: the DDPM training scheduler, its training target, and few-step samplers built from it.

Training (docs/models.md §3.2, §3.4): a discrete DDPM (Ho et al., NeurIPS 2020) with a linear β schedule
1e-4 → 0.02 over 1000 steps, x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, and the network regresses ε (or v = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀,
Salimans & Ho 2022, or x₀ itself).

Sampling reuses the ε-model without retraining. Each sampler below is a small config object (Hydra ``_target_``,
``steps`` as a field) whose :meth:`build` makes a fresh diffusers scheduler from the *training* scheduler's config, so
the betas always match the trained model, and whose :meth:`step` applies the sampler's update:

- :class:`DDIMSampler` — DDIM (Song et al., ICLR 2021), the sampler of Graf et al. (20 steps, "leading" spacing
  [950, 900, …, 0]). The update is computed here from the scheduler's own timestep list, so every spacing is exact
  (diffusers' ``DDIMScheduler.step`` assumes the previous timestep is t − ⌊T/n⌋, which is wrong for "trailing" or
  "linspace" spacing whenever n does not divide T, diffusers issue #12633).
- :class:`DPMSolverSampler` — DPM-Solver++ multistep (Lu et al. 2022), 10–20 steps.
- :class:`UniPCSampler` — UniPC predictor–corrector (Zhao et al., NeurIPS 2023), aimed at < 10 steps.

All three default to "trailing" timestep spacing, whose first timestep is T − 1 for any n (e.g. [999, 499] for two
steps): sampling starts from pure noise at the noisiest trained level, as recommended by Lin et al. ("Common Diffusion
Noise Schedules and Sample Steps are Flawed", WACV 2024, Table 2). "leading" spacing starts at (n − 1)·⌊T/n⌋, which
for few steps is far from T (t = 0 for one step, t = 500 for two): the sampler would treat a pure-noise draw as an
image that still holds √ᾱ_t of the clean signal. :func:`check_start` refuses any schedule whose first timestep has
√ᾱ > :data:`MAX_START_SIGNAL`.

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
    "MAX_START_SIGNAL",
    "DDIMSampler",
    "DPMSolverSampler",
    "Sampler",
    "UniPCSampler",
    "check_start",
    "ddpm_scheduler",
    "diffusion_training_target",
    "epsilon_and_sample",
]

PredictionType = Literal["epsilon", "v_prediction", "sample"]
TimestepSpacing = Literal["trailing", "leading", "linspace"]

#: Largest √ᾱ allowed at a sampling schedule's first timestep. Sampling starts from a pure N(0, I) draw and treats it
#: as x_t0 = √ᾱ_t0·x₀ + √(1 − ᾱ_t0)·ε; for images in [−1, 1] the signal it assumes to be present (and is not) has an
#: amplitude of up to √ᾱ_t0 and a power of up to ᾱ_t0 against the noise's 1 − ᾱ_t0. 0.1 keeps that assumed signal
#: below 10 % of the data range (≈ 1 % of its power), the order of the terminal signal Lin et al. (WACV 2024) already
#: find harmful (√ᾱ_T = 0.068 for Stable Diffusion's schedule). For the linear 1e-4 → 0.02 schedule of Graf et al. it
#: allows first timesteps t0 ≥ 675: trailing spacing (t0 = 999, √ᾱ = 0.0064) for any n, Graf's leading DDIM-20
#: (t0 = 950, √ᾱ = 0.010) and leading spacing with n ≥ 4; it refuses leading DDIM with 1, 2 or 3 steps (t0 = 0, 500,
#: 666; √ᾱ = 1.000, 0.279, 0.105).
MAX_START_SIGNAL = 0.1


def ddpm_scheduler(
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    prediction_type: PredictionType = "epsilon",
    beta_schedule: str = "linear",
    clip_sample: bool = True,
    clip_sample_range: float = 1.0,
) -> DDPMScheduler:
    """Training scheduler of Graf et al. (docs/models.md §3.2).

    Args:
        num_train_timesteps: T, number of discrete noise levels (t ∈ {0, …, T − 1}).
        beta_start: β at t = 0.
        beta_end: β at t = T − 1.
        prediction_type: what the network regresses: "epsilon" (Graf), "v_prediction" or "sample".
        beta_schedule: diffusers β schedule name ("linear" for Graf).
        clip_sample: clamp x̂₀ to [−``clip_sample_range``, ``clip_sample_range``] during sampling.
        clip_sample_range: bound of that clamp and of the final sample: 1 for images in [−1, 1]; a scaled target
            (a residual multiplied by s) uses s.

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
        clip_sample_range=clip_sample_range,
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


def epsilon_and_sample(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and clean-image estimates implied by a network output, for any DDPM prediction type.

    With x_t = √ᾱ·x₀ + √(1 − ᾱ)·ε (Ho et al. 2020) and v = √ᾱ·ε − √(1 − ᾱ)·x₀ (Salimans & Ho, ICLR 2022):
    "epsilon" gives x̂₀ = (x_t − √(1 − ᾱ)·ε̂)/√ᾱ; "v_prediction" gives x̂₀ = √ᾱ·x_t − √(1 − ᾱ)·v̂ and
    ε̂ = √ᾱ·v̂ + √(1 − ᾱ)·x_t; "sample" gives ε̂ = (x_t − √ᾱ·x̂₀)/√(1 − ᾱ).

    Args:
        output: network output (B, C, H, W).
        x_t: its noisy input, same shape.
        alpha_bar: ᾱ_t, broadcastable to ``output`` (e.g. (B, 1, 1, 1) or a scalar tensor), in (0, 1].
        prediction_type: what ``output`` is: "epsilon", "v_prediction" or "sample".

    Returns:
        ``(ε̂, x̂₀)``, both shaped like ``output`` (x̂₀ is not clipped).

    Raises:
        MrisrInputError: an unknown prediction type.
    """
    alpha_bar = alpha_bar.to(output)
    signal, noise = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        return output, (x_t - noise * output) / signal
    if prediction_type == "v_prediction":
        return signal * output + noise * x_t, signal * x_t - noise * output
    if prediction_type == "sample":
        return (x_t - signal * output) / noise, output
    raise MrisrInputError(
        None, f"prediction_type {prediction_type!r} is not supported", "use epsilon, v_prediction or sample"
    )


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


def _check_spacing(sampler: Sampler) -> None:
    spacing = getattr(sampler, "timestep_spacing", "trailing")
    if spacing not in ("trailing", "leading", "linspace"):
        raise MrisrInputError(
            None,
            f"{type(sampler).__name__}.timestep_spacing = {spacing!r} is not supported",
            "use 'trailing' (default), 'leading' (Graf et al.'s DDIM-20) or 'linspace'",
        )


def check_start(scheduler: SchedulerMixin, name: str = "sampler") -> None:
    """Refuse a sampling schedule that does not start (almost) from pure noise.

    Args:
        scheduler: a built scheduler (``timesteps`` set, ``alphas_cumprod`` of the training schedule).
        name: how to call the sampler in the message (e.g. "DDIMSampler(steps=2, timestep_spacing='leading')").

    Raises:
        MrisrInputError: √ᾱ at the first timestep exceeds :data:`MAX_START_SIGNAL` (see there for the bound).
    """
    first = int(scheduler.timesteps[0])
    signal = float(scheduler.alphas_cumprod[first].sqrt())
    if signal > MAX_START_SIGNAL:
        raise MrisrInputError(
            None,
            f"{name} starts at t = {first} of {scheduler.config.num_train_timesteps}, where √ᾱ = {signal:.3f} > "
            f"{MAX_START_SIGNAL}: the pure-noise start would be treated as an image that still holds {signal:.0%} of "
            "the clean signal (at t = 0 the starting noise itself is returned)",
            "use timestep_spacing='trailing' (the default; first timestep T − 1) or more steps",
        )


def _schedule(
    sampler: DDIMSampler | DPMSolverSampler | UniPCSampler,
    scheduler_class: type[SchedulerMixin],
    train_config: Mapping[str, Any],
    device: torch.device | str | None,
    **options: Any,
) -> Any:
    """A fresh ``scheduler_class`` with the training betas of ``train_config``, the sampler's timestep spacing and
    ``options``; its ``steps`` timesteps set on ``device`` and its start checked (:func:`check_start`)."""
    _check_steps(sampler, train_config)
    _check_spacing(sampler)
    scheduler = scheduler_class.from_config(
        _as_config(train_config), timestep_spacing=sampler.timestep_spacing, **options
    )
    scheduler.set_timesteps(sampler.steps, device=device)
    check_start(scheduler, repr(sampler))
    return scheduler


@dataclass
class DDIMSampler:
    """DDIM (Song et al., ICLR 2021; docs/models.md §3.2, §3.5), deterministic for η = 0.

    The update from t to the next listed timestep s (ᾱ_s = 1 after the last one, ``set_alpha_to_one``) is
    x_s = √ᾱ_s·x̂₀ + √(1 − ᾱ_s − σ²)·ε̂ + σ·z with σ = η·√((1 − ᾱ_s)/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_s) (Song et al. eq. 12, 16),
    x̂₀ clipped to [−1, 1] when ``clip_sample``. For "leading" spacing it equals ``DDIMScheduler.step``.

    Args:
        steps: number of denoising steps n.
        eta: DDIM stochasticity (0 = deterministic ODE sampler, 1 ≈ DDPM posterior variance).
        clip_sample: clamp x̂₀ to [−1, 1] at every step (reference behaviour).
        timestep_spacing: "trailing" (default): round(T − k·T/n) − 1 for k = 0 … n − 1, i.e. [999, 949, …, 49] for
            n = 20 and [999, 499] for n = 2; "leading": k·⌊T/n⌋ for k = n − 1 … 0, i.e. [950, 900, …, 0] for n = 20,
            the striding of Graf et al. (set it for parity); "linspace": n points rounded from T − 1 down to 0.
            Schedules that start too close to t = 0 (leading with n ≤ 3) are refused (:func:`check_start`).
    """

    steps: int = 20
    eta: float = 0.0
    clip_sample: bool = True
    timestep_spacing: TimestepSpacing = "trailing"

    def build(self, train_config: Mapping[str, Any], device: torch.device | str | None = None) -> DDIMScheduler:
        return _schedule(
            self,
            DDIMScheduler,
            train_config,
            device,
            set_alpha_to_one=True,
            steps_offset=0,
            clip_sample=self.clip_sample,
        )

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
        timesteps = scheduler.timesteps.tolist()
        current = int(timestep)
        if current not in timesteps:
            raise MrisrInputError(None, f"timestep {current} is not in the schedule {timesteps}", "step over timesteps")
        index = timesteps.index(current)
        alphas = scheduler.alphas_cumprod
        alpha_t = alphas[current]
        alpha_s = alphas[timesteps[index + 1]] if index + 1 < len(timesteps) else scheduler.final_alpha_cumprod
        eps, x0 = epsilon_and_sample(model_output, sample, alpha_t, scheduler.config.prediction_type)
        if scheduler.config.clip_sample:
            x0 = x0.clamp(-scheduler.config.clip_sample_range, scheduler.config.clip_sample_range)
        alpha_t, alpha_s = alpha_t.to(sample), alpha_s.to(sample)
        sigma = self.eta * ((1 - alpha_s) / (1 - alpha_t) * (1 - alpha_t / alpha_s)).sqrt()
        prev = alpha_s.sqrt() * x0 + (1 - alpha_s - sigma**2).clamp_min(0).sqrt() * eps
        if self.eta > 0:
            noise = torch.randn(sample.shape, generator=generator, device=generator.device, dtype=sample.dtype)
            prev = prev + sigma * noise.to(sample.device)
        return prev


@dataclass
class DPMSolverSampler:
    """DPM-Solver++ multistep sampler (``DPMSolverMultistepScheduler``).

    Args:
        steps: number of model evaluations.
        order: solver order (2 recommended for guided/conditional sampling, 3 for unconditional).
        algorithm_type: "dpmsolver++" (data prediction, deterministic) or "sde-dpmsolver++" (stochastic).
        timestep_spacing: "trailing" (default; first timestep T − 1, [999, 499] for n = 2), "linspace" (also starts
            at T − 1, [999, 500]) or "leading" (starts at n·⌊T/(n + 1)⌋, refused for n ≤ 2 by :func:`check_start`).
        thresholding: dynamic thresholding of x̂₀ (Saharia et al. 2022); off unless asked for.
        lower_order_final: use first order for the last steps (stabilises < 15 steps).
    """

    steps: int = 10
    order: int = 2
    algorithm_type: str = "dpmsolver++"
    timestep_spacing: TimestepSpacing = "trailing"
    thresholding: bool = False
    lower_order_final: bool = True

    def build(
        self, train_config: Mapping[str, Any], device: torch.device | str | None = None
    ) -> DPMSolverMultistepScheduler:
        return _schedule(
            self,
            DPMSolverMultistepScheduler,
            train_config,
            device,
            solver_order=self.order,
            algorithm_type=self.algorithm_type,
            thresholding=self.thresholding,
            lower_order_final=self.lower_order_final,
            final_sigmas_type="zero",
        )

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
        timestep_spacing: "trailing" (default), "linspace" or "leading", as for :class:`DPMSolverSampler`.
        thresholding: dynamic thresholding of x̂₀; off unless asked for.
    """

    steps: int = 10
    order: int = 2
    solver_type: str = "bh2"
    timestep_spacing: TimestepSpacing = "trailing"
    thresholding: bool = False

    def build(
        self, train_config: Mapping[str, Any], device: torch.device | str | None = None
    ) -> UniPCMultistepScheduler:
        return _schedule(
            self,
            UniPCMultistepScheduler,
            train_config,
            device,
            solver_order=self.order,
            solver_type=self.solver_type,
            thresholding=self.thresholding,
            predict_x0=True,
            final_sigmas_type="zero",
        )

    def step(
        self,
        scheduler: SchedulerMixin,
        model_output: torch.Tensor,
        timestep: torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return scheduler.step(model_output, timestep, sample).prev_sample
