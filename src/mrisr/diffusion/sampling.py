"""Conditional reverse-diffusion sampling loop and slice-coherent starting noise (docs/models.md §3.5).

The loop is independent of the network and of the scheduler family: ``denoiser(x_t, condition, timesteps)`` returns
the model output the scheduler expects (ε for Graf et al.), and a :class:`~mrisr.diffusion.schedulers.Sampler`
config supplies the timesteps and the update rule.

Graf et al. start every sagittal slice of a volume from the *same* noise map: with a deterministic sampler (DDIM,
η = 0) the remaining slice-to-slice variation then comes only from the condition, which keeps neighbouring slices
consistent. :func:`slice_coherent_noise` draws that map from an explicit ``torch.Generator`` (never the global RNG).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from mrisr.core.errors import MrisrInputError
from mrisr.diffusion.schedulers import Sampler

__all__ = ["Denoiser", "eval_mode", "from_signed", "sample", "slice_coherent_noise", "to_signed"]

#: ``denoiser(x_t (B, C, H, W), condition (B, C_c, H, W), timesteps (B,)) -> model output (B, C, H, W)``.
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def slice_coherent_noise(
    shape_hw: tuple[int, int],
    n_slices: int,
    generator: torch.Generator,
    channels: int = 1,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """One standard-normal noise map shared by every slice of a volume.

    Args:
        shape_hw: (H, W) of the padded slice, pixels.
        n_slices: number of slices that will share the map.
        generator: seeded generator; its device decides where the noise lives.
        channels: image channels (1 for MRI).
        dtype: floating dtype of the result.

    Returns:
        (n_slices, channels, H, W) read-only broadcast view of a single (1, channels, H, W) draw: every slice is
        bit-identical, and the map does not depend on ``n_slices`` (same seed, any slice count → same map).

    Raises:
        MrisrInputError: non-positive sizes or a missing generator.
    """
    if not isinstance(generator, torch.Generator):
        raise MrisrInputError(
            None, "slice_coherent_noise needs a torch.Generator", "pass torch.Generator().manual_seed(s)"
        )
    height, width = (int(v) for v in shape_hw)
    if min(height, width, n_slices, channels) < 1:
        raise MrisrInputError(
            None, f"noise shape {n_slices}×{channels}×{height}×{width} has a non-positive size", "pass positive sizes"
        )
    one = torch.randn((1, channels, height, width), generator=generator, device=generator.device, dtype=dtype)
    return one.expand(n_slices, channels, height, width)


@contextlib.contextmanager
def eval_mode(module: object) -> Iterator[None]:
    """Temporarily put an ``nn.Module`` in eval mode (dropout off), restoring its previous mode afterwards."""
    if not isinstance(module, nn.Module):
        yield
        return
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _check_inputs(condition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    if condition.ndim != 4:
        raise MrisrInputError(
            None, f"condition must be (B, C, H, W), got {tuple(condition.shape)}", "add batch and channel axes"
        )
    if noise.ndim != 4 or noise.shape[2:] != condition.shape[2:] or noise.shape[0] not in (1, condition.shape[0]):
        raise MrisrInputError(
            None,
            f"noise {tuple(noise.shape)} does not fit condition {tuple(condition.shape)}",
            "pass noise (B or 1, C, H, W) on the condition's grid (see slice_coherent_noise)",
        )
    return noise.expand(condition.shape[0], *noise.shape[1:])


@torch.inference_mode()
def sample(
    denoiser: Denoiser,
    condition: torch.Tensor,
    sampler: Sampler,
    noise: torch.Tensor,
    train_config: Mapping[str, Any],
    generator: torch.Generator | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Run the reverse process from ``noise`` to an HR estimate.

    Args:
        denoiser: the trained network (e.g. :class:`mrisr.nets.diffusion_unet.ConditionalUNet`, usually with EMA
            weights). An ``nn.Module`` is switched to eval mode for the call and restored afterwards.
        condition: interpolated LR slices on the HR grid, (B, C_c, H, W), in [−1, 1].
        sampler: sampler config (:class:`~mrisr.diffusion.schedulers.DDIMSampler`, ...); a fresh scheduler is built
            per call, so concurrent or repeated calls do not share multistep state.
        noise: starting noise (B, C, H, W) or (1, C, H, W) broadcast over the batch (one map per volume,
            :func:`slice_coherent_noise`). Scaled by the scheduler's ``init_noise_sigma`` (1 for these schedulers).
        train_config: ``.config`` of the training scheduler (:func:`~mrisr.diffusion.schedulers.ddpm_scheduler`),
            so that betas and prediction type match the trained network.
        generator: only for stochastic samplers (DDIM η > 0, SDE-DPM-Solver); deterministic ones ignore it.
        autocast_dtype: e.g. ``torch.bfloat16`` to run the network under autocast; the scheduler arithmetic and the
            state x_t stay float32.

    Returns:
        (B, C, H, W) float32 estimate clamped to ±``clip_sample_range`` of ``train_config`` (1: [−1, 1]). Each
        output slice depends only on its own condition and noise slice, so batching slices does not change the result
        beyond floating-point reassociation.
    """
    noise = _check_inputs(condition, noise)
    device = condition.device
    scheduler = sampler.build(train_config, device=device)
    x = noise.to(device=device, dtype=torch.float32) * scheduler.init_noise_sigma
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with eval_mode(denoiser):
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, t)
            timesteps = t.to(device).expand(x.shape[0])
            with autocast:
                output = denoiser(model_input, condition, timesteps)
            x = sampler.step(scheduler, output.float(), t, x, generator=generator)
    bound = float(train_config.get("clip_sample_range", 1.0))
    return x.clamp(-bound, bound)


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1]-normalised intensities → [−1, 1] (values outside [0, 1] are clamped first)."""
    return x.clamp(0.0, 1.0) * 2.0 - 1.0


def from_signed(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] → [0, 1] (inverse of :func:`to_signed` on its range)."""
    return (x + 1.0) * 0.5
