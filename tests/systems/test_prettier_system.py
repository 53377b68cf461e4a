"""PRETTIER data, systems and volume reconstruction (docs/models.md §2.4–2.8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from conftest import phantom
from mrisr.core.errors import MrisrInputError
from mrisr.data.prettier import PrettierPairsDataModule, axis_spacing_grid, thick_slice_pair
from mrisr.degradations import DegradationStack, Downsample, SliceProfile
from mrisr.inference import OutputGrid, interpolate_volume, output_grid
from mrisr.inference.prettier import linear_resize_matrix, reconstruct_volume
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.intensity import foreground_percentile
from mrisr.io.nifti import Volume, save_volume
from mrisr.io.regrid import resample_to_reference
from mrisr.losses import ContentLoss, MRIFeatures, PerceptualLoss, VanillaGANLoss
from mrisr.nets.discriminator import UNetDiscriminatorSN
from mrisr.nets.edsr import EDSR
from mrisr.nets.rrdbnet import RRDBNet
from mrisr.physics.resample import same_fov_positions
from mrisr.systems.prettier import AdversarialSR, PrettierSR, resize_patch
from mrisr.utils.config import compose
from support.volumes import bad_pretrained_files


# ---------------------------------------------------------------- helpers
def prettier_degradation(thickness: float = 5.0, separation: float = 6.0) -> DegradationStack:
    return DegradationStack(
        steps=[SliceProfile(thickness_mm=thickness, separation_mm=separation), Downsample()], setting="test"
    )


def tiny_content_loss() -> ContentLoss:
    backbone = MRIFeatures(in_channels=1, widths=(4, 8))
    return ContentLoss(PerceptualLoss({"conv1_2": 0.1, "conv2_2": 1.0}, backbone=backbone, use_input_norm=False))


def tiny_edsr_system(**kwargs) -> PrettierSR:
    torch.manual_seed(0)
    net = EDSR(in_channels=3, out_channels=3, n_feats=8, n_resblocks=1, upscale=4)
    return PrettierSR(net, loss=tiny_content_loss(), **kwargs)


def tiny_gan_system(**kwargs) -> AdversarialSR:
    torch.manual_seed(0)
    return AdversarialSR(
        RRDBNet(num_feat=8, num_block=1, num_grow_ch=4),
        UNetDiscriminatorSN(num_feat=8),
        loss=tiny_content_loss(),
        gan_loss=VanillaGANLoss(0.05),
        **kwargs,
    )


def patch_batch(n: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"lr": torch.rand(n, 3, 4, 24, generator=g), "hr": torch.rand(n, 3, 24, 24, generator=g)}


class NearestX4(nn.Module):
    """Stand-in ×4 network without border effects: nearest-neighbour replication of every pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(4, -2).repeat_interleave(4, -1)


# ---------------------------------------------------------------- data
def test_patch_pairs_shapes_alignment_foreground_and_splits(hr_files: list[str]) -> None:
    dm = PrettierPairsDataModule(
        [hr_files[0]], [hr_files[1]], [hr_files[2]], prettier_degradation(), hr_patch=24, patches_per_epoch=32,
        val_patches=4, batch_size=4,
    )  # fmt: skip
    dm.setup("fit")
    train_pairs = dm.train_set.pairs
    assert [p.axis for p in train_pairs] == [0, 1, 2]  # all three slice directions
    assert all("sub0" in p.name for p in train_pairs)  # split by subject
    for pair in train_pairs:
        # HR cropped to a multiple of f = 6 along every axis; LR slice j averages HR voxels 6j … 6j + 5.
        assert all(n % 6 == 0 for n in pair.hr.shape) and pair.lr.shape[pair.axis] * 6 == pair.hr.shape[pair.axis]
        blocks = pair.hr.reshape(*pair.hr.shape[: pair.axis], -1, 6, *pair.hr.shape[pair.axis + 1 :]).mean(
            pair.axis + 1
        )
        aligned = np.abs(pair.lr - blocks).mean()
        shifted = np.abs(np.roll(pair.lr, 1, pair.axis) - blocks).mean()
        assert aligned < 0.25 * shifted
        # 1.25 × P99.5 of the LR foreground maps to 1.
        assert pair.scale == pytest.approx(1.25 * foreground_percentile(pair.lr * pair.scale), rel=1e-5)
    item = dm.train_set[0]
    assert item["hr"].shape == (3, 24, 24) and item["lr"].shape == (3, 4, 24)
    # Foreground-weighted centres: patches are mostly tissue although the object fills about a quarter of the box.
    tissue = np.mean([float((dm.train_set[k]["hr"] > 0).float().mean()) for k in range(32)])
    assert tissue > 0.6 > float((train_pairs[0].hr > 0).mean())
    # Deterministic under the seed, different for another seed.
    again = PrettierPairsDataModule([hr_files[0]], [hr_files[1]], [], prettier_degradation(), hr_patch=24)
    again.setup("fit")
    assert torch.equal(again.train_set[5]["lr"], dm.train_set[5]["lr"])
    other = PrettierPairsDataModule([hr_files[0]], [hr_files[1]], [], prettier_degradation(), hr_patch=24, seed=1)
    other.setup("fit")
    assert not torch.equal(other.train_set[5]["hr"], dm.train_set[5]["hr"])
    dm.setup("test")
    test = dm.test_items[0]
    assert test["lr"].shape[2] == 9 and test["grid"].length == 54  # whole volume on its own LR grid


def test_one_channel_patches_and_a_separation_below_the_hr_spacing_is_refused(hr_files: list[str]) -> None:
    dm = PrettierPairsDataModule([hr_files[0]], [hr_files[1]], [], prettier_degradation(), hr_patch=24, in_channels=1)
    dm.setup("fit")
    assert dm.train_set[0]["hr"].shape == (1, 24, 24) and dm.train_set[0]["lr"].shape == (1, 4, 24)
    bad = PrettierPairsDataModule([hr_files[0]], [hr_files[1]], [], prettier_degradation(0.5, 0.5), hr_patch=24)
    with pytest.raises(MrisrInputError, match="below the HR spacing"):
        bad.setup("fit")


def test_axis_spacing_grid_is_exact_and_keeps_the_field_of_view_start() -> None:
    affine = np.array([[0.0, 0.0, -0.88, 30.0], [0.9, 0.0, 0.0, -4.0], [0.0, 1.1, 0.0, 7.0], [0, 0, 0, 1]])
    data = np.zeros((6, 5, 40), dtype=np.float32)
    volume = Volume(data=data, affine=affine)
    grid = axis_spacing_grid(volume, 2, 6.0 / 7.0)
    assert grid.shape == (6, 5, int(40 * 0.88 / (6 / 7)))
    assert np.allclose(grid.zooms, (0.9, 1.1, 6.0 / 7.0), atol=1e-12)
    # Outer edge of voxel 0 along the axis: the same world point on both grids.
    edge = lambda a: a[:3, :3] @ np.array([0.0, 0.0, -0.5]) + a[:3, 3]  # noqa: E731
    assert np.allclose(edge(grid.affine), edge(affine), atol=1e-12)


def test_non_integer_factor_resamples_the_hr_with_zero_misalignment() -> None:
    # A ramp in world z (mm): on the resampled HR grid every voxel must hold its own world z (exact affine, no shift).
    affine = np.diag([1.0, 1.0, 0.88, 1.0])
    affine[2, 3] = 3.0
    z_world = 3.0 + 0.88 * np.arange(96)
    data = np.broadcast_to(z_world, (40, 40, 96)).astype(np.float32).copy()
    volume = Volume(data=data, affine=affine)
    grid = axis_spacing_grid(volume, 2, 6.0 / 7.0)
    resampled = Volume(data=resample_to_reference(volume, grid, order=3), affine=grid.affine)
    z_new = (
        grid.affine
        @ np.stack([np.zeros(grid.shape[2]), np.zeros(grid.shape[2]), np.arange(grid.shape[2]), np.ones(grid.shape[2])])
    )[2]
    inner = slice(8, -8)  # the spline's edge extension bends the ramp within a few voxels of the borders
    assert np.abs(resampled.data[5, 5, inner] - z_new[inner]).max() < 1e-4  # mm
    # The pair: factor 7 (6 mm / 0.857 mm), HR a multiple of 7 voxels, LR slice j = the mean HR z of voxels 7j … 7j + 6.
    pair = thick_slice_pair("ramp", volume, prettier_degradation(), axis=2, seed=0)
    assert pair.factor == 7 and pair.hr.shape[2] == 7 * pair.lr.shape[2] == 7 * (grid.shape[2] // 7)
    hr_z = pair.hr[5, 5] * pair.scale
    lr_z = pair.lr[5, 5] * pair.scale
    centres = hr_z[: 7 * len(lr_z)].reshape(-1, 7).mean(1)
    assert np.abs(lr_z[1:-1] - centres[1:-1]).max() < 1e-2


def test_non_integer_factor_patches_train_end_to_end(tmp_path: Path) -> None:
    paths = []
    for i in range(2):  # 6 mm / 0.95 mm = 6.32 → factor 7: HR resampled to 6 / 7 = 0.857 mm along axis 2
        path = tmp_path / f"v{i}.nii.gz"
        save_volume(phantom(seed=i), path, affine=np.diag([1.0, 1.0, 0.95, 1.0]))
        paths.append(str(path))
    dm = PrettierPairsDataModule([paths[0]], [paths[1]], [], prettier_degradation(), hr_patch=28, axes=[2])
    dm.setup("fit")
    assert dm.train_set.factor == 7
    item = dm.train_set[0]
    assert item["hr"].shape == (3, 28, 28) and item["lr"].shape == (3, 4, 28)


# ---------------------------------------------------------------- reconstruction
def test_resize_matrix_equals_antialiased_bilinear_for_training_patches() -> None:
    x = torch.rand(2, 3, 64, 384, dtype=torch.float64)
    rows = linear_resize_matrix(64, same_fov_positions(64, 64 / 96), 64 / 96)
    cols = linear_resize_matrix(384, same_fov_positions(384, 4.0), 4.0)
    manual = torch.einsum("mi,bcij,nj->bcmn", torch.from_numpy(rows), x, torch.from_numpy(cols))
    assert torch.allclose(manual.float(), resize_patch(x.float(), (96, 96)), atol=1e-5)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("merge", ["weighted", "center"])
def test_constant_volume_reconstructs_constant_in_every_slice(in_channels: int, merge: str) -> None:
    volume = torch.full((7, 6, 5), 0.6)
    grid = OutputGrid(axis=2, step=1 / 6, length=30, spacing_mm=1.0)
    out = reconstruct_volume(NearestX4(), volume, 2, grid, in_channels=in_channels, batch_size=4, merge=merge)[0]
    assert out.shape == (7, 6, 30)
    assert torch.allclose(out, torch.full_like(out, 0.6), atol=1e-6)  # no darkening of the first/last slices


class ChannelBias(nn.Module):
    """×4 'net' predicting each channel's plane mean plus a channel-specific bias (+d, 0, −d)."""

    def __init__(self, d: float) -> None:
        super().__init__()
        self.d = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.tensor([self.d, 0.0, -self.d]).view(1, 3, 1, 1)
        return (x.mean((-2, -1), keepdim=True) + bias).expand(*x.shape[:2], 4 * x.shape[2], 4 * x.shape[3])


def test_channel_merge_divides_by_the_weights_present() -> None:
    # Slice i gets R (+d) from item i, G (0) from item i − 1 and B (−d) from item i − 2, weighted 0.25 / 0.5 / 0.25:
    # interior slices are unbiased, slice 0 has only R (+d), slice 1 R and G: (0.25·d) / 0.75 = d / 3.
    c, d, n = 0.5, 0.3, 7
    volume = torch.full((n, n, 4), c)
    grid = OutputGrid(axis=2, step=0.25, length=16, spacing_mm=1.0)
    out = reconstruct_volume(ChannelBias(d), volume, 2, grid, in_channels=3)[0]
    edge = torch.zeros(n)
    edge[0], edge[1], edge[-2], edge[-1] = d, d / 3, -d / 3, -d
    expected = c + (edge[:, None] + edge[None, :]) / 2  # mean of the two slicing directions
    assert torch.allclose(out, expected[..., None].expand(n, n, 16), atol=1e-6)
    centre = reconstruct_volume(ChannelBias(d), volume, 2, grid, in_channels=3, merge="center")[0]
    edge_c = torch.zeros(n)
    edge_c[0], edge_c[-1] = d, -d  # only the first and last slices have no G prediction
    assert torch.allclose(centre, (c + (edge_c[:, None] + edge_c[None, :]) / 2)[..., None].expand(n, n, 16), atol=1e-6)


def test_super_resolve_matches_the_output_grid_for_non_integer_factors() -> None:
    data = phantom((20, 18, 9))
    volume = Volume(data=data, affine=np.diag([0.9, 0.9, 5.0, 1.0]))
    geometry = detect_slice_axis(volume, axis=2)
    grid = output_grid(geometry, 9)  # 45 mm / 0.9 mm = 50 samples (×5.556)
    model = tiny_edsr_system(inference_batch_size=4)
    sr = model.inferer()(volume, geometry, grid, torch.Generator()).sr
    reference = interpolate_volume(volume, grid)
    assert sr.shape == reference.shape == (20, 18, 50)
    np.testing.assert_allclose(sr.affine, reference.affine, atol=1e-9)
    scale = 1.25 * foreground_percentile(data)
    assert np.isfinite(sr.data).all() and sr.data.min() >= 0 and sr.data.max() <= scale * (1 + 1e-6)


# ---------------------------------------------------------------- systems
def test_edsr_training_step_is_finite_and_trains_only_the_net() -> None:
    model = tiny_edsr_system()
    assert model.scheduler_interval == "epoch"  # warm restarts with T0 in epochs (docs/models.md §2.6)
    loss = model.training_step(patch_batch(), 0)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert all(p.grad is not None for p in model.net.parameters())
    assert all(p.grad is None for p in model.content_loss.parameters())  # frozen backbone


def test_checkpoint_state_excludes_the_perceptual_backbone_and_round_trips() -> None:
    model = tiny_gan_system(ema_decay=0.9)
    keys = list(model.state_dict())
    assert not any("backbone" in k or "perceptual" in k or "content" in k for k in keys)
    assert any(k.startswith("net.") for k in keys) and any(k.startswith("discriminator.") for k in keys)
    assert any(k.startswith("net_ema.") for k in keys)
    clone = tiny_gan_system(ema_decay=0.9)
    clone.load_state_dict(model.state_dict())  # strict
    if torch.cuda.is_available():
        assert model.cuda().content_loss.perceptual.backbone.features[0].weight.is_cuda


def test_generator_and_discriminator_alternate_with_d_frozen_in_the_g_step() -> None:
    model = tiny_gan_system(ema_decay=0.5)
    opt_g = torch.optim.Adam(model.net.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=1e-2)
    batch = patch_batch()
    g0 = [p.detach().clone() for p in model.net.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    ema0 = [p.detach().clone() for p in model.net_ema.parameters()]
    sr, terms = model.generator_step(batch, opt_g)
    assert all(torch.isfinite(v) for v in terms.values()) and terms["g_gan"] > 0
    assert all(p.grad is None for p in model.discriminator.parameters())  # D frozen: no gradient reached it
    assert all(torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.net.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(ema0, model.net_ema.parameters(), strict=True))
    assert all(p.requires_grad for p in model.discriminator.parameters())  # unfrozen again for its own step
    g1 = [p.detach().clone() for p in model.net.parameters()]
    d_terms = model.discriminator_step(batch["hr"], sr, opt_d)
    assert torch.isfinite(d_terms["d_loss"])
    assert all(torch.equal(a, b) for a, b in zip(g1, model.net.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters(), strict=True))


def test_adversarial_system_fits_with_lightning_and_steps_schedulers_per_epoch(tmp_path: Path) -> None:
    import lightning as L
    from torch.utils.data import DataLoader

    from mrisr.systems.base import SRSystem

    sched = lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=4)  # noqa: E731
    model = tiny_gan_system(scheduler=sched, d_scheduler=sched)
    assert isinstance(model, SRSystem)
    items = [{k: v[0] for k, v in patch_batch(1, seed=s).items()} for s in range(4)]
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=1,
    )  # fmt: skip
    trainer.fit(model, DataLoader(items, batch_size=2), DataLoader(items, batch_size=2))
    assert trainer.global_step == 8  # G and D optimiser steps of 2 batches in 2 epochs
    lrs = [s.get_last_lr()[0] for s in model.lr_schedulers()]
    assert lrs[0] == pytest.approx(1e-4 * (1 + np.cos(np.pi * 2 / 4)) / 2)
    assert np.isfinite(float(trainer.callback_metrics["val/content_loss"]))


def test_pretrained_weights_load_and_are_recorded(tmp_path: Path) -> None:
    source = EDSR(in_channels=3, out_channels=3, n_feats=8, n_resblocks=1, upscale=4)
    path = tmp_path / "edsr.pt"
    torch.save({"model_weights": source.state_dict()}, path)
    model = tiny_edsr_system(pretrained=str(path))
    model.setup("fit")
    assert torch.equal(model.net.head[0].weight, source.head[0].weight)
    assert model.hparams["pretrained_record"]["checkpoint_key"] == "model_weights"
    assert model.hparams["features_description"] == "mri-features-random-init"
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["mrisr_prettier"]["pretrained"]["path"] == str(path)


@pytest.mark.parametrize("kind", ["layout", "channels", "truncated"])
def test_bad_pretrained_file_gives_one_line_error_naming_it(kind: str, tmp_path: Path) -> None:
    path = bad_pretrained_files(tmp_path)[kind]
    model = tiny_edsr_system(pretrained=str(path))
    with pytest.raises(MrisrInputError) as info:
        model.setup("fit")
    message = str(info.value)
    assert str(path) in message and "\n" not in message


# ---------------------------------------------------------------- configs
def _compose(overrides: list[str]):
    return compose("train", overrides)


@pytest.mark.parametrize(
    "name", ["prettier_edsr", "prettier_realesrgan", "prettier_edsr_smoke", "prettier_realesrgan_smoke"]
)
def test_prettier_experiments_compose_with_paper_defaults(name: str) -> None:
    cfg = _compose([f"experiment={name}"])
    assert cfg.callbacks.model_checkpoint.monitor == "val/content_loss"
    assert cfg.eval.patch_metrics._target_ == "mrisr.callbacks.PatchMetricsCallback" and "image_metrics" in cfg.eval
    assert cfg.data._target_ == "mrisr.data.prettier.PrettierPairsDataModule"
    assert cfg.degradation.steps[0].thickness_mm == 5.0 and cfg.degradation.steps[0].separation_mm == 6.0
    if not name.endswith("smoke"):
        assert cfg.trainer.max_epochs == 100 and cfg.data.batch_size == 6
    model = cfg.model
    if "realesrgan" in name:
        assert (model.optimizer.lr, model.scheduler.T_0, model.scheduler.T_mult) == (1e-4, 6, 1)
        assert (model.d_optimizer.lr, model.d_scheduler.T_0, model.d_scheduler.T_mult) == (5e-6, 8, 2)
        assert model.gan_loss.weight == 0.05
    elif name == "prettier_edsr_smoke":  # the CPU recipe (edsr_cpu) at a smaller size, inside its skip
        cpu = _compose(["experiment=prettier_edsr_cpu"]).model
        assert model.optimizer == cpu.optimizer and model.scheduler == cpu.scheduler
        assert model.net._target_ == cpu.net._target_ == "mrisr.nets.skip.InterpolationSkip"
    else:
        assert (model.optimizer.lr, model.scheduler.T_0, model.scheduler.T_mult) == (2e-4, 8, 2)


def test_paper_edsr_config_is_edsr_l_x4() -> None:
    net = instantiate(_compose(["model=edsr"]).model.net)
    assert sum(p.numel() for p in net.parameters()) == 43_089_947 - 24  # EDSR-L ×4 without the MeanShift convs
    assert net.upscale == 4 and net.in_channels == 3


def test_optuna_search_config_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = _compose(["hparams_search=prettier_optuna", "experiment=prettier_edsr_smoke"])
    assert cfg.optimized_metric == "val/content_loss"


# ---------------------------------------------------------------- end to end (CLI)
