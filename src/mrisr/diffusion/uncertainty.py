"""Per-voxel spread of repeated stochastic SR draws (sampling uncertainty).

Different starting-noise seeds give different plausible HR reconstructions of the same LR input; their per-voxel mean
is a (smoother) point estimate and their standard deviation a map of where the model is unsure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from mrisr.core.errors import MrisrInputError
from mrisr.diffusion.sampling import Denoiser, sample, slice_coherent_noise
from mrisr.diffusion.schedulers import Sampler

__all__ = ["diffusion_draws", "sample_statistics", "seeded_draws"]


def sample_statistics(samples: torch.Tensor, unbiased: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-voxel mean and standard deviation over the draws.

    Args:
        samples: (N, ...) stack of N draws.
        unbiased: divide the squared deviations by N − 1 (sample standard deviation, needs N ≥ 2) instead of N
            (population standard deviation of the N draws).

    Returns:
        ``(mean, std)``, each shaped like one draw (``samples.shape[1:]``), float32 or the input's float dtype.
    """
    if samples.ndim < 1 or samples.shape[0] < (2 if unbiased else 1):
        raise MrisrInputError(
            None,
            f"{'unbiased ' if unbiased else ''}statistics need at least {2 if unbiased else 1} draws along dim 0, "
            f"got shape {tuple(samples.shape)}",
            "stack more draws or pass unbiased=False",
        )
    values = samples if samples.is_floating_point() else samples.float()
    return values.mean(dim=0), values.std(dim=0, correction=1 if unbiased else 0)


def seeded_draws(
    draw: Callable[[torch.Generator], torch.Tensor],
    n: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Stack ``n`` draws, draw k using a fresh generator seeded ``seed + k`` (reproducible, no global RNG).

    Args:
        draw: function of a generator returning one draw (any shape).
        n: number of draws.
        seed: base seed.
        device: device of the generators.

    Returns:
        (n, ...) stacked draws.
    """
    if n < 1:
        raise MrisrInputError(None, f"need n >= 1 draws, got {n}", "ask for at least one draw")
    return torch.stack([draw(torch.Generator(device=device).manual_seed(seed + k)) for k in range(n)])


def diffusion_draws(
    denoiser: Denoiser,
    condition: torch.Tensor,
    sampler: Sampler,
    train_config: Mapping[str, Any],
    n: int,
    seed: int,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``n`` conditional diffusion samples of a slice stack, each from its own slice-coherent noise map.

    Args:
        denoiser: trained network (see :func:`mrisr.diffusion.sampling.sample`).
        condition: (B, C, H, W) LR slices of one volume in [−1, 1].
        sampler: sampler config.
        train_config: training scheduler config.
        n: number of draws.
        seed: base seed; draw k uses ``seed + k`` for its noise map (and stochastic sampler steps).
        autocast_dtype: optional autocast dtype for the network.

    Returns:
        (n, B, C, H, W) samples in [−1, 1]; feed to :func:`sample_statistics`.
    """

    def draw(generator: torch.Generator) -> torch.Tensor:
        noise = slice_coherent_noise(tuple(condition.shape[2:]), condition.shape[0], generator, condition.shape[1])
        return sample(denoiser, condition, sampler, noise, train_config, generator, autocast_dtype)

    return seeded_draws(draw, n, seed, device=condition.device)
