"""Zero-shot prior: fixed-shuffle WDSR, random-acquisition pretraining pairs, weights export/loading, the fine-tuned
per-volume fit, profile=auto and the inference precision of ZeroShotSR."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import nibabel as nib
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

import mrisr
from mrisr.core.errors import MrisrInputError
from mrisr.data.prior import HRSource, RandomProfileBatches, RandomProfilePairsDataModule
from mrisr.inference import InferenceSettings, run_on_volume
from mrisr.inference import acquisition as acquisition_module
from mrisr.inference import planes as planes_module
from mrisr.inference.acquisition import resolve_acquisition
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import as_volume
from mrisr.nets.pretrained import PRETRAIN_COMMAND, read_weights, weights_folder
from mrisr.nets.wdsr import WDSR, upsample_rows
from mrisr.systems.zero_shot import ZeroShotSR
from mrisr.systems.zero_shot_prior import ZeroShotPretraining, export_prior
from mrisr.utils.config import compose
from mrisr.utils.precision import native_bf16

TINY_NET = {"_target_": "mrisr.nets.wdsr.WDSR", "_partial_": True, "n_blocks": 1, "n_feats": 8, "shuffle": 5}


def smoke_model(**overrides: object) -> ZeroShotSR:
    cfg = compose("infer", ["model=smore_smoke", "input=x", "output=y"])
    return instantiate(cfg.model, **overrides)


def construction_error(cfg: object, **overrides: object) -> MrisrInputError:
    """The input error a model config raises when built (Hydra wraps constructor errors)."""
    with pytest.raises(Exception) as err:
        instantiate(cfg, **overrides)
    cause = err.value.__cause__ or err.value
    assert isinstance(cause, MrisrInputError), repr(err.value)
    return cause


def test_fixed_shuffle_makes_weights_independent_of_the_factor() -> None:
    a, b = WDSR(2.0, n_blocks=1, n_feats=8, shuffle=5), WDSR(4.7, n_blocks=1, n_feats=8, shuffle=5)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert a.tail.out_channels == 5 and WDSR(4.7, n_blocks=1, n_feats=8).tail.out_channels == 5
    x = torch.rand(2, 1, 10, 7)
    out = a(x, scale=3.3)  # an untrained WDSR is cubic interpolation at the factor of the call
    assert out.shape[-2] == 33
    torch.testing.assert_close(out, upsample_rows(x, 3.3, 33))
    with pytest.raises(ValueError, match="shuffle"):
        WDSR(2.0, shuffle=0)


def _ramp_source(shape: tuple[int, int, int] = (40, 36, 30), flat: bool = False) -> HRSource:
    grid = np.indices(shape).astype(np.float32)
    data = np.full(shape, 0.4, np.float32) if flat else (np.sin(grid[0] / 3) * np.cos(grid[1] / 4) + 1) / 2
    return HRSource("ramp", data.astype(np.float32), 1.0)


def _batches(source: HRSource, seed: int = 0) -> RandomProfileBatches:
    return RandomProfileBatches(
        [source],
        ("slr", "gaussian", "rect"),
        (1.5, 5.0),
        (0.0, 1.0),
        "variance",
        8,
        12,
        4,
        3,
        6,
        "gradient",
        1.0,
        9,
        seed,
    )


def test_pretraining_batches_follow_the_drawn_acquisition_and_are_seeded() -> None:
    batches = _batches(_ramp_source())
    scales = set()
    for index in range(9):
        item = batches[index]
        s = float(item["scale"])
        assert s == pytest.approx(float(item["thickness_mm"] + item["gap_mm"]))  # S = T + g at Δ = 1 mm
        assert 1.5 <= float(item["thickness_mm"]) <= 5.0 and 0.0 <= float(item["gap_mm"]) <= 1.0
        assert item["lr"].shape == (4, 1, 8, 12) and item["hr"].shape == (4, 1, round(s * 8), 12)
        scales.add(round(s, 6))
    assert len(scales) == 3  # one acquisition per episode of 3 batches
    again = _batches(_ramp_source())
    for index in (4, 0, 8):  # any order: items are pure functions of (seed, index)
        torch.testing.assert_close(again[index]["lr"], batches[index]["lr"])
    assert not torch.equal(_batches(_ramp_source(), seed=1)[0]["lr"], batches[0]["lr"])
    # Unit-sum kernel and interpolating B-spline: a flat field stays flat in LR and HR.
    flat = _batches(_ramp_source(flat=True))[2]
    torch.testing.assert_close(flat["lr"], torch.full_like(flat["lr"], 0.4), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat["hr"], torch.full_like(flat["hr"], 0.4), atol=1e-6, rtol=0)


def test_datamodule_refuses_bad_ranges() -> None:
    with pytest.raises(ValueError, match="thickness_mm"):
        RandomProfilePairsDataModule(["a"], ["a"], thickness_mm=(5.0, 1.5))
    with pytest.raises(ValueError, match="profiles"):
        RandomProfilePairsDataModule(["a"], ["a"], profiles=("file",))


@pytest.fixture(scope="module")
def exported(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few pretraining steps on the t2 crop, checkpointed as train.py would, exported to a weights file."""
    crop = str(shared_data / "fixtures" / "t2_crop" / "t2.nii.gz")
    data_cfg = {
        "_target_": "mrisr.data.prior.RandomProfilePairsDataModule",
        "train": [crop],
        "val": [crop],
        "batch_size": 4,
        "batches_per_epoch": 4,
        "val_batches": 1,
    }
    model_cfg = {"_target_": "mrisr.systems.zero_shot_prior.ZeroShotPretraining", "net": TINY_NET}
    torch.manual_seed(0)
    model, datamodule = instantiate(model_cfg), instantiate(data_cfg)
    model.run_config = {"model": model_cfg, "data": data_cfg, "seed": 0}
    out = tmp_path_factory.mktemp("prior")
    trainer = L.Trainer(
        accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=datamodule)
    trainer.save_checkpoint(out / "last.ckpt")
    export_prior(out / "last.ckpt", out / "prior.pt")
    return out / "prior.pt"


def test_export_is_small_fp16_with_config_and_provenance(exported: Path) -> None:
    payload = read_weights(exported)
    assert all(t.dtype == torch.float16 for t in payload["state_dict"].values())
    assert payload["net"] == {k: v for k, v in TINY_NET.items() if k != "_partial_"}
    provenance = payload["provenance"]
    assert provenance["global_step"] == 4 and provenance["train_sources"] == ["fixtures/t2_crop/t2.nii.gz"]
    assert provenance["ranges"]["thickness_mm"] == [1.5, 5.0]  # code defaults are recorded too
    n_params = sum(p.numel() for p in WDSR(4.0, n_blocks=1, n_feats=8, shuffle=5).parameters())
    assert sum(t.numel() for t in payload["state_dict"].values()) == n_params


def test_prior_fit_starts_from_the_weights_and_keeps_the_budget(exported: Path, shared_data: Path) -> None:
    net = {"n_blocks": 1, "n_feats": 8, "shuffle": 5}
    model = smoke_model(net={**TINY_NET, **net}, init_weights=str(exported), max_steps=100000, max_time_s=3.0)
    start = model.build_net(4.0)
    weights = read_weights(exported)["state_dict"]
    for name, value in start.state_dict().items():
        torch.testing.assert_close(value, weights[name].float(), rtol=0, atol=0)
    assert weights["tail.weight"].abs().sum() > 0  # trained: not the zero-initialised tail of a fresh WDSR
    hr = nib.load(shared_data / "fixtures" / "t2_crop" / "t2.nii.gz")
    volume = as_volume(mrisr.simulate(hr, thickness_mm=3.0, gap_mm=1.0, axis=2))
    started = time.perf_counter()
    result = run_on_volume(model, volume)
    assert time.perf_counter() - started < 3.0 + 1.5  # budget plus Trainer start-up slack on a loaded machine
    assert result.fit.record["init_weights"] == str(exported) and result.fit.record["steps"] >= 1
    assert result.sr.shape == hr.shape and np.isfinite(result.sr.data).all()


def test_mismatching_or_foreign_weights_are_one_line_input_errors(exported: Path, tmp_path: Path) -> None:
    other = smoke_model(net={**TINY_NET, "n_feats": 4}, init_weights=str(exported))  # file is readable
    with pytest.raises(MrisrInputError, match="do not match the network") as err:
        other.build_net(4.0)
    assert "\n" not in str(err.value) and str(exported) in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    smoke = compose("infer", ["model=smore_smoke", "input=x", "output=y"]).model
    assert "not an mrisr-net-weights" in str(construction_error(smoke, init_weights=str(foreign)))
    assert "weights file not found" in str(construction_error(smoke, init_weights=str(tmp_path / "missing.pt")))


def test_smore_prior_config_uses_the_shipped_weights_or_names_how_to_make_them() -> None:
    cfg = compose("infer", ["model=smore_prior", "input=x", "output=y"])
    shipped = weights_folder() / "smore_prior.pt"
    assert cfg.model.init_weights == "smore_prior" and cfg.model.max_time_s == 60
    if not shipped.is_file():
        assert PRETRAIN_COMMAND in str(construction_error(cfg.model))
        return
    model = instantiate(cfg.model)
    assert type(model).inference_protocol.needs_checkpoint is False  # the weights ship with the package
    weights = read_weights(shipped)["state_dict"]
    for name, value in model.build_net(4.0).state_dict().items():
        torch.testing.assert_close(value, weights[name].float(), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("precision", "inference_precision", "expected"),
    [
        ("32-true", "bf16", torch.bfloat16),
        ("bf16-mixed", "32", None),
        ("32-true", "16", torch.float16),
        ("32-true", "auto", torch.bfloat16 if native_bf16("cpu") else None),  # bf16 only where this CPU has it
    ],
)
def test_inference_runs_in_inference_precision_not_fit_precision(
    precision: str, inference_precision: str, expected: torch.dtype | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = smoke_model(precision=precision, inference_precision=inference_precision, max_steps=1)
    assert model.autocast_dtype() is expected
    seen = []
    real = planes_module.predict_planes

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        seen.append(args[4])
        return real(*args, **kwargs)

    monkeypatch.setattr(planes_module, "predict_planes", spy)
    data = np.random.default_rng(0).random((12, 10, 5)).astype(np.float32)
    volume = as_volume(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])))
    run_on_volume(model, volume, InferenceSettings(estimate_thickness=False))
    assert seen == [expected]
    with pytest.raises(Exception, match="inference_precision must be one of"):
        smoke_model(inference_precision="8")


def test_profile_auto_estimates_kind_and_thickness_once(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hr = nib.load(shared_data / "fixtures" / "t2_crop" / "t2.nii.gz")
    volume = as_volume(mrisr.simulate(hr, thickness_mm=3.0, gap_mm=1.0, axis=2, profile="slr"))
    calls = []
    real = acquisition_module._estimate

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(args[2].candidates if args[3] else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(acquisition_module, "_estimate", counted)
    model = smoke_model(profile="auto", max_steps=2)
    result = run_on_volume(model, volume)
    assert calls == [("slr", "gaussian", "rect")]  # one joint estimate, shared by the thickness chain and the fit
    assert model.thickness_mm is None  # the model is never changed: the next volume goes through the chain again
    fit = result.fit.record
    assert result.record["thickness_source"] == "estimate" and result.record["profile_source"] == "estimate"
    assert fit["profile_source"] == "estimate" and fit["thickness_source"] == "estimate"
    assert fit["profile"] == fit["profile_estimate"]["shape"] in ("slr", "gaussian", "rect")
    assert fit["thickness_mm"] == pytest.approx(result.record["thickness_mm"])
    assert abs(fit["thickness_mm"] - 3.0) < 0.75  # simulated T = 3 mm (phantom accuracy of the estimator)
    assert set(fit["profile_estimate"]["mismatch"]) == {"slr", "gaussian", "rect"}
    assert json.loads(json.dumps(fit))["profile_estimate"]["shape"] == fit["profile"]  # sidecar-ready
    # A given thickness wins; only the kind is estimated.
    given = smoke_model(profile="auto", thickness_mm=2.5, max_steps=2)
    resolved = resolve_acquisition(None, volume, detect_slice_axis(volume), given.acquisition_request())
    summary = given.fit_volume(volume, detect_slice_axis(volume), resolved).record
    assert summary["thickness_mm"] == 2.5 and summary["thickness_source"] == "argument"
    assert summary["profile_source"] == "estimate"
    with pytest.raises(Exception, match="profile must be"):
        smoke_model(profile="box")


def test_pretraining_system_refuses_nothing_train_py_needs() -> None:
    model = ZeroShotPretraining(net=lambda scale: WDSR(scale, n_blocks=1, n_feats=8, shuffle=5))
    assert model.inference_protocol.needs_checkpoint  # train.py trains it; infer.py loads its checkpoints
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in WDSR(2.0, n_blocks=1, n_feats=8, shuffle=5).parameters()
    )
