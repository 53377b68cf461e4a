"""Shipping a trained model (mrisr-export-weights): weights file + zoo config, run by name like any model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mrisr.app.models import load_model, model_names
from mrisr.app.train import train
from mrisr.cli import export_weights
from mrisr.core.errors import MrisrInputError
from mrisr.inference import InferenceSettings, run_on_volume
from mrisr.io.nifti import Volume
from mrisr.nets import pretrained
from mrisr.utils.config import compose, conf_dir


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of conf/ and an empty weights folder, so the export writes nothing into the checkout."""
    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    monkeypatch.setenv("MRISR_CONF", str(conf))
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(pretrained, "weights_folder", lambda: weights)
    monkeypatch.setattr(export_weights, "weights_folder", lambda: weights)
    return tmp_path


def test_a_trained_model_ships_and_runs_by_name(sandbox: Path) -> None:
    cfg = compose(
        "train", ["experiment=smoke", f"hydra.run.dir={sandbox / 'run'}", f"paths.output_dir={sandbox / 'run'}"]
    )
    result = train(cfg)
    assert result.best_checkpoint is not None
    summary = export_weights.export(result.best_checkpoint, "zoo/tiny", "python train.py experiment=smoke", "a test")
    assert Path(summary["weights"]).is_file() and summary["bytes"] < export_weights.MAX_BYTES
    assert summary["train_sources"] == ["mni152"] and summary["command"] == "python train.py experiment=smoke"
    assert "zoo/tiny" in model_names()
    header = (sandbox / "conf" / "model" / "zoo" / "tiny.yaml").read_text()
    assert summary["sha256"] in header and "python train.py experiment=smoke" in header
    shipped = load_model("zoo/tiny")
    assert shipped.method == "zoo/tiny" and shipped.weights_files() == [Path(summary["weights"])]
    # The shipped model computes what the checkpoint's model computes, up to the fp16 rounding of its weights.
    checkpoint = load_model(str(result.best_checkpoint))
    rng = np.random.default_rng(0)
    volume = Volume(rng.random((24, 20, 8)).astype(np.float32) + 0.5, np.diag([1.0, 1.0, 3.0, 1.0]))
    settings = InferenceSettings(estimate_thickness=False)
    a = run_on_volume(shipped, volume, settings).sr.data
    b = run_on_volume(checkpoint, volume, settings).sr.data
    np.testing.assert_allclose(a, b, atol=2e-3 * float(np.abs(b).max()))
    for name, tensor in shipped.state_dict().items():
        torch.testing.assert_close(tensor, checkpoint.state_dict()[name].half().to(tensor.dtype), rtol=0, atol=0)


def test_export_refuses_names_outside_the_zoo_and_foreign_files(sandbox: Path) -> None:
    with pytest.raises(MrisrInputError, match="zoo/"):
        export_weights.export(sandbox / "x.ckpt", "edsr", "cmd")
    foreign = sandbox / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(MrisrInputError, match="not a checkpoint of mrisr"):
        export_weights.export(foreign, "zoo/x", "cmd")
