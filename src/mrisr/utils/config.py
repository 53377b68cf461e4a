"""Hydra/OmegaConf helpers: where the configs live, custom resolvers, composing configs outside ``@hydra.main``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[3]


def conf_dir() -> Path:
    """Return the Hydra config directory (``<repo>/conf``, or ``$MRISR_CONF``).

    Raises:
        FileNotFoundError: when the directory does not exist (mrisr must be installed editable from a checkout).
    """
    path = Path(os.environ.get("MRISR_CONF", REPO_ROOT / "conf")).resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: the mrisr config directory is missing. Install mrisr editable from a checkout "
            "(`pip install -e .`) or point MRISR_CONF at a copy of its conf/ directory."
        )
    return path


def register_resolvers() -> None:
    """Register the ``${repo_root:}`` resolver used by ``conf/paths``; safe to call repeatedly."""
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with Hydra command-line overrides, without a run directory.

    Used by the small command-line tools (``python -m mrisr.simulate``, ``python -m mrisr.evaluate``) that must not
    create Hydra output folders or take over logging.

    Args:
        config_name: primary config file name without ``.yaml``.
        overrides: Hydra override strings such as ``thickness=3`` or ``degradation=prettier``.

    Returns:
        The composed config (``hydra`` node removed).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    return cfg


register_resolvers()
