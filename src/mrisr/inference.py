"""The inference protocol of every SR model, output grids, and the one function that super-resolves a volume.

* :class:`InferenceProtocol` — how a model comes to super-resolve an input: it is fixed (interpolation), loaded from
  a checkpoint, fitted on the input itself, or loaded from a checkpoint and fine-tuned on the input.
* :class:`VolumeSuperResolver` — what every model offers: ``super_resolve(volume, geometry, grid, generator)``, its
  protocol, its label and the names of the options that may be changed at inference.
* :func:`run_on_volume` — geometry detection, the minimum-slice check, the optional per-volume fit and the
  super-resolution, with all randomness drawn from one seeded :class:`torch.Generator`; the Python API and the
  command-line inference both call it.

Every SR method writes onto the same grid: the through-plane axis resampled with the same-FOV rule
(docs/physics.md §3) to the target spacing (default: the in-plane spacing, i.e. isotropic), all other axes and
header fields unchanged. The output therefore overlays the input in world coordinates in any viewer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from mrisr.core.errors import MrisrInputError
from mrisr.io.geometry import SliceGeometry, detect_slice_axis
from mrisr.io.nifti import Volume
from mrisr.physics.resample import resample_affine, resample_axis

_LOG = logging.getLogger(__name__)

#: Fewest slices along the thick-slice axis that interpolation (and a learned model) can work with.
MIN_SLICES = 3


class InferenceProtocol(StrEnum):
    """How a model is made ready to super-resolve an input volume.

    Attributes:
        FIXED: nothing is learned (interpolation baselines); built from its config.
        CHECKPOINT: trained weights, rebuilt from a checkpoint written by ``train.py``.
        PER_VOLUME: fitted on each input volume itself (zero-shot, self-supervised), built from its config.
        CHECKPOINT_PER_VOLUME: weights from a checkpoint (a prior), then fine-tuned on each input volume.
    """

    FIXED = "fixed"
    CHECKPOINT = "checkpoint"
    PER_VOLUME = "per_volume"
    CHECKPOINT_PER_VOLUME = "checkpoint_per_volume"

    @property
    def fits_per_volume(self) -> bool:
        """True when the model is fitted on each input before super-resolving it."""
        return self in (InferenceProtocol.PER_VOLUME, InferenceProtocol.CHECKPOINT_PER_VOLUME)

    @property
    def needs_checkpoint(self) -> bool:
        """True when the model's weights come from a checkpoint."""
        return self in (InferenceProtocol.CHECKPOINT, InferenceProtocol.CHECKPOINT_PER_VOLUME)


@dataclass(frozen=True)
class OutputGrid:
    """Through-plane output grid of an SR volume.

    Attributes:
        axis: through-plane voxel axis.
        step: sampling step in input (LR) voxels, < 1 for upsampling (= target spacing / separation).
        length: number of output samples along ``axis``.
        spacing_mm: output spacing along ``axis`` (mm).
    """

    axis: int
    step: float
    length: int
    spacing_mm: float


def output_grid(geometry: SliceGeometry, n_slices: int, target_spacing_mm: float | None = None) -> OutputGrid:
    """Grid for ``n_slices`` LR slices of ``geometry`` resampled to ``target_spacing_mm`` (default in-plane Δ).

    The length is ``round(n_slices · S / Δ)``: the output covers the LR field of view, centred on it.
    """
    target = geometry.inplane_spacing_mm if target_spacing_mm is None else float(target_spacing_mm)
    if target <= 0:
        raise ValueError(f"target spacing must be > 0 mm, got {target}")
    step = target / geometry.separation_mm
    length = max(1, round(n_slices * geometry.separation_mm / target))
    return OutputGrid(axis=geometry.axis, step=step, length=length, spacing_mm=target)


def interpolate_volume(volume: Volume, grid: OutputGrid, order: int = 3) -> Volume:
    """Resample ``volume`` along ``grid.axis`` onto ``grid`` with a spline of ``order`` (0 nearest, 1 linear, 3 cubic).

    Returns:
        A new volume (float32) with the exact updated affine and a copy of the input header.
    """
    n_in = volume.shape[grid.axis]
    data = resample_axis(volume.data.astype(np.float64), grid.axis, grid.step, grid.length, order=order)
    affine = resample_affine(volume.affine, grid.axis, grid.step, n_in, grid.length)
    return Volume(data=np.asarray(data, dtype=np.float32), affine=affine, header=volume.header.copy(), path=None)


@runtime_checkable
class VolumeSuperResolver(Protocol):
    """Anything that turns a thick-slice volume into a volume on an :class:`OutputGrid`.

    Attributes:
        inference_protocol: how the model becomes ready (:class:`InferenceProtocol`).
        inference_options: constructor arguments that may be changed at inference (``infer.py model.<key>=…``).
        method: label of the model in result tables and sidecars.
    """

    inference_protocol: ClassVar[InferenceProtocol]
    inference_options: ClassVar[tuple[str, ...]]
    method: str

    def super_resolve(
        self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid, generator: torch.Generator | None = None
    ) -> Volume:
        """Return the super-resolved volume on ``grid`` (affine from :func:`interpolate_volume`)."""
        ...


def set_inference_options(model: VolumeSuperResolver, options: Mapping[str, Any]) -> None:
    """Change inference options of a built model; options it does not declare are refused.

    A dotted name ``option.key`` (``infer.py model.sampler.steps=10``) changes one field of an option whose value is
    a config object (a dataclass or a Hydra config mapping): the option is rebuilt from its current fields with the
    change applied. Changing ``option._target_`` keeps the current fields that the new class also accepts.

    Args:
        model: any model of the protocol.
        options: ``{argument name: value}``; each name (or the part before the first dot) must be in
            ``model.inference_options``.

    Raises:
        MrisrInputError: a name that is not an inference option of the model (the message lists the options), or a
            dotted name whose option is not a config object.
    """
    allowed = tuple(getattr(model, "inference_options", ()))
    nested: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        head, _, rest = key.partition(".")
        if head not in allowed:
            listed = ", ".join(f"model.{name}" for name in allowed) or "none"
            raise MrisrInputError(
                None,
                f"model.{key} is not an inference option of {type(model).__name__} (it is fixed by training)",
                f"drop it; this model's inference options: {listed}",
            )
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            setattr(model, key, value)
    for head, changes in nested.items():
        setattr(model, head, _changed_config_object(getattr(model, head), changes, head))
    validate = getattr(model, "validate_inference_options", None)
    if callable(validate):
        validate()


def _changed_config_object(current: Any, changes: Mapping[str, Any], name: str) -> Any:
    """``current`` (dataclass or config mapping) rebuilt as a Hydra config with ``changes`` applied, instantiated."""
    import dataclasses
    import inspect

    from hydra.utils import get_class, instantiate
    from omegaconf import OmegaConf

    if dataclasses.is_dataclass(current) and not isinstance(current, type):
        target = f"{type(current).__module__}.{type(current).__qualname__}"
        config = {"_target_": target, **{f.name: getattr(current, f.name) for f in dataclasses.fields(current)}}
    elif isinstance(current, Mapping):
        config = dict(OmegaConf.to_container(OmegaConf.create(dict(current)), resolve=True))
    else:
        raise MrisrInputError(
            None, f"model.{name} is not a config object, so its fields cannot be set", f"set model.{name}=… as a whole"
        )
    new_target = changes.get("_target_")
    if new_target is not None and new_target != config.get("_target_"):
        try:
            accepted = inspect.signature(get_class(str(new_target))).parameters
        except Exception as err:
            raise MrisrInputError(
                None, f"model.{name}._target_={new_target} cannot be imported ({err})", "give a class path"
            ) from err
        config = {k: v for k, v in config.items() if k in accepted}
    node = OmegaConf.create(config)
    for key, value in changes.items():
        OmegaConf.update(node, key, value, merge=True, force_add=True)
    try:
        return instantiate(node)
    except Exception as err:
        raise MrisrInputError(None, f"invalid model.{name}: {err}", f"check the model.{name}.* values") from err


@dataclass
class VolumeResult:
    """What :func:`run_on_volume` produced.

    Attributes:
        sr: the super-resolved volume on ``grid``.
        geometry: the input's slice geometry.
        grid: the output grid.
        seconds: wall time of fit + super-resolution.
        fit: the per-volume fit summary (``None`` unless the model fits per volume).
        record: JSON-ready description (geometry, grid, model label, seed, timing) for sidecars.
    """

    sr: Volume
    geometry: SliceGeometry
    grid: OutputGrid
    seconds: float
    fit: dict[str, Any] | None = None
    record: dict[str, Any] = field(default_factory=dict)


def run_on_volume(
    model: VolumeSuperResolver,
    volume: Volume,
    axis: int | Literal["auto"] = "auto",
    target_spacing_mm: float | None = None,
    allow_anisotropic_inplane: bool = False,
    seed: int = 0,
    estimate_thickness: bool = True,
) -> VolumeResult:
    """Super-resolve one volume with ``model``: geometry, checks, per-volume fit when the protocol asks for it.

    Models fitted per volume that take a slice thickness (``thickness_mm`` among their inference options) get it
    from the first source that has it (:func:`mrisr.io.sidecar.resolve_thickness`): the model's own setting (an
    argument or ``thickness=``), a BIDS/dcm2niix JSON sidecar beside the input, an estimate from the image, or the
    slice separation (with a warning). The value and its source go into the record. For models with
    ``profile="auto"`` the image estimate is the model's own ``estimate_profile`` (kind and thickness at once).

    Args:
        model: a model of the :class:`VolumeSuperResolver` protocol.
        volume: the thick-slice input.
        axis: through-plane axis, or ``auto`` (largest spacing; near-isotropic input is refused).
        target_spacing_mm: output spacing along the axis (default: the in-plane spacing, isotropic output).
        allow_anisotropic_inplane: accept unequal in-plane spacings (the finer one becomes the target).
        seed: seed of the one :class:`torch.Generator` from which the fit and the inference draw their randomness.
        estimate_thickness: estimate an unknown slice thickness from the image (else fall back to the separation).

    Raises:
        MrisrInputError: fewer than :data:`MIN_SLICES` slices, or a geometry problem of the input.
    """
    geometry = detect_slice_axis(volume, axis=axis, allow_anisotropic_inplane=allow_anisotropic_inplane)
    n_slices = volume.shape[geometry.axis]
    if n_slices < MIN_SLICES:
        raise MrisrInputError(
            volume.path,
            f"only {n_slices} slice(s) along the through-plane axis {geometry.axis}",
            f"through-plane super-resolution needs at least {MIN_SLICES} slices; check the file or axis=",
        )
    grid = output_grid(geometry, n_slices, target_spacing_mm)
    generator = torch.Generator().manual_seed(int(seed))
    started = time.perf_counter()
    thickness: dict[str, Any] = {}
    # The resolved thickness is set on the model for this volume only: in batch mode the next volume must go
    # through the same chain, not inherit this one's value as if it had been given.
    own_thickness = getattr(model, "thickness_mm", None)
    try:
        if model.inference_protocol.fits_per_volume and "thickness_mm" in model.inference_options:
            from mrisr.io.sidecar import resolve_thickness

            given = getattr(model, "thickness_mm", None)
            estimator: Any = estimate_thickness
            if estimate_thickness and getattr(model, "profile", None) == "auto" and hasattr(model, "estimate_profile"):
                # One joint estimate of the profile kind and thickness, reused by the fit.
                estimator = model.estimate_profile
            resolution = resolve_thickness(volume.path, volume, geometry, given, estimate=estimator)
            set_inference_options(model, {"thickness_mm": resolution.thickness_mm})
            thickness = {
                "thickness_mm": resolution.thickness_mm,
                "thickness_source": resolution.source,
                "thickness_detail": resolution.detail,
            }
            _LOG.info("slice thickness %.3g mm (%s): %s", resolution.thickness_mm, resolution.source, resolution.detail)
        fit = None
        if model.inference_protocol.fits_per_volume:
            fit = model.fit_volume(volume, geometry, grid, generator=generator)  # type: ignore[attr-defined]
        sr = model.super_resolve(volume, geometry, grid, generator=generator)
    finally:
        if "thickness_mm" in model.inference_options:
            set_inference_options(model, {"thickness_mm": own_thickness})
    seconds = time.perf_counter() - started
    record = {
        "method": model.method,
        "inference_protocol": str(model.inference_protocol),
        "seed": int(seed),
        "axis": geometry.axis,
        "separation_mm": geometry.separation_mm,
        "inplane_spacing_mm": geometry.inplane_spacing_mm,
        "factor": geometry.factor,
        "output_spacing_mm": grid.spacing_mm,
        "output_shape": list(sr.shape),
        **thickness,
        "seconds": round(seconds, 3),
    }
    return VolumeResult(sr=sr, geometry=geometry, grid=grid, seconds=seconds, fit=fit, record=record)
