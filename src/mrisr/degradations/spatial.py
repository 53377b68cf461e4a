"""Spatial degradations: random rescale and rotation of the HR image, interlace motion of the LR image.

Physics.md §6 rows 1, 2 and 6 (Graf et al. 2024). Rescale and rotation act on the HR image before the LR branch
exists (``branch = "both"``: whatever the stack has at that point, HR and LR alike); interlace motion degrades the
LR branch only. All use linear interpolation with border padding (a constant image stays constant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch

from mrisr.degradations.base import (
    AcquisitionGeometry,
    IntensityDegradation,
    RandomIntensityDegradation,
    RandomSpatialDegradation,
    SpatialDegradation,
    _check_range,
    draw_int,
    draw_uniform,
)
from mrisr.degradations.functional import interlace_motion, rescale, rotate

__all__ = [
    "InterlaceMotion",
    "RandomInterlaceMotion",
    "RandomRescale",
    "RandomRotate",
    "Rescale",
    "Rotate",
]


class Rescale(SpatialDegradation):
    """Isotropic rescaling about the image centre by the grid factor ``factor`` (docs/physics.md §6 row 1).

    ``factor`` > 1 shrinks the content, < 1 magnifies it (Graf et al.'s code convention); border padding.

    Args:
        factor: grid scale factor (1 = identity).
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    branch = "both"

    def __init__(self, factor: float, axis: int | None = None, train_only: bool = False) -> None:
        super().__init__(axis=axis, train_only=train_only)
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"factor must be finite and > 0, got {factor!r}")
        self.factor = float(factor)
        self.args_names = ["factor", "axis", "train_only"]

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        return {"factor": self.factor}

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        return rescale(x, params["factor"], "nearest" if nearest else "bilinear")


class RandomRescale(RandomSpatialDegradation):
    """Rescale with factor ~ U(``factor_range``) (Graf et al.: 0.75–1.5, p = 0.3, train only).

    Args:
        factor_range: (min, max) grid scale factor.
        prob: probability of rescaling.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    op_class = Rescale

    def __init__(
        self,
        factor_range: Sequence[float] = (0.75, 1.5),
        prob: float = 1.0,
        axis: int | None = None,
        train_only: bool = True,
    ) -> None:
        super().__init__(prob=prob, axis=axis, train_only=train_only)
        self.factor_range = _check_range("factor_range", factor_range, 1e-6)
        self.args_names = ["factor_range", "prob", "axis", "train_only"]

    def randomize(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> dict[str, Any]:
        return {"factor": draw_uniform(generator, *self.factor_range)}


class Rotate(SpatialDegradation):
    """In-plane rotation by ``angle_deg`` about the image centre (docs/physics.md §6 row 2), bilinear, border padding.

    Args:
        angle_deg: rotation angle in degrees (0 = identity).
        plane: the two spatial axes spanning the rotation plane (default: the through-plane axis and the first
            other axis longer than 1, i.e. rows and columns of a 2-D plane).
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    branch = "both"

    def __init__(
        self,
        angle_deg: float,
        plane: Sequence[int] | None = None,
        axis: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__(axis=axis, train_only=train_only)
        if not math.isfinite(angle_deg):
            raise ValueError(f"angle_deg must be finite, got {angle_deg!r}")
        self.angle_deg = float(angle_deg)
        self.plane = None if plane is None else [int(p) for p in plane]
        self.args_names = ["angle_deg", "plane", "axis", "train_only"]

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        plane = self.plane
        if plane is None:  # the plane of the through-plane axis and the first other non-singleton axis
            shape = geometry.current_shape
            others = [d for d in range(len(shape)) if d != geometry.axis]
            plane = [geometry.axis, next((d for d in others if shape[d] > 1), others[0])]
        return {"angle_deg": self.angle_deg, "plane": plane}

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        return rotate(x, params["angle_deg"], params["plane"], "nearest" if nearest else "bilinear")


class RandomRotate(RandomSpatialDegradation):
    """Rotation by an angle ~ U(``angle_range_deg``) (Graf et al.: ±5°, p = 0.3, train only).

    Args:
        angle_range_deg: (min, max) angle in degrees.
        plane: see :class:`Rotate`.
        prob: probability of rotating.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    op_class = Rotate

    def __init__(
        self,
        angle_range_deg: Sequence[float] = (-5.0, 5.0),
        plane: Sequence[int] | None = None,
        prob: float = 1.0,
        axis: int | None = None,
        train_only: bool = True,
    ) -> None:
        super().__init__(prob=prob, axis=axis, train_only=train_only)
        self.angle_range_deg = _check_range("angle_range_deg", angle_range_deg)
        self.plane = None if plane is None else [int(p) for p in plane]
        self.args_names = ["angle_range_deg", "plane", "prob", "axis", "train_only"]

    def randomize(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> dict[str, Any]:
        return {"angle_deg": draw_uniform(generator, *self.angle_range_deg), "plane": self.plane}


class InterlaceMotion(IntensityDegradation):
    """Interlace motion artefact: every other band of rows displaced in-plane (docs/physics.md §6 row 6).

    Bands are ``band_rows`` HR rows high (converted to LR rows when the LR branch is on its own grid, so an LR
    stack shows alternate slices displaced); the moved bands shift by ``shift_fraction`` of the image width along
    ``shift_axis`` (paper semantics: along the columns only) and by ``row_shift_fraction`` of the height along the
    rows (Graf et al.'s code moves both). Unmoved bands are untouched.

    Args:
        band_rows: band height in HR rows (> 0).
        shift_fraction: displacement as a fraction of the image size along ``shift_axis`` (0 = identity).
        shift_axis: spatial axis of the displacement; default the first axis other than the through-plane axis
            that is longer than 1 (the columns of a 2-D plane).
        phase: 0 moves the odd bands, 1 the even bands.
        row_shift_fraction: displacement along the rows as a fraction of their number (code semantics).
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    preserves_alignment = False

    def __init__(
        self,
        band_rows: float,
        shift_fraction: float,
        shift_axis: int | None = None,
        phase: int = 0,
        row_shift_fraction: float = 0.0,
        axis: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__(axis=axis, train_only=train_only)
        if not (math.isfinite(band_rows) and band_rows > 0):
            raise ValueError(f"band_rows must be > 0, got {band_rows!r}")
        self.band_rows = float(band_rows)
        self.shift_fraction = float(shift_fraction)
        self.shift_axis = shift_axis
        self.phase = int(phase)
        self.row_shift_fraction = float(row_shift_fraction)
        self.args_names = [
            "band_rows",
            "shift_fraction",
            "shift_axis",
            "phase",
            "row_shift_fraction",
            "axis",
            "train_only",
        ]

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        shape = geometry.current_shape
        if self.shift_axis is not None:
            shift_axis = int(self.shift_axis)
        else:
            candidates = [d for d in range(len(shape)) if d != geometry.axis]
            shift_axis = next((d for d in candidates if shape[d] > 1), candidates[0])
        band = self.band_rows / geometry.step if geometry.grid == "lr" and geometry.step else self.band_rows
        return {
            "band_rows_hr": self.band_rows,
            "band_rows": band,
            "shift_axis": shift_axis,
            "shift_px": self.shift_fraction * shape[shift_axis],
            "row_shift_px": self.row_shift_fraction * shape[geometry.axis],
            "phase": self.phase,
        }

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        return interlace_motion(
            x,
            axis,
            params["band_rows"],
            params["shift_px"],
            params["shift_axis"],
            params["phase"],
            params["row_shift_px"],
        )


class RandomInterlaceMotion(RandomIntensityDegradation):
    """Interlace motion with band height ~ U{``band_rows_range``} and shift ~ U(``shift_fraction_range``).

    Paper semantics (default): 4–10 rows inclusive, 0.2–2 % of the width, along the columns, p = 0.15 of the LR
    images. ``shift_along="both"`` also moves the bands along the rows by the same fraction (Graf et al.'s code).

    Args:
        band_rows_range: (min, max) band height in HR rows, integers, both included.
        shift_fraction_range: (min, max) displacement as a fraction of the image size.
        shift_along: ``columns`` (paper) or ``both`` (code).
        shift_axis: see :class:`InterlaceMotion`.
        prob: probability of the artefact.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    op_class = InterlaceMotion

    def __init__(
        self,
        band_rows_range: Sequence[int] = (4, 10),
        shift_fraction_range: Sequence[float] = (0.002, 0.02),
        shift_along: Literal["columns", "both"] = "columns",
        shift_axis: int | None = None,
        prob: float = 1.0,
        axis: int | None = None,
        train_only: bool = True,
    ) -> None:
        super().__init__(prob=prob, axis=axis, train_only=train_only)
        low, high = _check_range("band_rows_range", band_rows_range, 1.0)
        self.band_rows_range = (int(low), int(high))
        self.shift_fraction_range = _check_range("shift_fraction_range", shift_fraction_range)
        if shift_along not in ("columns", "both"):
            raise ValueError(f"shift_along must be 'columns' or 'both', got {shift_along!r}")
        self.shift_along = shift_along
        self.shift_axis = shift_axis
        self.args_names = [
            "band_rows_range",
            "shift_fraction_range",
            "shift_along",
            "shift_axis",
            "prob",
            "axis",
            "train_only",
        ]

    def randomize(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> dict[str, Any]:
        shift = draw_uniform(generator, *self.shift_fraction_range)
        return {
            "band_rows": draw_int(generator, *self.band_rows_range),
            "shift_fraction": shift,
            "shift_axis": self.shift_axis,
            "phase": draw_int(generator, 0, 1),
            "row_shift_fraction": shift if self.shift_along == "both" else 0.0,
        }
