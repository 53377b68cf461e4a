"""Diffusion-model building blocks: schedulers, sampling loops, residual few-step formulation, EMA, uncertainty.

Networks live in :mod:`mrisr.nets` (``diffusion_unet``); nothing here holds learnable weights except the EMA copy.
"""

from __future__ import annotations

from mrisr.diffusion.ema import EMA
from mrisr.diffusion.residual import (
    residual_time_grid,
    residual_timesteps,
    residual_training_target,
    sample_residual,
)
from mrisr.diffusion.sampling import sample, slice_coherent_noise
from mrisr.diffusion.schedulers import (
    MAX_START_SIGNAL,
    DDIMSampler,
    DPMSolverSampler,
    Sampler,
    UniPCSampler,
    check_start,
    ddpm_scheduler,
    diffusion_training_target,
    epsilon_and_sample,
)
from mrisr.diffusion.uncertainty import diffusion_draws, sample_statistics, seeded_draws

__all__ = [
    "EMA",
    "MAX_START_SIGNAL",
    "DDIMSampler",
    "DPMSolverSampler",
    "Sampler",
    "UniPCSampler",
    "check_start",
    "ddpm_scheduler",
    "diffusion_draws",
    "diffusion_training_target",
    "epsilon_and_sample",
    "residual_time_grid",
    "residual_timesteps",
    "residual_training_target",
    "sample",
    "sample_residual",
    "sample_statistics",
    "seeded_draws",
    "slice_coherent_noise",
]
