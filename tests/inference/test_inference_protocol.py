"""The inference protocol: every model declares how it is made ready, its label and its inference options; options
reach checkpoint models or are refused; randomness flows through one seeded generator."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import REPO_ROOT
from mrisr.app.models import build_inference_model
from mrisr.core.errors import MrisrInputError
from mrisr.inference import InferenceProtocol, InferenceSettings, run_on_volume
from mrisr.systems.base import SRSystem
from mrisr.utils.config import compose
from support.volumes import thick_phantom

MODEL_ROOT = REPO_ROOT / "conf" / "model"
MODEL_CONFIGS = sorted(MODEL_ROOT.rglob("*.yaml"))


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.relative_to(MODEL_ROOT).with_suffix("").as_posix())
def test_every_model_config_builds_and_declares_its_protocol(path: Path) -> None:
    name = path.relative_to(MODEL_ROOT).with_suffix("").as_posix()
    # The prior is pretrained with the per-volume fit's min–max rule (its experiment sets it; the model refuses others).
    rule = ["intensity=minmax"] if name == "smore_prior_pretrain" else []
    cfg = compose("train", [f"model={name}", *rule])
    model = instantiate(cfg.model)
    assert isinstance(model.inference_protocol, InferenceProtocol)
    assert all(isinstance(option, str) for option in model.inference_options)
    if isinstance(model, SRSystem):
        # Learned models carry the config name as their label, so families sharing a network stay distinct.
        assert model.method == name
    assert set(model.inference_options) <= set(inspect.signature(type(model)).parameters)


def test_interpolation_refuses_per_volume_options() -> None:
    cfg = compose("infer", ["model=cubic"])
    with pytest.raises(MrisrInputError, match="thickness_mm cannot be set"):
        build_inference_model(cfg.model, None, {"thickness_mm": 3.0})


def test_networks_without_weights_need_a_checkpoint() -> None:
    cfg = compose("train", ["model=edsr_small"])
    with pytest.raises(MrisrInputError, match="needs trained weights"):
        build_inference_model(cfg.model, None, {})


def test_inference_options_reach_checkpoint_models(edsr_checkpoint: Path) -> None:
    model = build_inference_model(None, edsr_checkpoint, {"inference_batch_size": 3})
    assert model.inference_batch_size == 3 and model.method == "edsr_small"
    assert model.inference_protocol is InferenceProtocol.CHECKPOINT


@pytest.mark.parametrize(
    ("options", "message"),
    [({"net.n_feats": 8}, "not an inference option"), ({"inference_batch_size": 0}, "must be ≥ 1")],
)
def test_checkpoint_models_refuse_training_options_and_bad_values(
    edsr_checkpoint: Path, options: dict, message: str
) -> None:
    with pytest.raises(MrisrInputError, match=message):
        build_inference_model(None, edsr_checkpoint, options)


def test_checkpoint_of_another_model_than_named_is_refused(edsr_checkpoint: Path) -> None:
    with pytest.raises(MrisrInputError, match=r"not the mrisr\.systems\.zero_shot\.ZeroShotSR"):
        build_inference_model(None, edsr_checkpoint, {}, expected_target="mrisr.systems.zero_shot.ZeroShotSR")


@pytest.mark.parametrize(
    ("option", "value"), [("max_time_s", -5.0), ("max_time_s", 0.0), ("max_steps", 0), ("thickness_mm", -1.0)]
)
def test_zero_shot_budget_and_thickness_must_be_positive(option: str, value: float) -> None:
    cfg = compose("infer", ["model=smore_smoke"])
    with pytest.raises(MrisrInputError, match=option):
        build_inference_model(cfg.model, None, {option: value})


def test_per_volume_fit_draws_from_the_generator_and_leaves_global_rng_alone() -> None:
    volume = thick_phantom()
    cfg = compose("infer", ["model=smore_smoke", "model.max_steps=3"])
    state = torch.get_rng_state()
    a = run_on_volume(instantiate(cfg.model), volume, InferenceSettings(seed=1, estimate_thickness=False))
    assert torch.equal(torch.get_rng_state(), state)
    b = run_on_volume(instantiate(cfg.model), volume, InferenceSettings(seed=1, estimate_thickness=False))
    c = run_on_volume(instantiate(cfg.model), volume, InferenceSettings(seed=2, estimate_thickness=False))
    np.testing.assert_array_equal(a.sr.data, b.sr.data)
    assert not np.array_equal(a.sr.data, c.sr.data)
    assert a.fit is not None and a.record["method"] == "smore_smoke" and a.record["seed"] == 1
    assert a.sr.shape == (40, 36, 40)


def test_run_on_volume_refuses_too_few_slices() -> None:
    from mrisr.systems.interpolation import InterpolationSR

    with pytest.raises(MrisrInputError, match="only 2 slice"):
        run_on_volume(InterpolationSR(), thick_phantom(shape=(20, 20, 2)))
