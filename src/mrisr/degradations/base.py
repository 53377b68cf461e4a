"""Base classes of the degradation transforms: a deterministic op and a ``Random…`` wrapper that samples its parameters.

Every step of a degradation preset (``conf/degradation/*.yaml``) is one of these transforms. A step is used in two
ways:

* inside :class:`mrisr.degradations.stack.DegradationStack`, on batched tensors ``(B, C, *spatial)``: the stack
  first *plans* every step in order (:meth:`plan`: random parameters drawn from one ``torch.Generator``, geometry
  such as the slice separation propagated from step to step, nothing computed on pixels), then applies the planned
  deterministic ops to the HR and/or LR branch;
* on its own as a TorchIO transform (``transform(subject)``): the same plan/apply on every image of a
  :class:`torchio.Subject`, with the acquisition geometry carried from step to step in the subject under the key
  :data:`GEOMETRY_KEY`, so ``torchio.Compose([...])`` of our steps behaves like the stack. Applied deterministic ops
  are recorded in the subject's history with their (sampled) arguments.

Random wrappers only sample parameters in :meth:`RandomDegradationTransform.randomize` and delegate to the
deterministic op (MONAI ``Randomizable`` style); each has its own probability ``prob``, drawn from the generator,
never from the global RNG.
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torchio as tio
from torchio.transforms.augmentation import RandomTransform

__all__ = [
    "GEOMETRY_KEY",
    "AcquisitionGeometry",
    "DegradationTransform",
    "PlannedStep",
    "RandomDegradationTransform",
    "draw_int",
    "draw_seed",
    "draw_uniform",
]

#: Key under which the acquisition geometry travels in a :class:`torchio.Subject`.
GEOMETRY_KEY = "mrisr_geometry"

Branch = Literal["lr", "both"]
Grid = Literal["hr", "lr"]


@dataclass
class AcquisitionGeometry:
    """Geometry of the image being degraded, updated by each planned step.

    Attributes:
        axis: spatial through-plane axis (rows of a 2-D plane: 0).
        spacing_mm: HR spacing Δ along ``axis`` (mm).
        spatial_shape: HR spatial shape (voxels).
        train: whether training-only steps apply (``sample_pair``) or not (test-time ``__call__``).
        grid: ``hr`` while the LR branch is on the HR grid, ``lr`` after same-FOV downsampling.
        thickness_mm: slice thickness T of the last slice-profile step (None before / without one).
        separation_mm: slice separation S (None until a slice-profile or downsampling step sets it).
        step: sampling step s = S/Δ (HR voxels per LR slice) once downsampled.
        n_lr: number of LR slices once downsampled.
    """

    axis: int
    spacing_mm: float
    spatial_shape: tuple[int, ...]
    train: bool = True
    grid: Grid = "hr"
    thickness_mm: float | None = None
    separation_mm: float | None = None
    step: float | None = None
    n_lr: int | None = None

    @property
    def n_hr(self) -> int:
        """HR length along the through-plane axis."""
        return int(self.spatial_shape[self.axis])

    @property
    def current_shape(self) -> tuple[int, ...]:
        """Spatial shape of the LR branch at this point of the plan."""
        shape = list(self.spatial_shape)
        if self.grid == "lr":
            shape[self.axis] = int(self.n_lr)  # type: ignore[arg-type]
        return tuple(shape)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "axis": self.axis,
            "spacing_mm": float(self.spacing_mm),
            "spatial_shape": list(self.spatial_shape),
            "train": self.train,
            "grid": self.grid,
            "thickness_mm": self.thickness_mm,
            "separation_mm": self.separation_mm,
            "step": self.step,
            "n_lr": self.n_lr,
        }


@dataclass
class PlannedStep:
    """One step of a planned degradation.

    Attributes:
        name: class name of the step as listed in the preset (e.g. ``RandomSliceProfile``).
        op: the deterministic op to run, or None when the step was skipped (probability, train-only at test time).
        params: JSON-ready resolved parameters, passed to ``op.apply_tensor``.
        branch: ``lr`` (degraded branch only) or ``both`` (HR and LR alike).
        sampled: JSON-ready parameters drawn by a random wrapper (empty for deterministic steps).
        applied: whether the step runs.
    """

    name: str
    op: DegradationTransform | None
    params: dict[str, Any] = field(default_factory=dict)
    branch: Branch = "lr"
    sampled: dict[str, Any] = field(default_factory=dict)
    applied: bool = True

    def record(self) -> dict[str, Any]:
        """JSON-ready record of the step (for the parameters file next to results)."""
        out: dict[str, Any] = {"transform": self.name, "applied": self.applied}
        if self.op is not None and self.op.name != self.name:
            out["op"] = self.op.name
        out.update(self.sampled)
        out.update(self.params)
        return _jsonable(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return float(value)
    return value


# --------------------------------------------------------------------------------------------------
# Random draws from an explicit generator
# --------------------------------------------------------------------------------------------------


def _device(generator: torch.Generator | None) -> torch.device | str:
    return generator.device if generator is not None else "cpu"


def draw_uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    """One draw from U(low, high) (float64) from ``generator`` (None = torch's global generator)."""
    u = torch.rand((), generator=generator, dtype=torch.float64, device=_device(generator)).item()
    return float(low) + (float(high) - float(low)) * u


def draw_int(generator: torch.Generator | None, low: int, high: int) -> int:
    """One integer drawn uniformly from ``low … high`` inclusive."""
    if high < low:
        raise ValueError(f"empty integer range {low}..{high}")
    return int(torch.randint(int(low), int(high) + 1, (), generator=generator, device=_device(generator)).item())


def draw_seed(generator: torch.Generator | None) -> int:
    """A seed in [0, 2³¹ − 1) for a per-step noise generator."""
    return draw_int(generator, 0, 2**31 - 2)


def _check_range(name: str, value: Sequence[float], low: float = -math.inf, high: float = math.inf) -> tuple:
    if len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (math.isfinite(a) and math.isfinite(b)) or a > b or a < low or b > high:
        raise ValueError(
            f"{name} must be a finite (min, max) pair within [{low}, {high}] with min <= max, got {value!r}"
        )
    return a, b


def _check_prob(prob: float) -> float:
    if not (0.0 <= float(prob) <= 1.0):
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    return float(prob)


# --------------------------------------------------------------------------------------------------
# TorchIO helpers
# --------------------------------------------------------------------------------------------------


def _subject_geometry(subject: tio.Subject, axis: int | None) -> AcquisitionGeometry:
    """The subject's acquisition geometry, created from its first image when absent."""
    geometry = subject.get(GEOMETRY_KEY)
    if isinstance(geometry, AcquisitionGeometry):
        if axis is not None and axis != geometry.axis:
            raise ValueError(f"the subject's through-plane axis is {geometry.axis}, this transform expects {axis}")
        return geometry
    image = subject.get_first_image()
    ax = 2 if axis is None else int(axis)
    if ax not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 for a TorchIO image, got {ax}")
    geometry = AcquisitionGeometry(
        axis=ax, spacing_mm=float(image.spacing[ax]), spatial_shape=tuple(int(n) for n in image.spatial_shape)
    )
    subject[GEOMETRY_KEY] = geometry
    return geometry


# --------------------------------------------------------------------------------------------------
# Deterministic op
# --------------------------------------------------------------------------------------------------


class DegradationTransform(tio.Transform):
    """Deterministic degradation op: fixed parameters, a pure function of the input.

    Subclasses implement :meth:`resolve` (derive the parameters for a geometry and update the geometry) and
    :meth:`apply_tensor` (the tensor operation). Class attributes state what the op preserves; the property tests
    rely on them.

    Args:
        axis: spatial through-plane axis used when the transform runs on its own on a TorchIO subject (default 2);
            inside a :class:`~mrisr.degradations.stack.DegradationStack` the stack's axis is used.
        train_only: skip this step in test-time whole-volume degradations (docs/physics.md §6, "train only").
    """

    #: ``lr``: degrades the LR branch; ``both``: applied to HR and LR alike (before the LR branch exists).
    branch: ClassVar[Branch] = "lr"
    #: A constant image stays constant (geometry-only steps; docs/physics.md §7 flat-field test).
    preserves_flat_field: ClassVar[bool] = True
    #: Does not move content between the HR and LR branches (centre-of-mass test, docs/physics.md §7).
    preserves_alignment: ClassVar[bool] = True
    #: Changes the image's gain or contrast at random (colour jitter, bias field): an appearance variation of the
    #: input, not an effect of the acquisition that the training target should carry (training pairs scale their HR
    #: side by the LR branch as it was before the first such step, :attr:`DegradationResult.gain_reference`).
    changes_gain: ClassVar[bool] = False
    #: Grid the LR branch must be on when the step is planned (None = either).
    requires_grid: ClassVar[Grid | None] = None
    #: Whether the op changes the voxel grid (TorchIO affine update).
    changes_grid: ClassVar[bool] = False
    #: Grid of the LR branch after the op (``lr`` for downsampling, ``hr`` for upsampling, None = unchanged).
    grid_after: ClassVar[Grid | None] = None
    #: Deterministic ops give the same output on every call (seeded noise included).
    is_random: ClassVar[bool] = False

    def __init__(self, axis: int | None = None, train_only: bool = False) -> None:
        super().__init__(p=1, copy=True)
        self.axis = axis
        self.train_only = bool(train_only)
        self.args_names = ["axis", "train_only"]

    def _get_reproducing_arguments(self) -> dict[str, object]:
        """Constructor arguments that rebuild this op exactly (TorchIO history; no include/exclude/copy)."""
        return self._get_named_arguments()

    def _check_grid(self, geometry: AcquisitionGeometry) -> None:
        if self.branch == "both" and geometry.grid != "hr":
            raise ValueError(f"{self.name} acts on HR and LR alike and must come before the downsampling step")
        if self.requires_grid is not None and geometry.grid != self.requires_grid:
            where = "before the downsampling step" if self.requires_grid == "hr" else "after a downsampling step"
            raise ValueError(f"{self.name} must come {where} in a degradation stack")

    @abstractmethod
    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        """Derive the JSON-ready parameters for ``geometry`` and update ``geometry`` in place."""

    @abstractmethod
    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        """Apply the op to ``x`` ``(B, C, *spatial)`` with spatial through-plane axis ``axis``.

        Args:
            x: batched tensor, any device, floating dtype.
            axis: spatial through-plane axis.
            params: output of :meth:`resolve`.
            nearest: nearest-neighbour interpolation (label maps in TorchIO subjects).
        """

    def plan(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> PlannedStep:
        """Plan this op for ``geometry`` (the generator is unused: the op is deterministic)."""
        del generator
        self._check_grid(geometry)
        return PlannedStep(name=self.name, op=self, params=self.resolve(geometry), branch=self.branch)

    def output_affine(self, affine: np.ndarray, axis: int, params: dict[str, Any]) -> np.ndarray:
        """Voxel-to-world affine after the op (unchanged unless the op changes the grid)."""
        del axis, params
        return affine

    # TorchIO interface ----------------------------------------------------------------------------
    def _images(self, subject: tio.Subject) -> list[tio.Image]:
        return subject.get_images(intensity_only=False, include=self.include, exclude=self.exclude)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        geometry = _subject_geometry(subject, self.axis)
        if self.train_only and not geometry.train:
            return subject
        planned = self.plan(None, geometry)
        for image in self._images(subject):
            x = image.data.unsqueeze(0)
            dtype = x.dtype if torch.is_floating_point(x) else torch.float32
            nearest = isinstance(image, tio.LabelMap)
            y = self.apply_tensor(x.to(dtype), geometry.axis, planned.params, nearest=nearest)[0]
            if nearest:
                y = y.round().to(image.data.dtype)
            image.set_data(y)
            if self.changes_grid:
                image.affine = self.output_affine(image.affine, geometry.axis, planned.params)
        return subject


class IntensityDegradation(DegradationTransform, tio.IntensityTransform):
    """Deterministic op that changes voxel values only (applied to intensity images of a TorchIO subject)."""

    def _images(self, subject: tio.Subject) -> list[tio.Image]:
        return subject.get_images(intensity_only=True, include=self.include, exclude=self.exclude)


class SpatialDegradation(DegradationTransform, tio.SpatialTransform):
    """Deterministic op that moves voxels or changes the grid (applied to every image; label maps nearest)."""


# --------------------------------------------------------------------------------------------------
# Random wrapper
# --------------------------------------------------------------------------------------------------


class RandomDegradationTransform(RandomTransform):
    """``Random…`` wrapper: samples the parameters of a deterministic op and delegates to it.

    Subclasses set :attr:`op_class` and implement :meth:`randomize` (draw the op's constructor arguments) — the
    only place where randomness enters. The probability ``prob`` is drawn from the same generator first.

    Args:
        prob: probability of applying the step (one U(0, 1) draw per call).
        axis: see :class:`DegradationTransform`.
        train_only: see :class:`DegradationTransform`.
    """

    op_class: ClassVar[type[DegradationTransform]]

    def __init__(self, prob: float = 1.0, axis: int | None = None, train_only: bool = False) -> None:
        super().__init__(p=1, copy=True)
        self.prob = _check_prob(prob)
        self.axis = axis
        self.train_only = bool(train_only)
        self.args_names = ["prob", "axis", "train_only"]
        self.generator = torch.Generator()
        self.generator.seed()

    @property
    def is_random(self) -> bool:
        """True when the step can change between calls (``prob`` > 0)."""
        return self.prob > 0

    @property
    def branch(self) -> Branch:
        return self.op_class.branch

    @property
    def preserves_flat_field(self) -> bool:
        return self.op_class.preserves_flat_field

    @property
    def preserves_alignment(self) -> bool:
        return self.op_class.preserves_alignment

    def set_random_state(self, seed: int) -> RandomDegradationTransform:
        """Seed the generator used when the transform runs on its own on TorchIO subjects; returns ``self``."""
        self.generator.manual_seed(int(seed))
        return self

    @abstractmethod
    def randomize(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> dict[str, Any]:
        """Draw the constructor arguments of :attr:`op_class` (JSON-ready) from ``generator``."""

    def deterministic(self, params: dict[str, Any]) -> DegradationTransform:
        """The deterministic op with the sampled ``params`` (axis and train-only flag inherited)."""
        return self.op_class(**params, axis=self.axis, train_only=self.train_only)

    def plan(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> PlannedStep:
        """Draw the probability and, when applied, the parameters; plan the deterministic op on ``geometry``."""
        applied = self.prob >= 1.0 or draw_uniform(generator, 0.0, 1.0) < self.prob
        if not applied:
            return self.skip(generator, geometry)
        sampled = self.randomize(generator, geometry)
        planned = self.deterministic(sampled).plan(generator, geometry)
        planned.name = self.name
        planned.sampled = _jsonable(sampled)
        return planned

    def skip(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> PlannedStep:
        """Plan of a step that is not applied (geometry unchanged unless a subclass says otherwise)."""
        del generator, geometry
        return PlannedStep(name=self.name, op=None, branch=self.branch, applied=False)

    # TorchIO interface ----------------------------------------------------------------------------
    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        geometry = _subject_geometry(subject, self.axis)
        if self.train_only and not geometry.train:
            return subject
        probe = copy.deepcopy(geometry)
        planned = self.plan(self.generator, probe)
        if planned.op is None:
            subject[GEOMETRY_KEY] = probe
            return subject
        return planned.op(subject)


class RandomIntensityDegradation(RandomDegradationTransform, tio.IntensityTransform):
    """Random wrapper of an intensity op."""


class RandomSpatialDegradation(RandomDegradationTransform, tio.SpatialTransform):
    """Random wrapper of a spatial op."""
