"""Slice thickness of a thick-slice input: argument → JSON sidecar → image estimate → separation (docs/physics.md §4).

A NIfTI header stores the slice *separation* S (``pixdim`` along the slice axis) but not the slice *thickness* T (the
FWHM of the slice profile); with gaps T < S. :func:`resolve_thickness` takes T from the first source that has it:

1. the explicit argument (a user or config value);
2. a BIDS / dcm2niix JSON sidecar beside the image (``<stem>.json`` for ``<stem>.nii[.gz]``), key ``SliceThickness``
   (DICOM 0018,0050); its ``SpacingBetweenSlices`` (DICOM 0018,0088), when present, must agree with the NIfTI
   separation;
3. an estimate from the image itself (:func:`mrisr.physics.estimation.estimate_slice_profile`, or any callable);
4. the separation (T = S, no gap), with a logged warning, the project-wide default (docs/physics.md §1).

Every value, whatever its source, must be finite, > 0 and ≤ :data:`MAX_THICKNESS_RATIO` × S; a sidecar that cannot be
read or whose values are not numbers raises :class:`~mrisr.core.errors.MrisrInputError` naming the file and the key.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mrisr.core.errors import MrisrInputError
from mrisr.io.geometry import SliceGeometry
from mrisr.io.nifti import Volume

__all__ = [
    "MAX_THICKNESS_RATIO",
    "SPACING_TOLERANCE",
    "ThicknessResolution",
    "ThicknessSource",
    "read_sidecar",
    "resolve_thickness",
    "sidecar_path",
]

log = logging.getLogger(__name__)

ThicknessSource = Literal["argument", "sidecar", "estimate", "separation"]

#: Largest accepted thickness as a multiple of the slice separation (heavily overlapping slices beyond that are
#: implausible and usually a unit or key mix-up).
MAX_THICKNESS_RATIO: float = 3.0

#: Largest accepted relative difference between the sidecar's ``SpacingBetweenSlices`` and the NIfTI separation.
SPACING_TOLERANCE: float = 0.10

#: Estimator hook: ``(volume, geometry) -> thickness in mm`` (a float, or an object with a ``fwhm_mm`` attribute).
ThicknessEstimator = Callable[[Volume, SliceGeometry], Any]


@dataclass(frozen=True)
class ThicknessResolution:
    """Where the slice thickness came from.

    Attributes:
        thickness_mm: slice thickness T (FWHM of the slice profile), mm.
        source: ``argument``, ``sidecar``, ``estimate`` or ``separation``.
        detail: one human-readable line (file and key, estimator summary, or why the separation was used).
    """

    thickness_mm: float
    source: ThicknessSource
    detail: str


def sidecar_path(input_path: str | os.PathLike[str]) -> Path:
    """BIDS sidecar of an image: ``sub-01_T2w.nii.gz`` → ``sub-01_T2w.json`` (same folder).

    Args:
        input_path: NIfTI path (``.nii`` or ``.nii.gz``; other suffixes are replaced as they are).

    Returns:
        The ``.json`` path (it may not exist).
    """
    path = Path(input_path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON sidecar into a dict.

    Raises:
        MrisrInputError: the file cannot be read, is not valid JSON, or does not hold a JSON object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MrisrInputError(path, f"cannot read the JSON sidecar ({err})", "fix or remove the sidecar file") from err
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise MrisrInputError(
            path, f"the JSON sidecar is not valid JSON (line {err.lineno}: {err.msg})", "fix or remove the sidecar file"
        ) from err
    if not isinstance(record, dict):
        raise MrisrInputError(
            path, f"the JSON sidecar holds a {type(record).__name__}, not an object", "fix or remove the sidecar file"
        )
    return record


def _sidecar_number(record: dict[str, Any], key: str, path: Path) -> float | None:
    """``record[key]`` as a finite positive float, None when absent; errors name the file and the key."""
    if key not in record or record[key] is None:
        return None
    value = record[key]
    # JSON true/false parse as bool, a subclass of int: not a length.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MrisrInputError(
            path, f"sidecar key {key!r} is not a number ({value!r})", f"set {key} to a length in mm or remove it"
        )
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise MrisrInputError(
            path, f"sidecar key {key!r} = {value!r} is not a positive length", f"set {key} to a length in mm > 0"
        )
    return number


def _check_thickness(
    thickness: float, separation: float, label: str | os.PathLike[str] | None, what: str, fix: str
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


def _estimated_thickness(
    estimate: bool | ThicknessEstimator, volume: Volume, geometry: SliceGeometry
) -> tuple[float, str]:
    if estimate is True:
        from mrisr.physics.estimation import estimate_slice_profile

        result = estimate_slice_profile(
            volume.data,
            axis=geometry.axis,
            separation_mm=geometry.separation_mm,
            inplane_spacing_mm=geometry.inplane_spacing_mm,
        )
        return result.fwhm_mm, result.summary()
    value = estimate(volume, geometry)
    thickness = getattr(value, "fwhm_mm", value)
    name = getattr(estimate, "__name__", type(estimate).__name__)
    return thickness, f"estimated by {name}"


def resolve_thickness(
    input_path: str | os.PathLike[str] | None,
    volume: Volume,
    geometry: SliceGeometry,
    thickness_mm: float | None = None,
    estimate: bool | ThicknessEstimator = False,
) -> ThicknessResolution:
    """Slice thickness T of ``volume`` from the first source that has it (module docstring).

    Args:
        input_path: the image file (its sidecar is ``<stem>.json``); None for in-memory volumes (no sidecar).
        volume: the thick-slice volume (only read when estimating).
        geometry: its slice geometry (:func:`~mrisr.io.geometry.detect_slice_axis`); S = ``geometry.separation_mm``.
        thickness_mm: explicit thickness (mm); wins over every other source.
        estimate: False (skip), True (the built-in estimator on ``volume``) or a callable
            ``(volume, geometry) -> thickness_mm`` (a float or an object with ``fwhm_mm``).

    Returns:
        :class:`ThicknessResolution`.

    Raises:
        MrisrInputError: an invalid argument or estimate (not finite, ≤ 0, > 3 × S); a sidecar that cannot be read,
            is not a JSON object, holds a non-numeric / non-positive ``SliceThickness`` or ``SpacingBetweenSlices``,
            a ``SliceThickness`` > 3 × S, or a ``SpacingBetweenSlices`` that differs from S by more than 10 %.
    """
    separation = float(geometry.separation_mm)
    label = None if input_path is None else Path(input_path)
    if thickness_mm is not None:
        value = _check_thickness(
            thickness_mm, separation, label, "the given slice thickness", "pass the slice thickness in mm"
        )
        return ThicknessResolution(value, "argument", f"thickness {value:g} mm given explicitly")

    if label is not None:
        side = sidecar_path(label)
        if side.is_file():
            record = read_sidecar(side)
            spacing = _sidecar_number(record, "SpacingBetweenSlices", side)
            if spacing is not None and abs(spacing - separation) > SPACING_TOLERANCE * separation:
                raise MrisrInputError(
                    side,
                    f"sidecar key 'SpacingBetweenSlices' = {spacing:g} mm contradicts the NIfTI slice separation "
                    f"{separation:g} mm along axis {geometry.axis} (differs by more than {SPACING_TOLERANCE:.0%})",
                    "check that the sidecar belongs to this image (or that the image was not resampled), "
                    "or pass the thickness explicitly",
                )
            thickness = _sidecar_number(record, "SliceThickness", side)
            if thickness is not None:
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
                log.info("%s: slice thickness %s", label, detail)
                return ThicknessResolution(value, "sidecar", detail)

    if estimate is not False:
        thickness, detail = _estimated_thickness(estimate, volume, geometry)
        value = _check_thickness(
            thickness,
            separation,
            label,
            "the estimated slice thickness",
            "pass the slice thickness explicitly (thickness=...)",
        )
        log.info("%s: slice thickness %.3g mm estimated from the image (%s)", label or "input", value, detail)
        return ThicknessResolution(value, "estimate", detail)

    log.warning(
        "%s: slice thickness unknown (no argument, no SliceThickness in a sidecar, no estimate); using the slice "
        "separation %.4g mm (no gap). Pass the thickness if the slices have gaps.",
        label or "input",
        separation,
    )
    return ThicknessResolution(separation, "separation", f"slice separation {separation:g} mm (thickness unknown)")
