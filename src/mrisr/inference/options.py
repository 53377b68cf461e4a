"""How a model comes to super-resolve an input, what it offers, and which of its options may change at inference.

* :class:`InferenceProtocol` — fixed (interpolation), loaded from a checkpoint, fitted on the input itself, or loaded
  from a checkpoint and fine-tuned on the input.
* :class:`VolumeSuperResolver` — what every model offers to :func:`mrisr.inference.run.run_on_volume`.
* :func:`set_inference_options` — change the declared inference options of a built model (``infer.py
  model.<key>=…``); every other key is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from mrisr.core.errors import MrisrInputError

__all__ = ["InferenceProtocol", "VolumeSuperResolver", "set_inference_options"]


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


@runtime_checkable
class VolumeSuperResolver(Protocol):
    """Anything that turns a thick-slice volume into a volume on an output grid.

    Models with a fixed or checkpoint protocol offer ``inferer() -> Inferer``; models fitted per volume offer
    ``acquisition_request() -> AcquisitionRequest`` (what they assume about slice thickness and profile) and
    ``fit_volume(volume, geometry, acquisition, generator) -> FittedModel`` (whose inferer super-resolves that volume).
    :func:`mrisr.inference.run.run_on_volume` calls them; none of them changes the model.

    Attributes:
        inference_protocol: how the model becomes ready (:class:`InferenceProtocol`).
        inference_options: constructor arguments that may be changed at inference (``infer.py model.<key>=…``).
        method: label of the model in result tables and sidecars.
    """

    inference_protocol: ClassVar[InferenceProtocol]
    inference_options: ClassVar[tuple[str, ...]]
    method: str


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
