"""The acquisition of a thick-slice input: slice thickness and slice-profile kind, each with where it came from.

A NIfTI header stores the slice *separation* S but not the slice *thickness* T (the FWHM of the slice profile, < S with
gaps), nor the profile's shape. :func:`resolve_acquisition` takes each from the first source that has it
(docs/physics.md §4):

thickness T
    1. ``argument`` — the model's own setting or ``infer.py thickness=``;
    2. ``sidecar`` — ``SliceThickness`` of a BIDS / dcm2niix JSON sidecar beside the image (its
       ``SpacingBetweenSlices``, when present, must agree with the NIfTI separation);
    3. ``estimate`` — estimated from the image (:func:`mrisr.physics.estimation.estimate_slice_profile`);
    4. ``separation`` — T = S (no gap), with a logged warning, the project-wide default (docs/physics.md §1).

profile kind
    ``argument`` (the model's setting: slr, gaussian, rect or file) or ``estimate`` (``profile="auto"``: the kind is
    estimated jointly with the thickness, and the estimate's thickness is used when no argument or sidecar gives one).

The same vocabulary is used by the sidecar of every SR output, the fit record and the logs. Every thickness, whatever
its source, must be finite, > 0 and ≤ :data:`MAX_THICKNESS_RATIO` × S.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mrisr.core.errors import MrisrInputError
from mrisr.io.geometry import SliceGeometry, detect_slice_axis
from mrisr.io.nifti import Volume
from mrisr.io.sidecar import read_sidecar, sidecar_number, sidecar_path
from mrisr.physics.estimation import SliceProfileEstimate, estimate_slice_profile
from mrisr.physics.profiles import FWHMConvention

__all__ = [
    "MAX_THICKNESS_RATIO",
    "SPACING_TOLERANCE",
    "Acquisition",
    "AcquisitionRequest",
    "ProfileSource",
    "ThicknessSource",
    "estimate_volume_profile",
    "resolve_acquisition",
]

log = logging.getLogger(__name__)

ThicknessSource = Literal["argument", "sidecar", "estimate", "separation"]
ProfileSource = Literal["argument", "estimate"]

#: Largest accepted thickness as a multiple of the slice separation (heavily overlapping slices beyond that are
#: implausible and usually a unit or key mix-up).
MAX_THICKNESS_RATIO: float = 3.0

#: Largest accepted relative difference between the sidecar's ``SpacingBetweenSlices`` and the NIfTI separation.
SPACING_TOLERANCE: float = 0.10


@dataclass(frozen=True)
class AcquisitionRequest:
    """What a model knows or assumes about the acquisition before seeing the input.

    Attributes:
        thickness_mm: the model's slice thickness setting (mm), ``None`` = unknown.
        profile: the model's slice-profile kind, or ``auto`` (estimate it from the image).
        candidates: kinds considered by ``profile="auto"``; the first is preferred unless another fits clearly better.
        fwhm_convention: thickness → kernel FWHM convention of the forward model (docs/physics.md §2.2).
    """

    thickness_mm: float | None = None
    profile: str = "slr"
    candidates: tuple[str, ...] = ("slr", "gaussian", "rect")
    fwhm_convention: str = "variance"


@dataclass(frozen=True)
class Acquisition:
    """The resolved acquisition of one input.

    Attributes:
        thickness_mm: slice thickness T (FWHM of the slice profile), mm.
        thickness_source: ``argument``, ``sidecar``, ``estimate`` or ``separation``.
        thickness_detail: one line naming the file and key, the estimate, or why the separation was used.
        profile: slice-profile kind (``slr``, ``gaussian``, ``rect`` or ``file``).
        profile_source: ``argument`` or ``estimate``.
        estimate: the image estimate's summary when one was made (kind, FWHM, spread, per-kind fits, seconds).
    """

    thickness_mm: float
    thickness_source: ThicknessSource
    thickness_detail: str
    profile: str = "slr"
    profile_source: ProfileSource = "argument"
    estimate: dict[str, Any] | None = field(default=None, compare=False)

    def as_record(self) -> dict[str, Any]:
        """JSON-ready record for sidecars and fit summaries."""
        record: dict[str, Any] = {
            "thickness_mm": self.thickness_mm,
            "thickness_source": self.thickness_source,
            "thickness_detail": self.thickness_detail,
            "profile": self.profile,
            "profile_source": self.profile_source,
        }
        if self.estimate is not None:
            record["profile_estimate"] = self.estimate
        return record


def _check_thickness(
    thickness: Any, separation: float, label: str | os.PathLike[str] | None, what: str, fix: str
) -> float:
    if isinstance(thickness, bool) or not isinstance(thickness, numbers.Real):
        raise MrisrInputError(label, f"{what} is not a number ({thickness!r})", fix)
    value = float(thickness)
    if not math.isfinite(value) or value <= 0:
        raise MrisrInputError(label, f"{what} = {thickness!r} is not a positive length in mm", fix)
    if value > MAX_THICKNESS_RATIO * separation:
        raise MrisrInputError(
            label,
            f"{what} = {value:g} mm exceeds {MAX_THICKNESS_RATIO:g} x the slice separation {separation:g} mm",
            fix,
        )
    return value


def sidecar_thickness(input_path: str | os.PathLike[str] | None, geometry: SliceGeometry) -> tuple[float, str] | None:
    """``SliceThickness`` (mm) of the JSON sidecar beside ``input_path`` and a detail line; ``None`` without one.

    Raises:
        MrisrInputError: an unreadable sidecar, non-numeric or non-positive keys, a ``SliceThickness`` > 3 × S, or a
            ``SpacingBetweenSlices`` that differs from the NIfTI separation by more than 10 %.
    """
    if input_path is None:
        return None
    side = sidecar_path(input_path)
    if not side.is_file():
        return None
    separation = float(geometry.separation_mm)
    record = read_sidecar(side)
    spacing = sidecar_number(record, "SpacingBetweenSlices", side)
    if spacing is not None and abs(spacing - separation) > SPACING_TOLERANCE * separation:
        raise MrisrInputError(
            side,
            f"sidecar key 'SpacingBetweenSlices' = {spacing:g} mm contradicts the NIfTI slice separation "
            f"{separation:g} mm along axis {geometry.axis} (differs by more than {SPACING_TOLERANCE:.0%})",
            "check that the sidecar belongs to this image (or that the image was not resampled), "
            "or pass the thickness explicitly",
        )
    thickness = sidecar_number(record, "SliceThickness", side)
    if thickness is None:
        return None
    value = _check_thickness(
        thickness,
        separation,
        side,
        "sidecar key 'SliceThickness'",
        "fix SliceThickness in the sidecar (mm) or pass the thickness explicitly",
    )
    detail = f"SliceThickness = {value:g} mm from {side}"
    if spacing is not None:
        detail += f" (SpacingBetweenSlices = {spacing:g} mm)"
    return value, detail


def _estimate(volume: Volume, geometry: SliceGeometry, request: AcquisitionRequest, joint: bool) -> Any:
    if joint:
        return estimate_slice_profile(
            volume.data,
            axis=geometry.axis,
            separation_mm=geometry.separation_mm,
            inplane_spacing_mm=geometry.inplane_spacing_mm,
            shapes=tuple(request.candidates),
            convention=request.fwhm_convention,  # type: ignore[arg-type]
        )
    return estimate_slice_profile(
        volume.data,
        axis=geometry.axis,
        separation_mm=geometry.separation_mm,
        inplane_spacing_mm=geometry.inplane_spacing_mm,
    )


def _estimate_record(estimate: Any) -> dict[str, Any]:
    return {
        "shape": estimate.shape,
        "fwhm_mm": estimate.fwhm_mm,
        "fwhm_spread_mm": estimate.fwhm_spread_mm,
        "mismatch": {k: f.mismatch for k, f in estimate.fits.items()},
        "fwhm_mm_by_shape": {k: f.fwhm_mm for k, f in estimate.fits.items()},
        "seconds": round(estimate.seconds, 2),
    }


def resolve_acquisition(
    input_path: str | os.PathLike[str] | None,
    volume: Volume,
    geometry: SliceGeometry,
    request: AcquisitionRequest | None = None,
    estimate: bool = True,
) -> Acquisition:
    """Slice thickness and profile kind of ``volume`` from the first source that has each (module docstring).

    Args:
        input_path: the image file (its sidecar is ``<stem>.json``); ``None`` for in-memory volumes (no sidecar).
        volume: the thick-slice volume (only read when estimating).
        geometry: its slice geometry; S = ``geometry.separation_mm``.
        request: the model's settings (thickness, profile, candidates, convention); ``None`` = nothing known.
        estimate: estimate an unknown thickness from the image (else fall back to the separation). A profile of
            ``auto`` is always estimated.

    Raises:
        MrisrInputError: an invalid thickness from any source, or an invalid sidecar (:func:`sidecar_thickness`).
    """
    request = request or AcquisitionRequest()
    separation = float(geometry.separation_mm)
    label = None if input_path is None else Path(input_path)
    thickness: float | None = None
    source: ThicknessSource = "separation"
    detail = ""
    if request.thickness_mm is not None:
        thickness = _check_thickness(
            request.thickness_mm, separation, label, "the given slice thickness", "pass the slice thickness in mm"
        )
        source, detail = "argument", f"thickness {thickness:g} mm given explicitly"
    else:
        from_sidecar = sidecar_thickness(input_path, geometry)
        if from_sidecar is not None:
            thickness, detail = from_sidecar
            source = "sidecar"
            log.info("%s: slice thickness %s", label, detail)

    joint = request.profile == "auto"
    estimated = None
    if joint or (thickness is None and estimate):
        estimated = _estimate(volume, geometry, request, joint)
    if thickness is None and estimated is not None:
        thickness = _check_thickness(
            estimated.fwhm_mm,
            separation,
            label,
            "the estimated slice thickness",
            "pass the slice thickness explicitly (thickness=...)",
        )
        source, detail = "estimate", estimated.summary()
        log.info("%s: slice thickness %.3g mm estimated from the image (%s)", label or "input", thickness, detail)
    if thickness is None:
        log.warning(
            "%s: slice thickness unknown (no argument, no SliceThickness in a sidecar, estimation off); using the "
            "slice separation %.4g mm (no gap). Pass the thickness if the slices have gaps.",
            label or "input",
            separation,
        )
        thickness, source = separation, "separation"
        detail = f"slice separation {separation:g} mm (thickness unknown)"
    if joint:
        assert estimated is not None
        log.info("profile=auto: %s (thickness from %s)", estimated.summary(), source)
        return Acquisition(thickness, source, detail, estimated.shape, "estimate", _estimate_record(estimated))
    return Acquisition(thickness, source, detail, str(request.profile), "argument")


def estimate_volume_profile(
    volume: Volume,
    axis: int | Literal["auto"] = "auto",
    separation_mm: float | None = None,
    shapes: tuple[str, ...] | list[str] = ("slr",),
    convention: FWHMConvention = "variance",
    slab_compensation: bool = False,
) -> SliceProfileEstimate:
    """:func:`estimate_slice_profile` on a :class:`~mrisr.io.nifti.Volume` with its slice geometry.

    Args:
        volume: thick-slice volume (data and affine).
        axis: through-plane axis or ``auto`` (docs/physics.md §4 detection; refuses near-isotropic volumes).
        separation_mm: slice separation S (mm); default the spacing along ``axis``.
        shapes: candidate profile kinds.
        convention: thickness → kernel FWHM convention.
        slab_compensation: see :func:`estimate_slice_profile`.

    Returns:
        :class:`SliceProfileEstimate`.
    """
    geometry = detect_slice_axis(volume, axis=axis, allow_anisotropic_inplane=True)
    separation = geometry.separation_mm if separation_mm is None else float(separation_mm)
    try:
        return estimate_slice_profile(
            volume.data,
            axis=geometry.axis,
            separation_mm=separation,
            inplane_spacing_mm=geometry.inplane_spacing_mm,
            shapes=shapes,
            convention=convention,
            slab_compensation=slab_compensation,
        )
    except MrisrInputError as err:
        raise MrisrInputError(getattr(volume, "path", None), err.problem, err.fix) from err
