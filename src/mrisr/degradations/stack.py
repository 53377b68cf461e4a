"""A degradation preset: one ordered list of steps, applied to training planes and to whole test volumes.

``conf/degradation/<preset>.yaml`` instantiates a :class:`DegradationStack` whose ``steps`` are the transforms of
:mod:`mrisr.degradations` in acquisition order (docs/physics.md §6: rescale → rotate → slice profile → gap → down →
noise → up → interlace → blur → noise → bias field → jitter). The stack

* plans every step first (random parameters from one ``torch.Generator``, geometry propagated from step to step;
  :meth:`DegradationStack.plan`), then applies the planned deterministic ops — so the parameters of a call can be
  reproduced and recorded without touching pixels (:meth:`DegradationStack.describe`);
* synthesises training pairs on 2-D planes (:meth:`DegradationStack.sample_pair`, every step);
* degrades whole test volumes (:meth:`DegradationStack.__call__`, train-only steps skipped, seeded per subject),
  on the LR grid with the exact affine (docs/physics.md §3) or on the HR grid for down-and-up presets.
"""

from __future__ import annotations

import copy
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch

from mrisr.degradations.acquisition import Downsample, RandomSliceProfile, SliceProfile
from mrisr.degradations.base import AcquisitionGeometry, PlannedStep
from mrisr.io.intensity import foreground_percentile
from mrisr.io.nifti import Volume
from mrisr.physics.forward import upsample_to_grid
from mrisr.physics.resample import resample_affine

__all__ = ["DegradationResult", "DegradationStack", "DegradationStep"]

log = logging.getLogger(__name__)

Grid = Literal["hr", "lr"]


class DegradationStep(Protocol):
    """What a stack needs from a step (every transform of :mod:`mrisr.degradations` provides it)."""

    train_only: bool

    @property
    def branch(self) -> Literal["lr", "both"]: ...

    @property
    def preserves_flat_field(self) -> bool: ...

    def plan(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> PlannedStep: ...


@dataclass
class DegradationResult:
    """Output of :meth:`DegradationStack.degrade`.

    Attributes:
        hr: ``(B, C, *spatial)`` HR branch (changed only by ``both`` steps: rescale, rotation).
        lr: ``(B, C, *spatial')`` degraded branch, on the LR grid when ``geometry.grid == "lr"``.
        geometry: geometry at the end of the plan (grid, step s, number of LR slices, thickness, separation).
        steps: the planned steps, in order (records via :meth:`PlannedStep.record`).
        gain_reference: the LR branch just before the first applied step that changes the gain at random
            (:attr:`~mrisr.degradations.base.DegradationTransform.changes_gain`: colour jitter, bias field), on the
            grid it had there; None when no such step ran (then the reference is :attr:`lr` itself).
    """

    hr: torch.Tensor
    lr: torch.Tensor
    geometry: AcquisitionGeometry
    steps: list[PlannedStep]
    gain_reference: torch.Tensor | None = None

    def records(self) -> list[dict[str, Any]]:
        """JSON-ready records of every step."""
        return [step.record() for step in self.steps]


class DegradationStack:
    """One degradation preset: an ordered list of steps.

    See docs/physics.md §6 and docs/style.md "one ordered list per preset".

    Args:
        steps: transforms in order of application (instances of :mod:`mrisr.degradations` classes).
        axis: through-plane voxel axis of whole volumes (0, 1 or 2). Training planes always have the through-plane
            axis along their rows.
        setting: short stable name for result tables (e.g. ``graf_row5``).
        test_time: another stack used by :meth:`__call__` instead of this one, so that every preset of an ablation
            degrades the test volumes identically (fair comparison); None = this stack's non-train-only steps.
        intensity_percentile: whole volumes are divided by this percentile of their voxels > 0 before the steps
            that depend on absolute intensity (noise, bias field, jitter) and multiplied back afterwards; None =
            no normalisation.
        upsample_order: spline order used by :meth:`sample_pair` to bring an LR-grid result back onto the HR grid.
    """

    def __init__(
        self,
        steps: Sequence[DegradationStep] = (),
        axis: int = 2,
        setting: str = "custom",
        test_time: DegradationStack | None = None,
        intensity_percentile: float | None = 99.5,
        upsample_order: int = 3,
    ) -> None:
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
        self.steps: list[DegradationStep] = list(steps)
        for step in self.steps:
            if not callable(getattr(step, "plan", None)):
                raise TypeError(f"degradation step {step!r} has no plan(generator, geometry) method")
        self.axis = int(axis)
        self.setting = str(setting)
        self.test_time = None if test_time is None else test_time.with_axis(self.axis)
        self.intensity_percentile = intensity_percentile
        self.upsample_order = int(upsample_order)
        self.last_record: dict[str, Any] | None = None
        self._last_geometry: tuple[float, tuple[int, ...]] | None = None

    # ------------------------------------------------------------------ attributes of the contract
    def __repr__(self) -> str:
        names = ", ".join(type(s).__name__ for s in self.steps)
        extra = f", test_time={self.test_time.setting!r}" if self.test_time is not None else ""
        return f"DegradationStack(setting={self.setting!r}, axis={self.axis}, steps=[{names}]{extra})"

    def with_axis(self, axis: int) -> DegradationStack:
        """A copy of the stack for another through-plane voxel axis (steps shared)."""
        if axis == self.axis and (self.test_time is None or self.test_time.axis == axis):
            return self
        other = copy.copy(self)
        other.axis = int(axis)
        other.test_time = None if self.test_time is None else self.test_time.with_axis(axis)
        other.last_record = None
        return other

    def test_steps(self) -> list[DegradationStep]:
        """Steps applied by :meth:`__call__` (test-time), in order: the non-train-only steps of the test stack."""
        stack = self.test_time or self
        return [s for s in stack.steps if not getattr(s, "train_only", False)]

    @property
    def is_random(self) -> bool:
        """Whether the output depends on the seed / generator (training or test time)."""
        steps = [*self.steps, *(self.test_time.steps if self.test_time is not None else [])]
        return any(bool(getattr(s, "is_random", False)) for s in steps)

    @property
    def output_grid(self) -> Grid:
        """Grid of :meth:`__call__`'s output: ``lr`` (own thick-slice grid, exact affine) or ``hr`` (down-and-up)."""
        grid: Grid = "hr"
        for step in self.test_steps():
            after = getattr(step, "grid_after", None)
            if after is not None:
                grid = after
        return grid

    def _nominal(self) -> dict[str, Any]:
        """Thickness/separation/profile of the first slice-profile and downsampling steps (None when random)."""
        out: dict[str, Any] = {"thickness_mm": None, "separation_mm": None, "profile": None}
        for step in (self.test_time or self).steps:
            if isinstance(step, SliceProfile):
                out.update(thickness_mm=step.thickness_mm, profile=step.profile)
                out["separation_mm"] = step.separation_mm if step.separation_mm is not None else step.thickness_mm
            elif isinstance(step, RandomSliceProfile):
                out.update(profile=step.profiles[0] if len(step.profiles) == 1 else None)
                return out
            elif isinstance(step, Downsample) and step.separation_mm is not None:
                out["separation_mm"] = step.separation_mm
        return out

    @property
    def thickness_mm(self) -> float | None:
        """Slice thickness of the test-time acquisition (None when drawn at random or absent)."""
        return self._nominal()["thickness_mm"]

    @property
    def separation(self) -> float | None:
        """Slice separation of the test-time acquisition in mm (None when drawn at random or absent)."""
        return self._nominal()["separation_mm"]

    @property
    def profile(self) -> str | None:
        """Slice-profile kind of the test-time acquisition (None when drawn at random or absent)."""
        return self._nominal()["profile"]

    # ------------------------------------------------------------------ planning and tensors
    def plan(
        self,
        generator: torch.Generator | None,
        geometry: AcquisitionGeometry,
        steps: Sequence[DegradationStep] | None = None,
    ) -> list[PlannedStep]:
        """Plan ``steps`` (default: this stack's) on ``geometry`` in order; no pixel is touched.

        Train-only steps are skipped (without drawing) when ``geometry.train`` is False.

        Returns:
            One :class:`PlannedStep` per step; ``geometry`` holds the final state.
        """
        planned: list[PlannedStep] = []
        for step in self.steps if steps is None else steps:
            if getattr(step, "train_only", False) and not geometry.train:
                planned.append(PlannedStep(name=type(step).__name__, op=None, applied=False, branch=step.branch))
                continue
            planned.append(step.plan(generator, geometry))
        return planned

    def degrade(
        self,
        x: torch.Tensor,
        spacing_mm: float,
        generator: torch.Generator | None = None,
        axis: int | None = None,
        train: bool = True,
        to_hr_grid: bool = False,
        steps: Sequence[DegradationStep] | None = None,
    ) -> DegradationResult:
        """Degrade a batched tensor ``(B, C, *spatial)`` (2-D planes or 3-D volumes, any device).

        All items of the batch share one draw of the parameters; call per item for independent draws
        (:meth:`sample_pairs`).

        Args:
            x: HR tensor, intensities normalised (tissue ≈ 1) when intensity steps are present.
            spacing_mm: HR spacing Δ along the through-plane axis (mm).
            generator: source of every random parameter and noise seed (None = torch's global generator).
            axis: spatial through-plane axis; default 0 (rows) for 2-D and :attr:`axis` for 3-D.
            train: apply train-only steps.
            to_hr_grid: bring an LR-grid result back onto the HR grid (cubic B-spline, :attr:`upsample_order`).
            steps: steps to run instead of :attr:`steps`.

        Returns:
            :class:`DegradationResult`.
        """
        if x.ndim not in (4, 5):
            raise ValueError(f"expected (B, C, H, W) or (B, C, X, Y, Z), got shape {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            x = x.to(torch.get_default_dtype())
        spatial = tuple(int(n) for n in x.shape[2:])
        ax = (0 if len(spatial) == 2 else self.axis) if axis is None else int(axis)
        geometry = AcquisitionGeometry(axis=ax, spacing_mm=float(spacing_mm), spatial_shape=spatial, train=train)
        planned = self.plan(generator, geometry, steps)
        hr, lr = x, x
        gain_reference: torch.Tensor | None = None
        for step in planned:
            if step.op is None:
                continue
            if gain_reference is None and step.op.changes_gain:
                gain_reference = lr
            if step.branch == "both":
                shared = lr is hr
                hr = step.op.apply_tensor(hr, ax, step.params)
                lr = hr if shared else step.op.apply_tensor(lr, ax, step.params)
            else:
                lr = step.op.apply_tensor(lr, ax, step.params)
        if to_hr_grid and geometry.grid == "lr":
            lr = upsample_to_grid(lr, ax + 2, float(geometry.step), geometry.n_hr, self.upsample_order)
            geometry.grid = "hr"
        return DegradationResult(hr=hr, lr=lr, geometry=geometry, steps=planned, gain_reference=gain_reference)

    # ------------------------------------------------------------------ training pairs
    def sample_pair(
        self, hr_plane: torch.Tensor, spacing_mm: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthesise one training pair from a 2-D plane (every step, train-only included).

        Args:
            hr_plane: ``(1, H, W)`` HR plane, rows along the through-plane axis, intensities normalised (tissue
                ≈ 1), any device.
            spacing_mm: HR spacing along the rows (mm).
            generator: source of all randomness (a CPU generator works for tensors on any device).

        Returns:
            ``(hr, lr_on_hr_grid)``, both ``(1, H, W)`` float32 on ``hr_plane``'s device; ``hr`` differs from the
            input only through HR-side augmentations (rescale, rotation).
        """
        hr, lr, _ = self.sample_pair_with_reference(hr_plane, spacing_mm, generator)
        return hr, lr

    def sample_pair_with_reference(
        self, hr_plane: torch.Tensor, spacing_mm: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`sample_pair` plus the LR branch before its random gain changes.

        Returns:
            ``(hr, lr_on_hr_grid, gain_reference)``: the pair of :meth:`sample_pair` and
            :attr:`DegradationResult.gain_reference` (``(1, H', W)``, the LR grid's rows when the gain step came
            before upsampling), or ``lr_on_hr_grid`` itself when no gain step ran. An intensity rule scales the HR side
            by the reference and the LR side by itself (:class:`~mrisr.data.pairs.PlanePatchDataset`).
        """
        if hr_plane.ndim != 3 or hr_plane.shape[0] != 1:
            raise ValueError(f"sample_pair expects a (1, H, W) plane, got shape {tuple(hr_plane.shape)}")
        x = hr_plane.unsqueeze(0).to(torch.float32)
        result = self.degrade(x, spacing_mm, generator, axis=0, train=True, to_hr_grid=True)
        lr = result.lr[0].to(torch.float32)
        reference = lr if result.gain_reference is None else result.gain_reference[0].to(torch.float32)
        return result.hr[0].to(torch.float32), lr, reference

    def sample_pairs(
        self, hr_planes: torch.Tensor, spacing_mm: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sample_pair` for a batch ``(B, 1, H, W)`` with independent parameters per item."""
        if hr_planes.ndim != 4 or hr_planes.shape[1] != 1:
            raise ValueError(f"sample_pairs expects (B, 1, H, W), got shape {tuple(hr_planes.shape)}")
        pairs = [self.sample_pair(plane, spacing_mm, generator) for plane in hr_planes]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    # ------------------------------------------------------------------ whole test volumes
    def __call__(self, volume: Volume, seed: int | None = None) -> Volume:
        """Test-time degradation of a whole volume, deterministic given ``seed``.

        Train-only steps are skipped; :attr:`test_time` replaces the steps when set. The output is on the LR grid
        with the exact same-FOV affine (docs/physics.md §3) when the steps end on the LR grid, else on the HR grid with
        the HR affine (:attr:`output_grid`). The record of the applied parameters is kept in :attr:`last_record`
        (same as :meth:`describe` with this seed and volume).

        Args:
            volume: HR volume (data ``(X, Y, Z)``, spacing from its header).
            seed: seed of every random draw (None = a fresh seed, recorded).

        Returns:
            The degraded volume (float32) with a copy of the input header.
        """
        seed = secrets.randbits(31) if seed is None else int(seed)
        spacing = float(volume.zooms[self.axis])
        data = torch.from_numpy(np.ascontiguousarray(volume.data, dtype=np.float32))[None, None]
        steps = self.test_steps()
        scale = 1.0
        if self.intensity_percentile is not None and not all(getattr(s, "preserves_flat_field", True) for s in steps):
            scale = foreground_percentile(volume.data, float(self.intensity_percentile), source=volume.path)
        generator = torch.Generator().manual_seed(seed)
        result = self.degrade(data / scale, spacing, generator, axis=self.axis, train=False, steps=steps)
        lr = (result.lr[0, 0] * scale).numpy().astype(np.float32)
        geometry = result.geometry
        affine = volume.affine
        if geometry.grid == "lr":
            affine = resample_affine(volume.affine, self.axis, float(geometry.step), geometry.n_hr, int(geometry.n_lr))
        self._last_geometry = (spacing, tuple(volume.shape))
        self.last_record = self._record(seed, result.steps, geometry, spacing, tuple(volume.shape), scale)
        log.debug("degradation %s seed %d: %s", self.setting, seed, self.last_record["steps"])
        return Volume(data=lr, affine=affine, header=volume.header.copy(), path=None)

    def _record(
        self,
        seed: int,
        planned: list[PlannedStep],
        geometry: AcquisitionGeometry,
        spacing: float,
        shape: tuple[int, ...],
        scale: float | None,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "setting": self.setting,
            "seed": seed,
            "axis": self.axis,
            "output_grid": self.output_grid,
            "input_spacing_mm": spacing,
            "input_shape": list(shape),
            "output_shape": list(geometry.current_shape),
            "thickness_mm": geometry.thickness_mm,
            "separation_mm": geometry.separation_mm,
            "step": geometry.step,
            "steps": [p.record() for p in planned],
        }
        if self.test_time is not None:
            record["test_time_setting"] = self.test_time.setting
        if scale is not None:
            record["intensity_scale"] = scale
        return record

    def describe(self, seed: int | None = None, volume: Volume | None = None) -> dict[str, Any]:
        """Parameters that :meth:`__call__` applies with ``seed`` (no pixel computed).

        Args:
            seed: the seed passed to :meth:`__call__` (None = the record of the last call).
            volume: the volume (its spacing and shape enter derived parameters such as the number of gap rows);
                default the geometry of the last call, else 1 mm spacing and a 256³ grid.

        Returns:
            JSON-ready dict: setting, seed, axis, output grid, geometry and one record per step.
        """
        if seed is None:
            if self.last_record is not None and volume is None:
                return copy.deepcopy(self.last_record)
            raise ValueError("describe() needs the seed of the call it describes")
        steps = self.test_steps()
        scale = None
        if volume is not None:
            spacing, shape = float(volume.zooms[self.axis]), tuple(volume.shape)
            if self.intensity_percentile is not None and not all(
                getattr(s, "preserves_flat_field", True) for s in steps
            ):
                scale = foreground_percentile(volume.data, float(self.intensity_percentile), source=volume.path)
            else:
                scale = 1.0
        elif self._last_geometry is not None:
            spacing, shape = self._last_geometry
        else:
            spacing, shape = 1.0, (256, 256, 256)
        generator = torch.Generator().manual_seed(int(seed))
        geometry = AcquisitionGeometry(axis=self.axis, spacing_mm=spacing, spatial_shape=shape, train=False)
        planned = self.plan(generator, geometry, steps)
        return self._record(int(seed), planned, geometry, spacing, shape, scale)
