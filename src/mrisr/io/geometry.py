"""Through-plane (slice) axis detection and header checks (docs/physics.md §4).

The slice axis is the voxel axis with the largest spacing. Plain ``argmax`` silently picks axis 0 for
isotropic volumes, so automatic detection requires the largest zoom to exceed the second largest by
``min_ratio``; otherwise the caller must name the axis. The super-resolution factor is kept at full
precision, ``s = S / Δ`` with S the slice separation and Δ the in-plane spacing.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.affines import obliquity

from mrisr.core.errors import MrisrInputError
from mrisr.io.nifti import Volume, header_to_mm

__all__ = ["ZOOM_AFFINE_TOLERANCE_MM", "SliceGeometry", "detect_slice_axis"]

_LOG = logging.getLogger(__name__)

#: Largest accepted difference between header zooms and affine column norms before warning (mm).
ZOOM_AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class SliceGeometry:
    """Slice geometry of a thick-slice volume.

    Attributes:
        axis: Voxel axis (0, 1 or 2) along which slices are stacked.
        zooms: Voxel spacing ``(dx, dy, dz)`` in mm used for the computation (header zooms, or the
            affine column norms when the two disagree).
        separation_mm: Slice separation S, the spacing along ``axis`` (mm).
        inplane_spacing_mm: In-plane spacing Δ, the smaller of the two other spacings (mm).
        inplane_axes: The two voxel axes other than ``axis``, ascending.
        factor: Super-resolution factor ``S / Δ`` at full precision (not rounded).
        axis_code: Anatomical direction letter of ``axis`` from :func:`nibabel.aff2axcodes`
            (e.g. ``"S"``), ``"?"`` when undetermined.
        obliquity_deg: Largest angle between a voxel axis and its closest world axis (degrees).
        inplane_anisotropy: Ratio of the larger to the smaller in-plane spacing (1.0 when isotropic).
    """

    axis: int
    zooms: tuple[float, float, float]
    separation_mm: float
    inplane_spacing_mm: float
    inplane_axes: tuple[int, int]
    factor: float
    axis_code: str
    obliquity_deg: float
    inplane_anisotropy: float


def _geometry_inputs(
    volume: Volume | nib.Nifti1Image,
) -> tuple[np.ndarray, tuple[float, float, float], Path | None]:
    """Affine (mm), header zooms (mm) and file label of a volume or a nibabel image (no data read)."""
    if isinstance(volume, Volume):
        return volume.affine, volume.zooms, volume.path
    if not isinstance(volume, nib.Nifti1Pair):
        raise TypeError(f"detect_slice_axis expects a Volume or a NIfTI image, got {type(volume).__name__}")
    fname = volume.get_filename()
    label = Path(fname) if fname else None
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) < 3 or any(s != 1 for s in shape[3:]):
        raise MrisrInputError(
            label,
            f"image of shape {shape} is not a single 3-D volume",
            "pass a 3-D image (extract one volume from 4-D series first)",
        )
    header = volume.header.copy()
    affine = header_to_mm(header, np.asarray(volume.affine, dtype=np.float64), label)
    z = header.get_zooms()[:3]
    return affine, (float(z[0]), float(z[1]), float(z[2])), label


def _validate_axis(axis: object, label: Path | os.PathLike[str] | None) -> int | None:
    if isinstance(axis, str):
        if axis == "auto":
            return None
    elif isinstance(axis, int | np.integer) and not isinstance(axis, bool | np.bool_) and 0 <= int(axis) <= 2:
        return int(axis)
    raise MrisrInputError(label, f"invalid slice axis {axis!r}", "pass axis='auto' or one of 0, 1, 2")


def detect_slice_axis(
    volume: Volume | nib.Nifti1Image,
    axis: int | Literal["auto"] = "auto",
    min_ratio: float = 1.2,
    allow_anisotropic_inplane: bool = False,
    inplane_tolerance_mm: float = 0.01,
) -> SliceGeometry:
    """Find the through-plane axis and the super-resolution factor of a volume.

    Steps (docs/physics.md §4): zooms are checked against the affine column norms (a difference above
    1e-3 mm warns and the affine wins); with ``axis="auto"`` the axis of the largest zoom is taken
    only if it exceeds the second largest by ``min_ratio``; the two in-plane spacings must agree to
    ``inplane_tolerance_mm`` unless ``allow_anisotropic_inplane`` (then Δ = the smaller one and a
    warning gives the ratio). The factor is ``S / Δ`` at full precision.

    Args:
        volume: A :class:`Volume` (affine already in mm) or a nibabel NIfTI image (units converted
            as in :func:`mrisr.io.load_volume`; its data are not read).
        axis: ``"auto"`` or an explicit voxel axis 0, 1 or 2 (always accepted, even when the volume is
            isotropic or the axis is not the coarsest).
        min_ratio: Minimum ratio of the largest to the second-largest zoom for automatic detection.
        allow_anisotropic_inplane: Accept in-plane spacings that differ by more than the tolerance.
        inplane_tolerance_mm: Largest accepted in-plane spacing difference (mm).

    Returns:
        The :class:`SliceGeometry`.

    Raises:
        MrisrInputError: Invalid axis; near-isotropic voxels with ``axis="auto"``; anisotropic
            in-plane spacing without ``allow_anisotropic_inplane``; invalid zooms.
        ValueError: ``min_ratio < 1`` or a negative tolerance.
    """
    if not min_ratio >= 1.0:
        raise ValueError(f"min_ratio must be >= 1, got {min_ratio}")
    if not inplane_tolerance_mm >= 0.0:
        raise ValueError(f"inplane_tolerance_mm must be >= 0, got {inplane_tolerance_mm}")
    affine, header_zooms, label = _geometry_inputs(volume)
    explicit = _validate_axis(axis, label)

    hz = np.asarray(header_zooms, dtype=np.float64)
    if not np.all(np.isfinite(hz)) or np.any(hz <= 0):
        raise MrisrInputError(
            label,
            f"invalid voxel sizes {tuple(hz.tolist())}: they must be finite and > 0",
            "repair the header",
        )
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    diff = np.abs(hz - norms)
    if np.any(diff > ZOOM_AFFINE_TOLERANCE_MM):
        msg = (
            f"{label or '<in-memory image>'}: header zooms {tuple(np.round(hz, 6).tolist())} differ from the "
            f"affine column norms {tuple(np.round(norms, 6).tolist())} by up to {diff.max():.4g} mm; "
            "using the affine"
        )
        _LOG.warning(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
        zooms_arr = norms
    else:
        zooms_arr = hz
    zooms = (float(zooms_arr[0]), float(zooms_arr[1]), float(zooms_arr[2]))

    if explicit is None:
        order = np.argsort(zooms_arr, kind="stable")[::-1]
        a = int(order[0])
        largest, second = zooms[a], zooms[int(order[1])]
        ratio = largest / second
        if ratio < min_ratio:
            raise MrisrInputError(
                label,
                f"near-isotropic voxels {zooms} mm: the largest spacing is only {ratio:.3f}x the second "
                f"(< min_ratio {min_ratio}), nothing to super-resolve",
                "pass axis=0|1|2 explicitly if this volume should still be treated as thick-slice",
            )
    else:
        a = explicit

    inplane_axes = (0, 1, 2)[:a] + (0, 1, 2)[a + 1 :]
    ia, ib = inplane_axes
    za, zb = zooms[ia], zooms[ib]
    delta = min(za, zb)
    anisotropy = max(za, zb) / delta
    if abs(za - zb) > inplane_tolerance_mm:
        if not allow_anisotropic_inplane:
            raise MrisrInputError(
                label,
                f"anisotropic in-plane spacing {za:.6g} x {zb:.6g} mm along axes {inplane_axes} "
                f"(difference {abs(za - zb):.4g} mm > tolerance {inplane_tolerance_mm} mm, "
                f"ratio {anisotropy:.4f})",
                "resample in-plane to isotropic spacing, or set allow_anisotropic_inplane=True "
                "to use the smaller spacing",
            )
        msg = (
            f"{label or '<in-memory image>'}: anisotropic in-plane spacing {za:.6g} x {zb:.6g} mm "
            f"(ratio {anisotropy:.4f}); using in-plane spacing = min = {delta:.6g} mm"
        )
        _LOG.warning(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)

    separation = zooms[a]
    factor = separation / delta
    codes = nib.aff2axcodes(affine)
    axis_code = str(codes[a]) if codes[a] is not None else "?"
    angles = np.nan_to_num(np.asarray(obliquity(affine), dtype=np.float64), nan=0.0)
    obliq = float(np.degrees(np.max(np.abs(angles))))
    if factor < 1.0:
        _LOG.warning(
            "%s: slice axis %d has spacing %.6g mm, finer than in-plane %.6g mm (factor %.6g < 1)",
            label,
            a,
            separation,
            delta,
            factor,
        )
    _LOG.info(
        "%s: slice axis %d (%s), separation %.6g mm, in-plane %.6g mm, factor %.10g (3 decimals: %.3f), "
        "obliquity %.3g deg",
        label,
        a,
        axis_code,
        separation,
        delta,
        factor,
        factor,
        obliq,
    )
    return SliceGeometry(
        axis=a,
        zooms=zooms,
        separation_mm=separation,
        inplane_spacing_mm=delta,
        inplane_axes=(ia, ib),
        factor=factor,
        axis_code=axis_code,
        obliquity_deg=obliq,
        inplane_anisotropy=anisotropy,
    )
