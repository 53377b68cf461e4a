"""Perceptual, content and GAN losses and the MRI feature extractor (docs/models.md §2.5, §4)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mrisr.core.errors import MrisrInputError
from mrisr.losses import ContentLoss, MRIFeatures, PerceptualLoss, VanillaGANLoss, VGG19Features, train_mri_features
from mrisr.losses.perceptual import IMAGENET_MEAN, IMAGENET_STD, REAL_ESRGAN_LAYER_WEIGHTS


@pytest.fixture(scope="module")
def torchvision_vgg19() -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.vgg19(weights=None).eval()  # random init, never downloads


def tiny_rgb_backbone() -> MRIFeatures:
    torch.manual_seed(0)
    return MRIFeatures(in_channels=3, widths=(4, 6))


# ------------------------------------------------------------------------------------------------------------- VGG-19


def test_vgg19_features_match_torchvision_layout(torchvision_vgg19: nn.Module) -> None:
    ours = VGG19Features()
    tv = torchvision_vgg19.features
    assert len(ours.features) == 35  # indices 0..34, conv5_4 last
    for i, (a, b) in enumerate(zip(ours.features, tv, strict=False)):
        assert type(a) is type(b), i
        if isinstance(a, nn.Conv2d):
            assert (a.weight.shape, a.bias.shape, a.padding) == (b.weight.shape, b.bias.shape, b.padding)
    tv_keys = {f"features.{k}" for k in tv.state_dict()}
    assert set(ours.state_dict()) == {k for k in tv_keys if int(k.split(".")[1]) <= 34}
    idx = {name: ours.layer_names.index(name) for name in REAL_ESRGAN_LAYER_WEIGHTS}
    assert idx == {"conv1_2": 2, "conv2_2": 7, "conv3_4": 16, "conv4_4": 25, "conv5_4": 34}


def test_torchvision_state_dict_loads_and_features_are_pre_activation(torchvision_vgg19: nn.Module) -> None:
    tv = torchvision_vgg19.features
    ours = VGG19Features()
    ours.load_torchvision_state_dict(tv.state_dict())  # keys without the "features." prefix
    assert all(torch.equal(v, tv.state_dict()[k.removeprefix("features.")]) for k, v in ours.state_dict().items())
    x = torch.rand(1, 3, 16, 16)
    feats = ours(x, list(REAL_ESRGAN_LAYER_WEIGHTS))
    with torch.no_grad():
        for name, i in (("conv1_2", 2), ("conv3_4", 16), ("conv5_4", 34)):
            torch.testing.assert_close(feats[name], tv[: i + 1](x.clone()))
    assert (feats["conv2_2"] < 0).any()  # taken before the ReLU


def test_perceptual_loss_loads_a_torchvision_file(tmp_path: Path, torchvision_vgg19: nn.Module) -> None:
    state = {
        f"features.{k}": v for k, v in torchvision_vgg19.features.state_dict().items() if int(k.split(".")[0]) <= 10
    }
    state["classifier.0.weight"] = torch.zeros(2, 2)  # classifier keys are ignored
    path = tmp_path / "vgg19-test.pth"
    torch.save(state, path)
    loss = PerceptualLoss(layer_weights={"conv1_2": 1.0, "conv2_2": 0.5}, weights_path=str(path))
    assert loss.features_description == "vgg19-imagenet:vgg19-test.pth"
    assert len(loss.backbone.features) == 8  # built only up to conv2_2
    assert torch.equal(loss.backbone.features[5].weight, torchvision_vgg19.features[5].weight)
    with pytest.raises(MrisrInputError, match="missing"):
        PerceptualLoss(weights_path=str(path))  # the file stops before conv3_4
    with pytest.raises(MrisrInputError, match="does not exist"):
        PerceptualLoss(weights_path=str(tmp_path / "none.pth"))


def test_random_init_vgg_warns_and_is_tagged() -> None:
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        loss = PerceptualLoss(layer_weights={"conv1_2": 1.0})
    assert loss.features_description == "vgg19-random-init"


# ------------------------------------------------------------------------------------------------------ PerceptualLoss


def test_perceptual_loss_zero_for_identical_positive_otherwise() -> None:
    loss = PerceptualLoss({"conv1_2": 0.1, "conv2_2": 1.0}, backbone=tiny_rgb_backbone())
    x = torch.rand(2, 3, 16, 16)
    assert float(loss(x, x.clone())) == 0.0
    assert float(loss(x, torch.rand(2, 3, 16, 16))) > 0.0


def test_perceptual_loss_value_is_the_weighted_sum_of_l1_feature_distances() -> None:
    backbone = tiny_rgb_backbone()
    weights = {"conv1_2": 0.1, "conv2_2": 1.0}
    loss = PerceptualLoss(weights, backbone=backbone)
    p, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    fp, ft = backbone((p - mean) / std, list(weights)), backbone((t - mean) / std, list(weights))
    expected = sum(w * (fp[n] - ft[n]).abs().mean() for n, w in weights.items())
    torch.testing.assert_close(loss(p, t), expected)
    l2 = PerceptualLoss(weights, backbone=backbone, criterion="l2")
    torch.testing.assert_close(l2(p, t), sum(w * ((fp[n] - ft[n]) ** 2).mean() for n, w in weights.items()))


def test_gradients_reach_the_input_not_the_frozen_backbone() -> None:
    loss = PerceptualLoss({"conv2_2": 1.0}, backbone=tiny_rgb_backbone())
    loss.train()
    assert not loss.backbone.training  # stays in eval mode
    pred = torch.rand(1, 3, 8, 8, requires_grad=True)
    target = torch.rand(1, 3, 8, 8, requires_grad=True)
    loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None  # target branch detached
    assert all(p.grad is None and not p.requires_grad for p in loss.backbone.parameters())


def test_one_channel_input_is_replicated_for_an_rgb_backbone() -> None:
    loss = PerceptualLoss({"conv1_2": 1.0, "conv2_2": 1.0}, backbone=tiny_rgb_backbone())
    p, t = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(loss(p, t), loss(p.repeat(1, 3, 1, 1), t.repeat(1, 3, 1, 1)))


def test_pseudo_rgb_on_a_grey_backbone_averages_the_slices() -> None:
    torch.manual_seed(0)
    loss = PerceptualLoss({"conv1_2": 1.0, "conv2_2": 1.0}, backbone=MRIFeatures(widths=(4, 6)), use_input_norm=False)
    p, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    per_slice = torch.stack([loss(p[:, c : c + 1], t[:, c : c + 1]) for c in range(3)]).mean()
    torch.testing.assert_close(loss(p, t), per_slice)


def test_perceptual_loss_configuration_errors() -> None:
    with pytest.raises(ValueError, match="3-channel backbone"):
        PerceptualLoss({"conv1_2": 1.0}, backbone=MRIFeatures(widths=(4, 6)))
    with pytest.raises(ValueError, match="not in the backbone"):
        PerceptualLoss({"conv5_4": 1.0}, backbone=tiny_rgb_backbone())
    with pytest.raises(ValueError, match="not both"):
        PerceptualLoss(backbone=tiny_rgb_backbone(), weights_path="vgg.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="not in VGG-19"):
            PerceptualLoss({"conv6_1": 1.0})


def test_custom_backbone_description() -> None:
    class Tiny(nn.Module):
        in_channels = 3
        layer_names = ("a",)

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
            return {"a": self.conv(x)}

    assert PerceptualLoss({"a": 1.0}, backbone=Tiny()).features_description == "custom:Tiny"
    assert PerceptualLoss({"conv1_2": 1.0}, backbone=tiny_rgb_backbone()).features_description == (
        "mri-features-random-init"
    )


# ------------------------------------------------------------------------------------------------- content and GAN


class ConstantPerceptual(nn.Module):
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pred.new_tensor(0.25)


def test_content_loss_is_l1_plus_perceptual() -> None:
    p, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    total, parts = ContentLoss(ConstantPerceptual())(p, t, return_parts=True)
    l1 = (p - t).abs().mean()
    torch.testing.assert_close(total, l1 + 0.25)
    torch.testing.assert_close(parts["l1"], l1)
    torch.testing.assert_close(parts["perceptual"], torch.tensor(0.25))
    weighted = ContentLoss(ConstantPerceptual(), l1_weight=2.0, perceptual_weight=4.0)(p, t)
    torch.testing.assert_close(weighted, 2 * l1 + 1.0)


def test_content_loss_with_a_real_perceptual_term() -> None:
    loss = ContentLoss(PerceptualLoss({"conv2_2": 1.0}, backbone=tiny_rgb_backbone()))
    x = torch.rand(1, 3, 8, 8)
    assert float(loss(x, x.clone())) == 0.0
    y = x.clone().requires_grad_(True)
    loss(y, x + 0.1).backward()
    assert y.grad.abs().sum() > 0


def test_gan_loss_analytic_values() -> None:
    gan = VanillaGANLoss()
    assert gan.weight == 0.05  # PRETTIER's λ
    zeros = torch.zeros(2, 1, 8, 8)
    assert math.isclose(float(gan(zeros, True)), math.log(2), rel_tol=1e-6)
    assert math.isclose(float(gan(zeros, False)), math.log(2), rel_tol=1e-6)
    assert math.isclose(float(gan.generator_loss(zeros)), 0.05 * math.log(2), rel_tol=1e-6)
    assert math.isclose(float(gan.discriminator_loss(zeros, zeros)), 2 * math.log(2), rel_tol=1e-6)
    big = torch.full((1, 1, 8, 8), 20.0)
    assert float(gan.discriminator_loss(big, -big)) < 1e-8
    # Matches BCEWithLogits per pixel for arbitrary logits.
    logits = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(
        gan(logits, False), F.binary_cross_entropy(torch.sigmoid(logits), torch.zeros_like(logits))
    )


def test_generator_loss_pushes_fake_logits_up() -> None:
    logits = torch.zeros(1, 1, 8, 8, requires_grad=True)
    VanillaGANLoss(weight=0.1).generator_loss(logits).backward()
    assert (logits.grad < 0).all()  # descending the loss raises D's realness score of SR


# --------------------------------------------------------------------------------------------------------- MRIFeatures


def test_mri_features_is_small_and_named() -> None:
    net = MRIFeatures()
    n_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    assert n_bytes < 1_000_000
    assert net.stage_outputs == ("conv1_2", "conv2_2", "conv3_2", "conv4_2")
    feats = net(torch.rand(2, 1, 32, 32), net.stage_outputs)
    assert [f.shape[-1] for f in feats.values()] == [32, 16, 8, 4]


def smooth_slices(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 1, 40, 40, generator=g)
    return F.avg_pool2d(x, 5, stride=1, padding=2)  # smooth random images, values in [0, 1]


def test_train_mri_features_is_deterministic_and_learns() -> None:
    slices = smooth_slices(0)
    rng_before = torch.random.get_rng_state()
    kw = dict(steps=40, batch_size=4, crop=32, widths=(8, 12, 16), lr=3e-3)
    net_a, losses_a = train_mri_features(slices, seed=3, **kw)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    net_b, losses_b = train_mri_features(slices, seed=3, **kw)
    assert losses_a == losses_b
    assert all(torch.equal(v, net_b.state_dict()[k]) for k, v in net_a.state_dict().items())
    _, losses_c = train_mri_features(slices, seed=4, **kw)
    assert losses_c != losses_a
    assert sum(losses_a[-5:]) / 5 < 0.7 * sum(losses_a[:5]) / 5
    assert not net_a.training


def test_trained_mri_features_round_trip_and_use_as_backbone(tmp_path: Path) -> None:
    net, _ = train_mri_features(smooth_slices(1), steps=2, batch_size=2, crop=16, widths=(4, 6))
    path = tmp_path / "mri_features.pt"
    torch.save(net.state_dict(), path)
    loaded = MRIFeatures(widths=(4, 6), weights_path=str(path))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
    assert loaded.features_description == "mri-features:mri_features.pt"
    loss = PerceptualLoss({"conv1_2": 1.0, "conv2_2": 1.0}, backbone=loaded, use_input_norm=False)
    assert loss.features_description == "mri-features:mri_features.pt"
    x = torch.rand(1, 3, 16, 16)
    assert float(loss(x, x.clone())) == 0.0 and float(loss(x, x.flip(-1))) > 0.0
    with pytest.raises(MrisrInputError, match="widths"):
        MRIFeatures(widths=(4, 8), weights_path=str(path))


def test_train_mri_features_rejects_bad_crop() -> None:
    with pytest.raises(ValueError, match="crop"):
        train_mri_features(torch.rand(2, 1, 20, 20), steps=1, crop=32)
