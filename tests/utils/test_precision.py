"""Precision that is fast on the machine at hand: bf16 only where native, explicit choices obeyed."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from tests.systems.test_diffusion_system import TINY_UNET

from mrisr.nets.diffusion_unet import ConditionalUNet
from mrisr.systems.diffusion import DiffusionSR
from mrisr.utils import precision
from mrisr.utils.config import compose


@pytest.fixture
def bf16_support(monkeypatch: pytest.MonkeyPatch):
    """Set what the CPU is said to support (the real check is cached per process)."""

    def set_native(native: bool) -> None:
        monkeypatch.setattr(precision, "native_bf16", lambda device_type="cpu": native)

    return set_native


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_where_native(bf16_support, native: bool) -> None:
    bf16_support(native)
    assert precision.autocast_dtype("auto") is (torch.bfloat16 if native else None)
    assert precision.training_precision() == ("bf16-mixed" if native else "32-true")


@pytest.mark.parametrize("native", [True, False])
def test_explicit_precisions_are_obeyed(bf16_support, native: bool) -> None:
    bf16_support(native)
    assert precision.autocast_dtype("bf16") is torch.bfloat16
    assert precision.autocast_dtype("16") is torch.float16
    assert precision.autocast_dtype("32") is None
    assert precision.autocast_dtype(None) is None


def test_unknown_precision_names_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"precision must be one of \['auto', '32', 'bf16', '16'\], got '8'"):
        precision.autocast_dtype("8")


def test_native_bf16_matches_the_cpu_instructions() -> None:
    cpu = torch.cpu
    expected = bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    assert precision.native_bf16("cpu") is expected


def test_the_cpu_trainer_config_trains_in_the_machines_fast_precision(tmp_path) -> None:
    cfg = compose("train", [f"paths.output_dir={tmp_path}"])
    assert cfg.trainer.precision == precision.training_precision("cpu")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    expected = "bf16-mixed" if precision.native_bf16("cpu") else "32-true"
    assert trainer.precision == expected


def test_diffusion_auto_precision_follows_the_device(bf16_support) -> None:
    model = DiffusionSR(ConditionalUNet(**TINY_UNET), precision="auto")
    bf16_support(False)
    assert model.autocast_dtype is None
    bf16_support(True)
    assert model.autocast_dtype is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        DiffusionSR(ConditionalUNet(**TINY_UNET), precision="8")
