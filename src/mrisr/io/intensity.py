"""Intensity normalisation: the one rule for scaling MRI intensities before a network or a metric sees them.

MRI intensities have no physical unit, so every volume is scaled by a robust statistic of its own foreground
(docs/evaluation.md §1): the ``percentile``-th percentile (default 99.5) of the voxels > 0, or of a given region.
Training volumes, inference inputs, degradation stacks and image metrics all use :func:`foreground_percentile`, and
share one policy for volumes without foreground: they are refused with a :class:`~mrisr.core.errors.MrisrInputError`
(a scale of 1 would silently feed a network values far outside what it was trained on).

Zero-shot models rescale their input to [0, 1] by its minimum and maximum instead (SMORE, Zhao et al. 2021);
:func:`minmax_scaling` is that rule, with the same refusal of constant volumes.

:class:`IntensityRule` is how a model maps raw intensities to its network's scale. It is configured once per run
(``conf/intensity/``) and the same object reaches the data module that makes training pairs, the system that
super-resolves, and the callbacks that score on the network's scale. Its scale is always a statistic of the network's
*input* (the LR volume), because that is all there is at inference; training pairs are scaled by their LR side too.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from mrisr.core.errors import MrisrInputError

__all__ = [
    "DEFAULT_PERCENTILE",
    "PRETTIER_RULE",
    "IntensityRule",
    "IntensityScaling",
    "foreground_percentile",
    "minmax_scaling",
    "percentile_scaling",
]

#: Percentile of the foreground mapped to 1 (docs/evaluation.md §1).
DEFAULT_PERCENTILE = 99.5


def foreground_percentile(
    data: np.ndarray,
    percentile: float = DEFAULT_PERCENTILE,
    region: np.ndarray | None = None,
    source: str | os.PathLike[str] | None = None,
) -> float:
    """The ``percentile``-th percentile of ``data`` inside ``region`` (default: the foreground, voxels > 0).

    Computed in float64 with numpy's linear interpolation.

    Args:
        data: Intensities, any shape.
        percentile: Percentile in [0, 100].
        region: Boolean array of ``data``'s shape selecting the voxels, or ``None`` for ``data > 0``.
        source: File the data came from, named in errors.

    Returns:
        The percentile, finite and > 0.

    Raises:
        ValueError: ``percentile`` outside [0, 100] (a programming error).
        MrisrInputError: Empty region or foreground, or a percentile that is not finite and positive.
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    values = np.asarray(data)
    where = "foreground (voxels > 0)" if region is None else "region"
    selected = values[values > 0] if region is None else values[np.asarray(region, dtype=bool)]
    label = Path(source) if source is not None else None
    if selected.size == 0:
        raise MrisrInputError(
            label,
            f"the image has an empty {where}: its intensity cannot be normalised",
            "check the image (all voxels ≤ 0?) or pass a mask covering the object",
        )
    value = float(np.percentile(selected.astype(np.float64), percentile))
    if not math.isfinite(value) or value <= 0.0:
        raise MrisrInputError(
            label,
            f"the {percentile:g}th intensity percentile of the {where} is {value:g}; it must be > 0",
            "check the image, or pass a mask covering the object",
        )
    return value


@dataclass(frozen=True)
class IntensityScaling:
    """An affine intensity map ``normalised = (raw − offset) / scale`` and its inverse.

    Attributes:
        offset: Raw value mapped to 0.
        scale: Raw range mapped to 1 (> 0).
    """

    offset: float
    scale: float

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Raw → normalised intensities (float32 for float32 input)."""
        return (data - self.offset) / self.scale

    def invert(self, data: np.ndarray) -> np.ndarray:
        """Normalised → raw intensities."""
        return data * self.scale + self.offset


def percentile_scaling(
    data: np.ndarray, percentile: float = DEFAULT_PERCENTILE, source: str | os.PathLike[str] | None = None
) -> IntensityScaling:
    """Scaling that maps the foreground ``percentile`` to 1 and 0 to 0 (supervised models, metrics)."""
    return IntensityScaling(offset=0.0, scale=foreground_percentile(data, percentile, source=source))


def minmax_scaling(data: np.ndarray, source: str | os.PathLike[str] | None = None) -> IntensityScaling:
    """Scaling that maps the minimum to 0 and the maximum to 1 (zero-shot models, SMORE's rule).

    Raises:
        MrisrInputError: A constant (or non-finite) volume.
    """
    low, high = float(np.min(data)), float(np.max(data))
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise MrisrInputError(
            Path(source) if source is not None else None,
            f"the image is constant or not finite (min {low:g}, max {high:g}): nothing to super-resolve",
            "check the image",
        )
    return IntensityScaling(offset=low, scale=high - low)


@dataclass
class IntensityRule:
    """How a model maps raw intensities to its network's scale (module docstring).

    Attributes:
        kind: ``percentile`` — offset 0, scale = ``headroom`` × the ``percentile``-th percentile of the foreground
            (voxels > 0) of the network input; ``minmax`` — the input's minimum → 0 and maximum → 1 (SMORE).
        percentile: foreground percentile of the ``percentile`` rule (docs/evaluation.md §1).
        headroom: multiple of that percentile mapped to 1 (PRETTIER: 1.25, so the brightest voxels stay below 1).

    Not frozen: Lightning copies the hyperparameters it stores with ``dataclasses.replace``-style reconstruction.
    """

    kind: Literal["percentile", "minmax"] = "percentile"
    percentile: float = DEFAULT_PERCENTILE
    headroom: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("percentile", "minmax"):
            raise ValueError(f"intensity rule kind must be 'percentile' or 'minmax', got {self.kind!r}")
        if not 0.0 < float(self.percentile) <= 100.0:
            raise ValueError(f"intensity percentile must be in (0, 100], got {self.percentile}")
        if not (math.isfinite(float(self.headroom)) and float(self.headroom) > 0):
            raise ValueError(f"intensity headroom must be > 0, got {self.headroom}")

    def scaling(self, data: np.ndarray, source: str | os.PathLike[str] | None = None) -> IntensityScaling:
        """The scaling of a network input ``data`` (a whole LR volume at inference, the LR side of a training pair).

        Raises:
            MrisrInputError: empty foreground (``percentile``) or a constant volume (``minmax``).
        """
        if self.kind == "minmax":
            return minmax_scaling(data, source=source)
        value = foreground_percentile(data, float(self.percentile), source=source)
        return IntensityScaling(offset=0.0, scale=float(self.headroom) * value)

    def plane_correction(self, hr_plane: np.ndarray, lr_plane: np.ndarray) -> float:
        """Factor by which a training pair degraded plane by plane must be divided to follow this rule.

        Pairs whose LR side is simulated per plane from an HR volume already on the rule's scale (random degradation
        stacks) have the HR volume's scale, not the LR volume's that inference will use. The LR-to-HR ratio of the
        rule's statistic, taken on the plane where both exist, carries the LR volume's scale over: dividing both
        planes by it gives the LR side the rule's scale, as at inference. 1 when either plane has no foreground, and
        always 1 for ``minmax`` (whose offset a ratio cannot carry).
        """
        if self.kind != "percentile":
            return 1.0
        hr, lr = np.asarray(hr_plane), np.asarray(lr_plane)
        hr_fg, lr_fg = hr[hr > 0], lr[lr > 0]
        if hr_fg.size == 0 or lr_fg.size == 0:
            return 1.0
        ratio = float(np.percentile(lr_fg.astype(np.float64), float(self.percentile))) / float(
            np.percentile(hr_fg.astype(np.float64), float(self.percentile))
        )
        return ratio if math.isfinite(ratio) and ratio > 0 else 1.0


#: PRETTIER's rule (Giraldo et al. 2024): 1.25 × the LR foreground P99.5 maps to 1 (the brightest voxels stay below 1);
#: the code default of the PRETTIER data module and systems, ``conf/intensity/prettier.yaml`` in the experiments.
PRETTIER_RULE = IntensityRule(headroom=1.25)
