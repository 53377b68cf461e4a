"""Building SR models for inference, following each model's :class:`~mrisr.inference.InferenceProtocol`.

* fixed models (interpolation), models fitted per volume and models whose weights ship with mrisr (``zoo/…``) are
  built from their Hydra config, named like ``infer.py model=<name>`` (:func:`model_names`);
* trained models are rebuilt from a checkpoint written by ``train.py`` alone (its resolved config is stored inside);
* in both cases the requested inference options are checked against the options the model declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mrisr.core.errors import MrisrInputError
from mrisr.inference import InferenceProtocol, VolumeSuperResolver, set_inference_options

__all__ = ["build_inference_model", "load_checkpoint_model", "load_model", "model_names", "resolve_device"]


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _constructor_error(err: Exception) -> MrisrInputError:
    """A constructor's ValueError (wrapped by Hydra) as a one-line input error."""
    cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ is not None else err
    return MrisrInputError(None, f"invalid model option: {cause}", "fix the value on the command line or in the config")


def load_checkpoint_model(ckpt_path: str | Path, device: str = "cpu") -> Any:
    """Rebuild a trained model from a checkpoint written by ``train.py`` (its resolved config is stored inside)."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise MrisrInputError(path, "checkpoint file not found", "pass ckpt_path= a .ckpt written by train.py")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise MrisrInputError(
            path,
            f"not a readable checkpoint ({type(err).__name__}: {err})",
            "pass a .ckpt written by train.py",
        ) from err
    if not isinstance(checkpoint, dict) or "mrisr_config" not in checkpoint or "state_dict" not in checkpoint:
        raise MrisrInputError(
            path, "checkpoint holds no mrisr config or weights", "pass a .ckpt written by mrisr's train.py"
        )
    model_cfg = OmegaConf.create(checkpoint["mrisr_config"]["model"])
    model = instantiate(model_cfg)
    model.load_state_dict(checkpoint["state_dict"])
    model.run_config = checkpoint["mrisr_config"]
    return model.to(device).eval()


def build_inference_model(
    model_cfg: DictConfig | None,
    ckpt_path: str | Path | None,
    options: Mapping[str, Any],
    device: str = "cpu",
    expected_target: str | None = None,
) -> VolumeSuperResolver:
    """The model of ``model_cfg`` or of ``ckpt_path`` with the inference ``options`` applied.

    Args:
        model_cfg: Hydra model config (used when no checkpoint is given).
        ckpt_path: checkpoint written by ``train.py``; takes precedence over ``model_cfg``.
        options: ``{constructor argument: value}`` to change for inference; each must be an inference option
            declared by the model class.
        device: device of checkpoint models.
        expected_target: when set, the checkpoint's model class must be this ``_target_`` (the user named a model).

    Raises:
        MrisrInputError: a checkpoint missing for a trained model, a checkpoint of another model than named, an
            option the model does not declare, or an invalid option value.
    """
    if ckpt_path:
        model = load_checkpoint_model(ckpt_path, device=device)
        target = f"{type(model).__module__}.{type(model).__qualname__}"
        if expected_target is not None and get_class(expected_target) is not type(model):
            raise MrisrInputError(
                ckpt_path, f"the checkpoint holds a {target}, not the {expected_target} named by model=", "drop model="
            )
        if not model.inference_protocol.needs_checkpoint:
            raise MrisrInputError(ckpt_path, f"{target} models are not loaded from checkpoints", "drop ckpt_path=")
        try:
            set_inference_options(model, options)
        except ValueError as err:
            raise _constructor_error(err) from err
        return model
    if model_cfg is None:
        raise MrisrInputError(None, "no model given", "pass model=<name> or ckpt_path=<.ckpt>")
    cls = get_class(model_cfg._target_)
    protocol: InferenceProtocol = cls.inference_protocol
    if protocol.needs_checkpoint and not model_cfg.get("weights"):
        raise MrisrInputError(
            None,
            f"model {model_cfg._target_} needs trained weights",
            "pass ckpt_path= a checkpoint written by train.py, or use model=cubic|linear|nearest|smore",
        )
    unknown = [key for key in options if key not in cls.inference_options]
    if unknown:
        allowed = ", ".join(cls.inference_options) or "none"
        raise MrisrInputError(
            None,
            f"{', '.join(unknown)} cannot be set for {cls.__name__} (its inference options: {allowed})",
            "drop thickness=/profile=/budget.* or choose a model fitted per volume (model=smore|smore_fast)",
        )
    model_cfg = model_cfg.copy()
    with open_dict(model_cfg):
        model_cfg.update(dict(options))
    try:
        model = instantiate(model_cfg)
    except (InstantiationException, ValueError) as err:
        raise _constructor_error(err) from err
    if isinstance(model, torch.nn.Module):  # networks built from a config (weights shipped with mrisr)
        model = model.to(device).eval()
    return model


def model_names() -> list[str]:
    """Every model name that ``infer.py model=<name>`` and :func:`load_model` accept (``conf/model/**.yaml``)."""
    from mrisr.utils.config import conf_dir

    root = conf_dir() / "model"
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def load_model(spec: str | DictConfig, device: str = "cpu") -> VolumeSuperResolver:
    """Model from a name (any of :func:`model_names`), a checkpoint path, or a Hydra model config.

    Raises:
        MrisrInputError: an unknown name, a model that needs a checkpoint, or an unreadable checkpoint.
    """
    if isinstance(spec, DictConfig):
        return build_inference_model(spec, None, {}, device=device)
    names = model_names()
    if spec in names:
        from mrisr.utils.config import compose

        return build_inference_model(compose("infer", [f"model={spec}"]).model, None, {}, device=device)
    if spec.endswith(".ckpt") or Path(spec).is_file():
        return build_inference_model(None, spec, {}, device=device)
    raise MrisrInputError(
        None, f"unknown model {spec!r}", f"use a checkpoint path (.ckpt) or one of: {', '.join(names)}"
    )
