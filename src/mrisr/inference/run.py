"""The one function that super-resolves a volume: geometry, acquisition, per-volume fit, inferer, result.

:func:`run_on_volume` is shared by the Python API, ``infer.py``, the evaluation callbacks' test step and every
experiment, so they cannot drift apart. It never changes the model: what it learns about the input (the slice
thickness and profile, a per-volume fit) is passed along and returned in the :class:`InferenceResult`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch

from mrisr.core.errors import MrisrInputError
from mrisr.inference.acquisition import Acquisition, resolve_acquisition
from mrisr.inference.grid import output_grid
from mrisr.inference.options import VolumeSuperResolver
from mrisr.inference.result import InferenceResult
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume

__all__ = ["MIN_SLICES", "InferenceSettings", "run_on_volume"]

_LOG = logging.getLogger(__name__)

#: Fewest slices along the thick-slice axis that interpolation (and a learned model) can work with.
MIN_SLICES = 3


@dataclass(frozen=True)
class InferenceSettings:
    """How one volume is super-resolved, beyond the model itself.

    Attributes:
        axis: through-plane axis, or ``auto`` (largest spacing; near-isotropic input is refused).
        target_spacing_mm: output spacing along the axis (default: the in-plane spacing, isotropic output).
        allow_anisotropic_inplane: accept unequal in-plane spacings (the finer one becomes the target).
        seed: seed of the one :class:`torch.Generator` from which the fit and the inference draw their randomness.
        estimate_thickness: estimate an unknown slice thickness from the image (else fall back to the separation).
    """

    axis: int | Literal["auto"] = "auto"
    target_spacing_mm: float | None = None
    allow_anisotropic_inplane: bool = False
    seed: int = 0
    estimate_thickness: bool = True


def run_on_volume(
    model: VolumeSuperResolver, volume: Volume, settings: InferenceSettings | None = None
) -> InferenceResult:
    """Super-resolve one volume with ``model`` (module docstring).

    Models fitted per volume get the input's acquisition (:func:`~mrisr.inference.acquisition.resolve_acquisition`
    from the model's :meth:`acquisition_request`: argument → BIDS/dcm2niix sidecar → image estimate → separation)
    and are fitted with the run's generator; the fitted model's inferer, or the model's own for the others, produces
    the output on the grid of the input's geometry.

    Raises:
        MrisrInputError: fewer than :data:`MIN_SLICES` slices, or a geometry problem of the input.
    """
    settings = settings or InferenceSettings()
    geometry = detect_slice_axis(
        volume, axis=settings.axis, allow_anisotropic_inplane=settings.allow_anisotropic_inplane
    )
    n_slices = volume.shape[geometry.axis]
    if n_slices < MIN_SLICES:
        raise MrisrInputError(
            volume.path,
            f"only {n_slices} slice(s) along the through-plane axis {geometry.axis}",
            f"through-plane super-resolution needs at least {MIN_SLICES} slices; check the file or axis=",
        )
    grid = output_grid(geometry, n_slices, settings.target_spacing_mm)
    generator = torch.Generator().manual_seed(int(settings.seed))
    started = time.perf_counter()
    acquisition: Acquisition | None = None
    fitted = None
    if model.inference_protocol.fits_per_volume:
        request = model.acquisition_request()  # type: ignore[attr-defined]
        acquisition = resolve_acquisition(volume.path, volume, geometry, request, settings.estimate_thickness)
        _LOG.info(
            "slice thickness %.3g mm (%s), profile %s (%s)",
            acquisition.thickness_mm,
            acquisition.thickness_source,
            acquisition.profile,
            acquisition.profile_source,
        )
        fitted = model.fit_volume(volume, geometry, acquisition, generator)  # type: ignore[attr-defined]
        inferer = fitted.inferer
    else:
        inferer = model.inferer()  # type: ignore[attr-defined]
    output = inferer(volume, geometry, grid, generator)
    seconds = time.perf_counter() - started
    record: dict[str, Any] = {
        "method": model.method,
        "inference_protocol": str(model.inference_protocol),
        "seed": int(settings.seed),
        "axis": geometry.axis,
        "separation_mm": geometry.separation_mm,
        "inplane_spacing_mm": geometry.inplane_spacing_mm,
        "factor": geometry.factor,
        "output_spacing_mm": grid.spacing_mm,
        "output_shape": list(output.sr.shape),
        **(acquisition.as_record() if acquisition is not None else {}),
        **output.details,
        "seconds": round(seconds, 3),
    }
    return InferenceResult(
        sr=output.sr,
        geometry=geometry,
        grid=grid,
        seconds=seconds,
        uncertainty=output.uncertainty,
        acquisition=acquisition,
        fit=fitted,
        details=dict(output.details),
        record=record,
        warnings=[*(fitted.warnings if fitted is not None else []), *output.warnings],
    )
