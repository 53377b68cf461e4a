"""train(cfg) in process: every config option composes and builds; the test stage writes a QC report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import REPO_ROOT
from mrisr.utils.config import compose


def train_groups() -> list[str]:
    """Config groups selectable in train.yaml's defaults list (hydra and optional local configs excluded)."""
    import yaml

    defaults = yaml.safe_load((REPO_ROOT / "conf" / "train.yaml").read_text())["defaults"]
    names = [next(iter(d)).removeprefix("optional ") for d in defaults if isinstance(d, dict)]
    return sorted(n for n in names if n not in {"hydra", "local"})


@pytest.mark.parametrize("group", train_groups())
def test_every_config_option_composes_and_instantiates(group: str, tmp_path: Path) -> None:
    """Every option of every group composes with train.yaml and its objects build (typos in keys fail here)."""
    options = sorted((REPO_ROOT / "conf" / group).glob("*.yaml"))
    assert options
    for option in options:
        # The prior is pretrained with the per-volume fit's min–max rule (its experiment sets it; the model refuses
        # any other rule, with a clear error).
        rule = ["intensity=minmax"] if (group, option.stem) == ("model", "smore_prior_pretrain") else []
        cfg = compose("train", [f"{group}={option.stem}", f"paths.output_dir={tmp_path}", *rule])
        for key in ("data", "degradation", "model"):
            assert instantiate(cfg[key]) is not None
        if cfg.trainer.accelerator == "cpu" or torch.cuda.is_available():
            assert instantiate(cfg.trainer) is not None
        for key in ("callbacks", "eval", "logger"):
            for node in (cfg.get(key) or {}).values():
                assert instantiate(node) is not None


def test_train_test_stage_writes_a_qc_report(tmp_path: Path) -> None:
    from mrisr.app.train import train
    from mrisr.utils.config import compose

    qc = tmp_path / "qc"
    out = tmp_path / "run"
    cfg = compose("train", ["experiment=smoke", f"qc={qc}", f"paths.output_dir={out}", "logger=none"])
    train(cfg)
    pages = sorted(p.parent.name for p in qc.glob("*/qc.json"))
    assert pages and all(p.startswith("edsr_small_") for p in pages)
    assert all(name in (qc / "index.html").read_text() for name in pages)
