"""What inference produces: the output of an inferer, a per-volume fit, and the result of one whole run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from mrisr.io.geometry import SliceGeometry
from mrisr.io.nifti import Volume

if TYPE_CHECKING:
    from mrisr.inference.acquisition import Acquisition
    from mrisr.inference.grid import OutputGrid

__all__ = ["FittedModel", "InferenceOutput", "InferenceResult", "Inferer"]


@dataclass
class InferenceOutput:
    """What an inferer returns for one volume.

    Attributes:
        sr: the super-resolved volume on the output grid (raw intensities).
        uncertainty: per-voxel standard deviation of repeated stochastic draws on the same grid, or ``None``.
        details: JSON-ready facts of the run worth recording (e.g. the fraction of clamped voxels, sampler settings).
        warnings: what a user must know about this output, one line each.
    """

    sr: Volume
    uncertainty: Volume | None = None
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Inferer(Protocol):
    """Turns a thick-slice volume into an :class:`InferenceOutput` on ``grid`` (randomness from ``generator`` only)."""

    def __call__(
        self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid, generator: torch.Generator
    ) -> InferenceOutput: ...


@dataclass
class FittedModel:
    """A model fitted on one input volume (zero-shot / fine-tuned per volume).

    Attributes:
        inferer: super-resolves that volume with the fitted weights.
        record: JSON-ready fit summary (steps, seconds, losses, kernel, seed, …).
        log: one row per optimiser step (``step``, ``loss``, ``lr``, ``seconds``).
        warnings: what went wrong in the fit (e.g. far fewer steps than the budget was measured to allow).
    """

    inferer: Inferer
    record: dict[str, Any]
    log: list[dict[str, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class InferenceResult:
    """Everything one run of :func:`mrisr.inference.run.run_on_volume` produced.

    Attributes:
        sr: the super-resolved volume.
        geometry: the input's slice geometry.
        grid: the output grid.
        seconds: wall time of acquisition resolution + fit + inference.
        uncertainty: per-voxel SD map of stochastic models (``samples`` > 1), else ``None``.
        acquisition: the resolved slice thickness and profile with their sources (models that use them).
        fit: the per-volume fit (its record and step log), ``None`` unless the model fits per volume.
        details: what the inferer recorded.
        record: JSON-ready description for sidecars (model, geometry, grid, acquisition, seed, timing).
        warnings: what a user must know about this output (a starved fit, clamped outputs, …), one line each.
    """

    sr: Volume
    geometry: SliceGeometry
    grid: OutputGrid
    seconds: float
    uncertainty: Volume | None = None
    acquisition: Acquisition | None = None
    fit: FittedModel | None = None
    details: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
