"""Intensity normalisation: the one rule for scaling MRI intensities before a network or a metric sees them.

MRI intensities have no physical unit, so every volume is scaled by a robust statistic of its own foreground
(docs/evaluation.md §1): the ``percentile``-th percentile (default 99.5) of the voxels > 0, or of a given region.
Training volumes, inference inputs, degradation stacks and image metrics all use :func:`foreground_percentile`, and
share one policy for volumes without foreground: they are refused with a :class:`~mrisr.core.errors.MrisrInputError`
(a scale of 1 would silently feed a network values far outside what it was trained on).

Zero-shot models rescale their input to [0, 1] by its minimum and maximum instead (SMORE, Zhao et al. 2021);
:func:`minmax_scaling` is that rule, with the same refusal of constant volumes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrisr.core.errors import MrisrInputError

__all__ = ["DEFAULT_PERCENTILE", "IntensityScaling", "foreground_percentile", "minmax_scaling", "percentile_scaling"]

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
