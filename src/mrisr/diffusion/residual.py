"""Few-step residual restoration that starts from the interpolated LR slice instead of pure noise.

Formulation: Inversion by Direct Iteration (InDI; Delbracio & Milanfar, TMLR 2023), equivalently a straight-line flow
from the degraded to the clean image. With HR image x, interpolated LR image y (both in [−1, 1], same grid) and
t ∈ [0, 1]:

    x_t = (1 − t)·x + t·(y + σ·n),   n ~ N(0, I),

i.e. a noise standard deviation σ_t = σ·t that grows with the weight of the degraded image. InDI adds such a small
noise so that the intermediate distributions have full support and sampling stays stochastic; σ = 0 gives the
deterministic path. The network F(x_t, t) (the U-Net of the diffusion model, with time fed as t·``time_scale``) is
trained to regress either

- ``"sample"``: the clean image x (InDI's E[x | x_t]), or
- ``"velocity"``: v = dx_t/dt = (y + σ·n) − x (flow matching, Lipman et al., ICLR 2023; Liu et al., ICLR 2023).

The network sees x_t and t only, as in InDI, not y. Given y as well, the path is invertible:
x = (x_t − t·y)/(1 − t) − t·σ·n/(1 − t), exactly for σ = 0 and up to a small noise for t well below 1. The objective
can then be met at every t < 1 by this algebra instead of by restoring, and the sampler gains nothing from it: its
state x_t = (1 − t)·x̂ + t·y is built from its own estimate, so the shortcut returns x̂ unchanged, and the result is the
t = 1 prediction alone, which the objective barely trains. ``conditioned=True`` keeps the concatenated condition for
networks trained that way (docs/models.md §3.7).

Sampling integrates from t = 1 (x_1 = y + σ·n) to t = 0 with Euler steps on a uniform grid. For x̂-prediction the
step t → t − δ is InDI's update x_{t−δ} = (δ/t)·F + (1 − δ/t)·x_t; for v-prediction x_{t−δ} = x_t − δ·v̂; both are the
same rule when v̂ = (x_t − x̂)/t. With an exact predictor the update stays on the training path, including its noise
level (((t − δ)/t)·σ·t = σ·(t − δ)), so no noise has to be injected while sampling, and one step returns x̂ itself.

Related work (docs/models.md §3.7): ResShift (Yue et al., NeurIPS 2023) shifts the residual y − x with a noise schedule
over 15 (later 4) steps; Res-SRDiff applies the same idea to MRI in 4 steps. Both do give the network y, but their
noise is large (standard deviation κ·√η_t with κ ≈ 1–2 against images in [−1, 1]), which rules the shortcut out.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Literal

import torch

from mrisr.core.errors import MrisrInputError
from mrisr.diffusion.sampling import Denoiser, eval_mode

__all__ = ["residual_time_grid", "residual_timesteps", "residual_training_target", "sample_residual"]

ResidualPrediction = Literal["sample", "velocity"]

#: t ∈ [0, 1] is fed to the U-Net as t·999 so that its sinusoidal embedding covers the range it has for DDPM.
DEFAULT_TIME_SCALE = 999.0


def residual_timesteps(t: torch.Tensor, time_scale: float = DEFAULT_TIME_SCALE) -> torch.Tensor:
    """Network timestep for continuous t ∈ [0, 1]: float t·``time_scale`` (same shape)."""
    return t.float() * time_scale


def residual_time_grid(steps: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Uniform sampling grid 1 = t_0 > t_1 > … > t_steps = 0, float32, (steps + 1,)."""
    if steps < 1:
        raise MrisrInputError(None, f"residual sampling needs steps >= 1, got {steps}", "use 1 to 4 steps")
    return torch.linspace(1.0, 0.0, steps + 1, device=device)


def _broadcast_t(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if t.ndim != 1 or t.shape[0] != like.shape[0]:
        raise MrisrInputError(None, f"t must be (B,) = ({like.shape[0]},), got {tuple(t.shape)}", "one t per sample")
    if float(t.min()) < 0.0 or float(t.max()) > 1.0:
        raise MrisrInputError(None, "t must lie in [0, 1]", "draw t ~ U(0, 1)")
    return t.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def residual_training_target(
    hr: torch.Tensor,
    lr: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor | None = None,
    sigma: float = 0.0,
    prediction: ResidualPrediction = "sample",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolated input and regression target of one InDI / flow-matching training step.

    Args:
        hr: clean HR images x, (B, C, H, W), in [−1, 1].
        lr: interpolated LR images y on the same grid, (B, C, H, W), in [−1, 1].
        t: time per sample, (B,), in [0, 1] (1 = LR, 0 = HR).
        noise: n ~ N(0, I) like ``hr``; required when ``sigma`` > 0.
        sigma: noise standard deviation at t = 1 (σ_t = σ·t); 0 for the deterministic path.
        prediction: "sample" (target x) or "velocity" (target (y + σ·n) − x).

    Returns:
        ``(x_t, target)`` with x_t = (1 − t)·x + t·(y + σ·n); the loss is MSE(net(x_t, t·999), target).
    """
    if lr.shape != hr.shape:
        raise MrisrInputError(None, f"lr {tuple(lr.shape)} differs from hr {tuple(hr.shape)}", "put both on one grid")
    start = _start(lr, noise, sigma)
    tt = _broadcast_t(t, hr)
    x_t = (1.0 - tt) * hr + tt * start
    if prediction == "sample":
        return x_t, hr
    if prediction == "velocity":
        return x_t, start - hr
    raise MrisrInputError(None, f"prediction {prediction!r} is not supported", "use 'sample' or 'velocity'")


def _start(lr: torch.Tensor, noise: torch.Tensor | None, sigma: float) -> torch.Tensor:
    """y + σ·n, the t = 1 end of the path."""
    if sigma < 0:
        raise MrisrInputError(None, f"sigma must be >= 0, got {sigma}", "use 0 or a small value such as 0.01")
    if sigma == 0:
        return lr
    if noise is None or noise.shape[1:] != lr.shape[1:] or noise.shape[0] not in (1, lr.shape[0]):
        raise MrisrInputError(
            None,
            f"sigma = {sigma} needs noise shaped like {tuple(lr.shape)} (or with batch 1), got "
            f"{None if noise is None else tuple(noise.shape)}",
            "pass noise (e.g. slice_coherent_noise) or set sigma to 0",
        )
    return lr + sigma * noise.to(lr)


@torch.inference_mode()
def sample_residual(
    denoiser: Denoiser,
    condition: torch.Tensor,
    steps: int = 1,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    sigma: float = 0.0,
    prediction: ResidualPrediction = "sample",
    time_scale: float = DEFAULT_TIME_SCALE,
    autocast_dtype: torch.dtype | None = None,
    conditioned: bool = False,
) -> torch.Tensor:
    """Euler integration of the InDI path from the LR slice (t = 1) to the HR estimate (t = 0).

    Args:
        denoiser: network ``denoiser(x_t, condition, t·time_scale)`` trained with :func:`residual_training_target`;
            it gets a zero-channel condition (B, 0, H, W) unless ``conditioned``. An ``nn.Module`` is put in eval
            mode for the call.
        condition: interpolated LR slices y, (B, C, H, W), in [−1, 1]: the start of the path.
        steps: Euler steps (1–4 is the intended range).
        noise: starting noise n, (B or 1, C, H, W); used when ``sigma`` > 0 (e.g. one map per volume).
        generator: alternative to ``noise``: n is drawn as one map shared by the batch from this generator.
        sigma: the σ the network was trained with.
        prediction: the target the network was trained with.
        time_scale: the factor the network was trained with.
        autocast_dtype: optional autocast dtype for the network; the state stays float32.
        conditioned: pass y to the network as its condition (only for networks trained with it; see the module
            docstring for why the default network sees x_t and t only).

    Returns:
        (B, C, H, W) float32 HR estimate clamped to [−1, 1].
    """
    if condition.ndim != 4:
        raise MrisrInputError(None, f"condition must be (B, C, H, W), got {tuple(condition.shape)}", "add axes")
    if noise is not None and generator is not None:
        raise MrisrInputError(None, "both noise and generator were given", "pass only one of them")
    if sigma > 0 and noise is None:
        if generator is None:
            raise MrisrInputError(None, f"sigma = {sigma} needs noise or a generator", "pass one, or set sigma to 0")
        noise = torch.randn((1, *condition.shape[1:]), generator=generator, device=generator.device)
    if prediction not in ("sample", "velocity"):
        raise MrisrInputError(None, f"prediction {prediction!r} is not supported", "use 'sample' or 'velocity'")
    device = condition.device
    x = _start(condition.float(), None if noise is None else noise.to(device), sigma).expand_as(condition).float()
    network_condition = condition if conditioned else condition[:, :0]
    grid = residual_time_grid(steps, device=device)
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with eval_mode(denoiser):
        for t, t_next in itertools.pairwise(grid):
            timesteps = residual_timesteps(t.expand(x.shape[0]), time_scale)
            with autocast:
                output = denoiser(x, network_condition, timesteps).float()
            delta = t - t_next
            if prediction == "sample":
                # InDI update: move the fraction δ/t of the way to the predicted clean image.
                x = (delta / t) * output + (1.0 - delta / t) * x
            else:
                x = x - delta * output
    return x.clamp(-1.0, 1.0)
