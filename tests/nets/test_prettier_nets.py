"""PRETTIER networks (EDSR, RRDBNet, UNetDiscriminatorSN) and checkpoint import (docs/models.md §2.1–2.3, §4)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from mrisr.core.errors import MrisrInputError
from mrisr.nets.discriminator import UNetDiscriminatorSN
from mrisr.nets.edsr import EDSR, MeanShift
from mrisr.nets.pretrained import load_pretrained, map_basicsr_edsr_keys
from mrisr.nets.rrdbnet import RRDB, ResidualDenseBlock, RRDBNet


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def tiny_edsr(ch: int = 3, out: int | None = None, **kw: object) -> EDSR:
    return EDSR(ch, ch if out is None else out, n_feats=8, n_resblocks=2, res_scale=0.1, upscale=4, **kw)


def tiny_rrdb(ch: int = 3, scale: int = 4) -> RRDBNet:
    return RRDBNet(ch, ch, scale=scale, num_feat=8, num_block=2, num_grow_ch=4)


def randomize(net: nn.Module, seed: int) -> nn.Module:
    """Fill every tensor of the state dict (incl. zero-initialised ones) with distinct seeded values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return net


def assert_state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    keys = [k for k in a if not k.startswith(skip)]
    assert keys and all(torch.equal(a[k], b[k]) for k in keys)


# ---------------------------------------------------------------------------------------------------- parameter counts


def test_edsr_l_x4_parameter_count_and_edsr_pytorch_keys() -> None:
    net = EDSR(3, 3, n_feats=256, n_resblocks=32, res_scale=0.1, upscale=4, mean_shift=True)
    assert n_params(net) == 43_089_947  # docs/models.md §2.1, incl. 2 × 12 MeanShift parameters
    keys = list(net.state_dict())
    assert keys[:4] == ["sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"]
    for k in ("head.0.weight", "body.0.body.0.weight", "body.31.body.2.bias", "body.32.weight", "tail.0.0.weight"):
        assert k in keys
    assert keys[-4:] == ["tail.0.2.weight", "tail.0.2.bias", "tail.1.weight", "tail.1.bias"]
    assert all(b.res_scale == 0.1 for b in net.body[:32])
    assert not any(p.requires_grad for p in (*net.sub_mean.parameters(), *net.add_mean.parameters()))
    # Without MeanShift the same net has exactly 24 parameters fewer.
    assert n_params(EDSR(3, 3, n_feats=256, n_resblocks=32, res_scale=0.1, upscale=4)) == 43_089_947 - 24


def test_edsr_baseline_x4_parameter_count() -> None:
    # EDSR baseline 16 × 64 (Lim et al. 2017 report 1.5 M): 1792 + 16·73,856 + 36,928 + 2·147,712 + 1,731 + 24.
    assert n_params(EDSR(3, 3, n_feats=64, n_resblocks=16, upscale=4, mean_shift=True)) == 1_517_595


def test_rrdbnet_x4plus_parameter_count_and_keys() -> None:
    net = RRDBNet()
    assert n_params(net) == 16_697_987  # docs/models.md §2.2
    keys = set(net.state_dict())
    for k in ("conv_first.weight", "body.22.rdb3.conv5.bias", "conv_body.weight", "conv_up1.weight", "conv_up2.bias"):
        assert k in keys
    assert {"conv_hr.weight", "conv_last.bias"} <= keys and "body.23.rdb1.conv1.weight" not in keys


def test_discriminator_parameter_count_and_spectral_norm_keys() -> None:
    net = UNetDiscriminatorSN()
    # conv0 1,792 + 4×4 convs 131,072 + 524,288 + 2,097,152 + 3×3 convs 1,179,648 + 294,912 + 73,728 + 2·36,864 + 577.
    assert n_params(net) == 4_376_897
    keys = set(net.state_dict())
    for i in range(1, 9):
        assert {f"conv{i}.weight_orig", f"conv{i}.weight_u", f"conv{i}.weight_v"} <= keys
        assert f"conv{i}.bias" not in keys
    assert {"conv0.weight", "conv0.bias", "conv9.weight", "conv9.bias"} <= keys


# ---------------------------------------------------------------------------------------------------------------- EDSR


@pytest.mark.parametrize("ch", [1, 3])
def test_edsr_x4_output_size(ch: int) -> None:
    net = tiny_edsr(ch)
    assert net(torch.rand(2, ch, 12, 10)).shape == (2, ch, 48, 40)


def test_edsr_default_keeps_identity_at_initialisation() -> None:
    net = EDSR(n_feats=8, n_resblocks=2)
    x = torch.rand(1, 1, 9, 7)
    assert torch.equal(net(x), x)
    assert net.sub_mean is None and net.add_mean is None


def test_edsr_mean_shift_skipped_by_default_and_applied_on_request() -> None:
    torch.manual_seed(0)
    plain = tiny_edsr(3)
    skipped = tiny_edsr(3, mean_shift=True)
    skipped.load_state_dict({**skipped.state_dict(), **plain.state_dict()})
    x = torch.rand(1, 3, 8, 8) * 255
    assert torch.equal(skipped(x), plain(x))  # PRETTIER forward: MeanShift present but unused
    applied = tiny_edsr(3, mean_shift=True, apply_mean_shift=True)
    applied.load_state_dict(skipped.state_dict())
    mean = 255 * torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
    torch.testing.assert_close(applied(x), plain(x - mean) + mean)
    with pytest.raises(ValueError, match="mean_shift"):
        tiny_edsr(3, apply_mean_shift=True)


def test_mean_shift_is_a_frozen_exact_shift() -> None:
    ms = MeanShift((0.1, 0.2, 0.3), value_range=255.0, sign=-1)
    x = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(ms(x), x - 255 * torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1))
    assert not any(p.requires_grad for p in ms.parameters())


# ------------------------------------------------------------------------------------------------------------- RRDBNet


@pytest.mark.parametrize("ch", [1, 3])
@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_scales_and_channels(ch: int, scale: int) -> None:
    net = tiny_rrdb(ch, scale)
    assert net.conv_first.in_channels == ch * {4: 1, 2: 4, 1: 16}[scale]
    assert net(torch.rand(1, ch, 8, 12)).shape == (1, ch, 8 * scale, 12 * scale)


def test_rrdbnet_rejects_unsupported_scale() -> None:
    with pytest.raises(ValueError, match="scale"):
        RRDBNet(scale=3)


def test_residual_scaling_is_0_2_in_rdb_and_rrdb() -> None:
    # With conv5 = 0 weight and unit bias, an RDB adds exactly 0.2; an RRDB of three gives x + 0.2·(x + 0.6).
    block = RRDB(num_feat=4, num_grow_ch=2)
    with torch.no_grad():
        for rdb in (block.rdb1, block.rdb2, block.rdb3):
            rdb.conv5.weight.zero_()
            rdb.conv5.bias.fill_(1.0)
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(block.rdb1(x), x + 0.2)
    torch.testing.assert_close(block(x), 1.2 * x + 0.12)
    assert isinstance(block.rdb1, ResidualDenseBlock)


# ------------------------------------------------------------------------------------------------------- discriminator


@pytest.mark.parametrize("ch", [1, 3])
def test_discriminator_per_pixel_logits(ch: int) -> None:
    net = UNetDiscriminatorSN(ch, num_feat=4)
    assert net(torch.rand(2, ch, 24, 16)).shape == (2, 1, 24, 16)
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.rand(1, ch, 20, 16))


def test_discriminator_spectral_norm_bounds_weights() -> None:
    torch.manual_seed(0)
    net = UNetDiscriminatorSN(1, num_feat=4).train()
    for _ in range(30):  # power iterations run in training-mode forwards
        net(torch.rand(1, 1, 16, 16))
    w = net.conv2.weight  # the normalised weight used in the last forward
    sigma = torch.linalg.matrix_norm(w.detach().reshape(w.shape[0], -1), ord=2)
    assert abs(float(sigma) - 1.0) < 1e-2
    assert float(torch.linalg.matrix_norm(net.conv2.weight_orig.detach().reshape(w.shape[0], -1), ord=2)) != 1.0


# --------------------------------------------------------------------------------------------------- checkpoint import


def to_basicsr_edsr(state: dict[str, torch.Tensor], n_resblocks: int) -> dict[str, torch.Tensor]:
    """Inverse of the documented key map, written independently (test oracle)."""
    out = {}
    for k, v in state.items():
        if k.startswith(("sub_mean.", "add_mean.")):
            continue  # BasicSR EDSR keeps its mean as a plain attribute, not in the state dict
        k2 = re.sub(r"^head\.0\.", "conv_first.", k)
        k2 = re.sub(rf"^body\.{n_resblocks}\.", "conv_after_body.", k2)
        k2 = re.sub(r"^body\.(\d+)\.body\.0\.", r"body.\1.conv1.", k2)
        k2 = re.sub(r"^body\.(\d+)\.body\.2\.", r"body.\1.conv2.", k2)
        k2 = re.sub(r"^tail\.0\.(\d+)\.", r"upsample.\1.", k2)
        k2 = re.sub(r"^tail\.1\.", "conv_last.", k2)
        out[k2] = v
    return out


def test_load_edsr_pytorch_layout_with_prettier_wrapper(tmp_path: Path) -> None:
    src = randomize(tiny_edsr(3, mean_shift=True), 1)
    path = tmp_path / "edsr.pth"
    torch.save({"model_weights": src.state_dict(), "epoch": 7}, path)
    dst = tiny_edsr(3, mean_shift=True)
    record = load_pretrained(dst, path)
    assert_state_equal(src.state_dict(), dst.state_dict())
    assert record["layout"] == "edsr-pytorch" and record["checkpoint_key"] == "model_weights"
    assert record["mean_shift"] == "loaded" and record["channel_adaptation"] == {}
    assert record["n_tensors"] == len(src.state_dict())


def test_mean_shift_dropped_when_net_has_none(tmp_path: Path) -> None:
    src = randomize(tiny_edsr(3, mean_shift=True), 2)
    path = tmp_path / "edsr_x4.pt"
    torch.save(src.state_dict(), path)
    dst = tiny_edsr(3)
    record = load_pretrained(dst, path, checkpoint_key=None)
    assert_state_equal(dst.state_dict(), src.state_dict())
    assert record["mean_shift"] == "dropped" and record["checkpoint_key"] is None


def test_load_basicsr_edsr_layout_prefers_params_ema(tmp_path: Path) -> None:
    ema = randomize(tiny_edsr(3), 3)
    raw = randomize(tiny_edsr(3), 4)
    path = tmp_path / "EDSR_Lx4.pth"
    torch.save(
        {"params": to_basicsr_edsr(raw.state_dict(), 2), "params_ema": to_basicsr_edsr(ema.state_dict(), 2)}, path
    )
    assert "conv_after_body.weight" in to_basicsr_edsr(raw.state_dict(), 2)
    dst = tiny_edsr(3, mean_shift=True)
    defaults = {k: v.clone() for k, v in dst.state_dict().items() if "mean" in k}
    record = load_pretrained(dst, path)
    assert record["layout"] == "basicsr-edsr" and record["checkpoint_key"] == "params_ema"
    assert_state_equal(ema.state_dict(), dst.state_dict())
    assert record["mean_shift"] == "net-defaults"
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in defaults.items())
    load_pretrained(dst, path, checkpoint_key="params")
    assert_state_equal(raw.state_dict(), dst.state_dict())


def test_basicsr_edsr_key_map() -> None:
    mapped = map_basicsr_edsr_keys(
        {
            k: torch.zeros(1)
            for k in (
                "conv_first.weight",
                "body.3.conv2.bias",
                "conv_after_body.weight",
                "upsample.2.bias",
                "conv_last.weight",
            )
        },
        n_resblocks=32,
        last_conv="tail.1",
    )
    assert list(mapped) == ["head.0.weight", "body.3.body.2.bias", "body.32.weight", "tail.0.2.bias", "tail.1.weight"]


@pytest.mark.parametrize("wrapper", ["params_ema", "params", "generator_weights"])
def test_load_rrdbnet_wrappers(tmp_path: Path, wrapper: str) -> None:
    src = randomize(tiny_rrdb(), 5)
    path = tmp_path / "RealESRGAN_x4plus.pth"
    torch.save({wrapper: src.state_dict()}, path)
    dst = tiny_rrdb()
    record = load_pretrained(dst, path)
    assert_state_equal(src.state_dict(), dst.state_dict())
    assert record["layout"] == "basicsr-rrdbnet" and record["checkpoint_key"] == wrapper


def test_load_strips_dataparallel_prefix_and_loads_discriminator(tmp_path: Path) -> None:
    src = randomize(UNetDiscriminatorSN(3, num_feat=4), 6)
    path = tmp_path / "netD.pth"
    torch.save({"params": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = UNetDiscriminatorSN(3, num_feat=4)
    record = load_pretrained(dst, path)
    assert_state_equal(src.state_dict(), dst.state_dict())
    assert record["prefix_stripped"] == "module." and record["layout"] == "real-esrgan-unet-discriminator-sn"


def test_rgb_to_grey_adaptation_follows_the_rule(tmp_path: Path) -> None:
    src = randomize(tiny_edsr(3, mean_shift=True), 7)
    path = tmp_path / "edsr.pt"
    torch.save(src.state_dict(), path)
    dst = tiny_edsr(1, mean_shift=True)
    record = load_pretrained(dst, path)
    s, d = src.state_dict(), dst.state_dict()
    torch.testing.assert_close(d["head.0.weight"], s["head.0.weight"].sum(1, keepdim=True))
    assert torch.equal(d["head.0.bias"], s["head.0.bias"])
    torch.testing.assert_close(d["tail.1.weight"], s["tail.1.weight"].mean(0, keepdim=True))
    torch.testing.assert_close(d["tail.1.bias"], s["tail.1.bias"].mean(0, keepdim=True))
    assert_state_equal(s, d, skip=("head.0.", "tail.1.", "sub_mean.", "add_mean."))
    assert set(record["channel_adaptation"]) == {"head.0", "tail.1"} and record["mean_shift"] == "net-defaults"
    # Rationale: on a grey image the adapted net returns the mean of the RGB net's three output channels.
    x = torch.rand(1, 1, 6, 6)
    torch.testing.assert_close(dst(x), src(x.expand(-1, 3, -1, -1)).mean(1, keepdim=True), atol=1e-5, rtol=1e-4)


def test_grey_to_rgb_adaptation_follows_the_rule(tmp_path: Path) -> None:
    src = randomize(tiny_edsr(1), 8)
    path = tmp_path / "edsr1.pt"
    torch.save(src.state_dict(), path)
    dst = tiny_edsr(3)
    load_pretrained(dst, path)
    s, d = src.state_dict(), dst.state_dict()
    torch.testing.assert_close(d["head.0.weight"], s["head.0.weight"].expand(-1, 3, -1, -1) / 3)
    assert torch.equal(d["tail.1.weight"], s["tail.1.weight"].expand(3, -1, -1, -1))
    assert torch.equal(d["tail.1.bias"], s["tail.1.bias"].expand(3))
    x = torch.rand(1, 1, 6, 6)
    torch.testing.assert_close(dst(x.expand(-1, 3, -1, -1)), src(x).expand(-1, 3, -1, -1), atol=1e-5, rtol=1e-4)


def test_adaptation_of_pixel_unshuffled_rrdbnet(tmp_path: Path) -> None:
    src = randomize(tiny_rrdb(3, scale=2), 9)
    path = tmp_path / "rrdb_x2.pth"
    torch.save({"params_ema": src.state_dict()}, path)
    dst = tiny_rrdb(1, scale=2)
    load_pretrained(dst, path)
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(dst(x), src(x.expand(-1, 3, -1, -1)).mean(1, keepdim=True), atol=1e-5, rtol=1e-4)


def test_channel_errors(tmp_path: Path) -> None:
    path = tmp_path / "edsr.pt"
    torch.save(randomize(tiny_edsr(3), 10).state_dict(), path)
    with pytest.raises(MrisrInputError, match="adapt_channels"):
        load_pretrained(tiny_edsr(1), path, adapt_channels=False)
    with pytest.raises(MrisrInputError, match="3 <-> 1"):
        load_pretrained(EDSR(2, 2, n_feats=8, n_resblocks=2, upscale=4), path)


def _message(err: pytest.ExceptionInfo[MrisrInputError], path: Path) -> str:
    text = str(err.value)
    assert "\n" not in text and str(path) in text and "Fix:" in text
    return text


def test_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(MrisrInputError) as err:
        load_pretrained(tiny_edsr(3), missing)
    assert "does not exist" in _message(err, missing)

    good = tmp_path / "good.pth"
    torch.save({"params_ema": tiny_rrdb().state_dict()}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(MrisrInputError) as err:
        load_pretrained(tiny_rrdb(), truncated)
    assert "cannot be read" in _message(err, truncated)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(MrisrInputError):
        load_pretrained(tiny_rrdb(), garbage)


def test_layout_and_shape_errors(tmp_path: Path) -> None:
    rrdb_file = tmp_path / "rrdb.pth"
    torch.save({"params_ema": tiny_rrdb().state_dict()}, rrdb_file)
    with pytest.raises(MrisrInputError) as err:
        load_pretrained(tiny_edsr(3), rrdb_file)
    text = _message(err, rrdb_file)
    assert "unknown checkpoint layout" in text and "head.0.weight" in text and "conv_after_body" in text

    edsr_file = tmp_path / "edsr.pth"
    torch.save(tiny_edsr(3).state_dict(), edsr_file)
    with pytest.raises(MrisrInputError, match="shape mismatch"):
        load_pretrained(EDSR(3, 3, n_feats=16, n_resblocks=2, upscale=4), edsr_file)
    with pytest.raises(MrisrInputError, match="missing"):
        load_pretrained(EDSR(3, 3, n_feats=8, n_resblocks=3, upscale=4), edsr_file)
    with pytest.raises(MrisrInputError, match="not in the file"):
        load_pretrained(tiny_edsr(3), edsr_file, checkpoint_key="model_weights")

    nested = tmp_path / "nested.pth"
    torch.save({"optimizer": {"lr": 1e-4}, "epoch": 3}, nested)
    with pytest.raises(MrisrInputError, match="checkpoint_key"):
        load_pretrained(tiny_edsr(3), nested)


def test_files_with_arbitrary_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled_module.pth"
    torch.save(tiny_edsr(3), path)  # a whole pickled module, not a state dict
    with pytest.raises(MrisrInputError, match="other than tensors"):
        load_pretrained(tiny_edsr(3), path)


def test_loaded_net_is_usable_for_gradients(tmp_path: Path) -> None:
    src = randomize(tiny_rrdb(1), 11)
    path = tmp_path / "g.pth"
    torch.save({"generator_weights": src.state_dict()}, path)
    dst = tiny_rrdb(1)
    load_pretrained(dst, path)
    dst(torch.rand(1, 1, 4, 4)).mean().backward()
    assert all(p.grad is not None and math.isfinite(float(p.grad.abs().sum())) for p in dst.parameters())
