"""Degradations built on :mod:`mrisr.physics`: TorchIO-compatible transforms, presets and test-time simulation.

Deterministic ops are nouns (:class:`SliceProfile`, :class:`Downsample`, …); ``Random…`` wrappers only sample their
parameters and delegate. :class:`DegradationStack` is one preset (``conf/degradation/*.yaml``): an ordered list of
steps. :class:`ThickSlice` is the plain whole-volume acquisition model.

Names are imported lazily (PEP 562), so ``import mrisr`` and the command-line tools do not pay for TorchIO unless a
transform is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Downsample": "acquisition",
    "RandomSliceGap": "acquisition",
    "RandomSliceProfile": "acquisition",
    "SliceGap": "acquisition",
    "SliceProfile": "acquisition",
    "Upsample": "acquisition",
    "thickness_grid": "acquisition",
    "GEOMETRY_KEY": "base",
    "AcquisitionGeometry": "base",
    "DegradationTransform": "base",
    "PlannedStep": "base",
    "RandomDegradationTransform": "base",
    "DegradedInputCache": "fair",
    "degrade_for_test": "fair",
    "subject_seed": "fair",
    "BiasField": "intensity",
    "GaussianBlur": "intensity",
    "IntensityJitter": "intensity",
    "Noise": "intensity",
    "RandomBiasField": "intensity",
    "RandomGaussianBlur": "intensity",
    "RandomIntensityJitter": "intensity",
    "RandomNoise": "intensity",
    "InterlaceMotion": "spatial",
    "RandomInterlaceMotion": "spatial",
    "RandomRescale": "spatial",
    "RandomRotate": "spatial",
    "Rescale": "spatial",
    "Rotate": "spatial",
    "DegradationResult": "stack",
    "DegradationStack": "stack",
    "ThickSlice": "thick_slice",
}

__all__ = [
    "GEOMETRY_KEY",
    "AcquisitionGeometry",
    "BiasField",
    "DegradationResult",
    "DegradationStack",
    "DegradationTransform",
    "DegradedInputCache",
    "Downsample",
    "GaussianBlur",
    "IntensityJitter",
    "InterlaceMotion",
    "Noise",
    "PlannedStep",
    "RandomBiasField",
    "RandomDegradationTransform",
    "RandomGaussianBlur",
    "RandomIntensityJitter",
    "RandomInterlaceMotion",
    "RandomNoise",
    "RandomRescale",
    "RandomRotate",
    "RandomSliceGap",
    "RandomSliceProfile",
    "Rescale",
    "Rotate",
    "SliceGap",
    "SliceProfile",
    "ThickSlice",
    "Upsample",
    "degrade_for_test",
    "subject_seed",
    "thickness_grid",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from mrisr.degradations.acquisition import (
        Downsample,
        RandomSliceGap,
        RandomSliceProfile,
        SliceGap,
        SliceProfile,
        Upsample,
        thickness_grid,
    )
    from mrisr.degradations.base import (
        GEOMETRY_KEY,
        AcquisitionGeometry,
        DegradationTransform,
        PlannedStep,
        RandomDegradationTransform,
    )
    from mrisr.degradations.fair import DegradedInputCache, degrade_for_test, subject_seed
    from mrisr.degradations.intensity import (
        BiasField,
        GaussianBlur,
        IntensityJitter,
        Noise,
        RandomBiasField,
        RandomGaussianBlur,
        RandomIntensityJitter,
        RandomNoise,
    )
    from mrisr.degradations.spatial import (
        InterlaceMotion,
        RandomInterlaceMotion,
        RandomRescale,
        RandomRotate,
        Rescale,
        Rotate,
    )
    from mrisr.degradations.stack import DegradationResult, DegradationStack
    from mrisr.degradations.thick_slice import ThickSlice
