"""Building SR models for inference: interpolation baselines by name, trained models from checkpoints alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mrisr.inference import VolumeSuperResolver
from mrisr.io.errors import MrisrInputError
from mrisr.systems.interpolation import InterpolationSR

INTERPOLATIONS = {"nearest": 0, "linear": 1, "cubic": 3}


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


def load_model(spec: str | DictConfig, device: str = "cpu") -> VolumeSuperResolver:
    """Model from a name (``nearest``/``linear``/``cubic``), a checkpoint path, or a Hydra model config."""
    if isinstance(spec, DictConfig):
        return instantiate(spec)
    if spec in INTERPOLATIONS:
        return InterpolationSR(order=INTERPOLATIONS[spec])
    if spec.endswith(".ckpt") or Path(spec).is_file():
        return load_checkpoint_model(spec, device=device)
    raise MrisrInputError(
        None, f"unknown model {spec!r}", f"use one of {sorted(INTERPOLATIONS)} or a checkpoint path (.ckpt)"
    )
