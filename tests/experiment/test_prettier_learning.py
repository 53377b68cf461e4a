"""PRETTIER at CPU scale: identity-start nets (nets/skip.py), random-acquisition pretraining pairs, learning curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from scipy import ndimage

from conftest import REPO_ROOT, phantom
from mrisr.core.errors import MrisrInputError
from mrisr.data.prettier import (
    PrettierPairsDataModule,
    RandomAcquisitionPatchDataset,
    ThickSlicePair,
    ThickSlicePatchDataset,
    thick_slice_pair,
)
from mrisr.degradations import DegradationStack, Downsample, RandomSliceProfile, SliceProfile
from mrisr.experiment.held_out import HeldOutCase, held_out_case, score_held_out
from mrisr.experiment.helpers import train_model
from mrisr.experiment.learning_curve import LearningCurve
from mrisr.io.nifti import Volume, save_volume
from mrisr.losses import ContentLoss, MRIFeatures, PerceptualLoss
from mrisr.nets.edsr import EDSR
from mrisr.nets.pretrained import load_pretrained
from mrisr.nets.rrdbnet import RRDBNet
from mrisr.nets.skip import InterpolationSkip
from mrisr.systems.prettier import PrettierSR, resize_patch
from mrisr.utils.config import compose


# ---------------------------------------------------------------- helpers
def edsr(seed: int = 0, **kw: object) -> EDSR:
    torch.manual_seed(seed)
    return EDSR(3, 3, n_feats=8, n_resblocks=2, upscale=4, **kw)


def prettier_degradation(thickness: float = 5.0, separation: float = 6.0, profile: str = "slr") -> DegradationStack:
    return DegradationStack(
        steps=[SliceProfile(thickness_mm=thickness, separation_mm=separation, profile=profile), Downsample()],
        setting="test",
    )


# ---------------------------------------------------------------- identity start
def _reference_interpolation(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "bspline":  # scipy's cubic B-spline with border clamping at the same-FOV output positions
        n, m = x.shape[-2:]
        rows, cols = np.meshgrid((np.arange(4 * n) + 0.5) / 4 - 0.5, (np.arange(4 * m) + 0.5) / 4 - 0.5, indexing="ij")
        planes = [ndimage.map_coordinates(p.double().numpy(), [rows, cols], order=3, mode="nearest")
                  for p in x.reshape(-1, n, m)]  # fmt: skip
        return torch.from_numpy(np.stack(planes)).reshape(*x.shape[:-2], 4 * n, 4 * m).float()
    return F.interpolate(x, scale_factor=4, mode=mode, align_corners=None if mode == "nearest" else False)


@pytest.mark.parametrize("mode", ["bspline", "bicubic", "bilinear", "nearest"])
def test_skip_net_is_exactly_the_interpolation_at_initialisation(mode: str) -> None:
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(1)) * 255
    plain = edsr()
    expected = _reference_interpolation(x, mode)
    assert (plain(x) - expected).abs().max() > 1.0  # a random-init net is far from the interpolation
    net = InterpolationSkip(edsr(), scale=4, mode=mode)
    out = net(x)
    assert torch.equal(out, net.interpolate(x)) and torch.allclose(out, expected, atol=1e-3)
    # Same-FOV: a quadratic along the rows is reproduced at the output-pixel centres (m + 0.5)/4 − 0.5 by the cubic
    # B-spline (away from the clamped borders); PyTorch's bicubic (a = −0.75) is off even for a linear ramp.
    ramp = torch.arange(17.0).view(1, 1, 17, 1).expand(1, 3, 17, 7)
    rows = InterpolationSkip(edsr(), mode=mode)(ramp**2)[0, 0, 24:-24, 3].double()
    centres = ((torch.arange(24, 44) + 0.5) / 4 - 0.5).double()
    error = float((rows.detach() - centres**2).abs().max())
    assert error < 1e-2 if mode == "bspline" else error > 2e-2
    # last_init_scale = 1 keeps the net's own initialisation: output = interpolation + the plain net.
    kept = InterpolationSkip(edsr(), scale=4, mode=mode, last_init_scale=1.0)
    assert torch.allclose(kept(x), expected + plain(x), atol=1e-3)


def test_skip_net_gradients_reach_every_parameter_and_training_reduces_the_loss() -> None:
    net = InterpolationSkip(edsr())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 6, 6, generator=g)
    target = 1.0 - net.interpolate(x)  # a local map the residual branch can learn: 1 − 2·interpolation
    loss = F.l1_loss(net(x), target)
    loss.backward()
    last = net.net.get_submodule(net.inner_last_conv)
    assert last.weight.grad.abs().sum() > 0 and last.bias.grad.abs().sum() > 0  # zero weights still get gradients
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = F.l1_loss(net(x), target)
        loss.backward()
        losses.append(float(loss.detach()))
        opt.step()
    # After the first update every parameter receives a gradient.
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert losses[-1] < 0.7 * losses[0]


def test_skip_wrapper_refuses_what_cannot_be_a_residual() -> None:
    with pytest.raises(ValueError, match="channels"):
        InterpolationSkip(EDSR(3, 1, n_feats=8, n_resblocks=1, upscale=4))
    with pytest.raises(ValueError, match="mode"):
        InterpolationSkip(edsr(), mode="area")
    with pytest.raises(ValueError, match="last_conv"):
        InterpolationSkip(torch.nn.Conv2d(3, 3, 3))
    rrdb = InterpolationSkip(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4), mode="bilinear")
    x = torch.rand(1, 3, 4, 6)
    assert torch.equal(rrdb(x), F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False))


def test_prettier_system_with_skip_predicts_the_resized_interpolation_and_trains() -> None:
    loss = ContentLoss(
        PerceptualLoss({"conv1_2": 0.1}, backbone=MRIFeatures(in_channels=1, widths=(4,)), use_input_norm=False)
    )
    system = PrettierSR(InterpolationSkip(edsr()), loss=loss, net_range=255.0)
    g = torch.Generator().manual_seed(0)
    batch = {"lr": torch.rand(2, 3, 4, 24, generator=g), "hr": torch.rand(2, 3, 24, 24, generator=g)}
    pred = system._predict_patch(system.net, batch["lr"], (24, 24))
    expected = resize_patch(system.net.interpolate(batch["lr"]), (24, 24))
    assert torch.allclose(pred, expected, atol=1e-5)
    system.training_step(batch, 0).backward()
    assert all(p.grad is not None for n, p in system.net.named_parameters() if n.endswith("tail.1.weight"))


def test_natural_image_weights_load_into_the_wrapped_net_and_the_skip_start_is_kept(tmp_path: Path) -> None:
    source = edsr(seed=3)
    torch.save({"model_weights": source.state_dict()}, tmp_path / "edsr.pt")
    net = InterpolationSkip(edsr(seed=4))
    record = load_pretrained(net, tmp_path / "edsr.pt")
    assert record["checkpoint_key"] == "model_weights" and record["skip_last_init_scale"] == 0.0
    assert torch.equal(net.net.head[0].weight, source.head[0].weight)
    assert torch.equal(net.net.body[1].body[2].weight, source.body[1].body[2].weight)
    assert not net.net.tail[-1].weight.any()
    x = torch.rand(1, 3, 4, 5)
    assert torch.equal(net(x), net.interpolate(x))
    # A state dict of the wrapper itself (e.g. after pretraining) loads unchanged, last conv included.
    with torch.no_grad():
        net.net.tail[-1].weight.normal_()
    torch.save(net.state_dict(), tmp_path / "skip.pt")
    again = InterpolationSkip(edsr(seed=5))
    load_pretrained(again, tmp_path / "skip.pt")
    assert torch.equal(again(x), net(x)) and not torch.equal(again(x), again.interpolate(x))


def test_lightning_checkpoint_of_a_prettier_system_loads_its_generator(tmp_path: Path) -> None:
    system = PrettierSR(InterpolationSkip(edsr()), loss=torch.nn.L1Loss())
    with torch.no_grad():
        system.net.net.tail[-1].weight.normal_()
    checkpoint = {"state_dict": system.state_dict(), "pytorch-lightning_version": "2.6.0", "epoch": 3}
    torch.save(checkpoint, tmp_path / "last.ckpt")
    net = InterpolationSkip(edsr(seed=9))
    record = load_pretrained(net, tmp_path / "last.ckpt")
    assert record["checkpoint_key"] == "state_dict" and record["prefix_stripped"] == "net."
    x = torch.rand(1, 3, 4, 5)
    assert torch.equal(net(x), system.net(x))
    torch.save(
        {"state_dict": {"discriminator.w": torch.zeros(1)}, "pytorch-lightning_version": "2"}, tmp_path / "d.ckpt"
    )
    with pytest.raises(MrisrInputError, match="no generator"):
        load_pretrained(net, tmp_path / "d.ckpt")


def test_cpu_recipe_composes_to_a_skip_edsr() -> None:
    cfg = compose("train", ["experiment=prettier_edsr_cpu"])
    model = instantiate(cfg.model)
    assert isinstance(model.net, InterpolationSkip) and isinstance(model.net.net, EDSR)
    x = torch.rand(1, 3, 4, 6)
    assert torch.equal(model.net(x), model.net.interpolate(x))


def test_realesrgan_cpu_recipe_is_the_measured_x4plus_probe_in_a_skip() -> None:
    """experiment=prettier_realesrgan_cpu fine-tunes the imported x4plus generator with the settings of the probe whose
    learning curve chose it (x4plus_skip_ft), and starts at the interpolation."""
    from mrisr.nets.rrdbnet import RRDBNet

    cfg = compose("train", ["experiment=prettier_realesrgan_cpu"])
    probe = _probe_script().PROBES["x4plus_skip_ft"]
    assert cfg.model.pretrained == "realesrgan_x4plus" and cfg.model.scheduler is None
    assert (cfg.model.optimizer.lr, cfg.data.hr_patch, cfg.data.batch_size) == (
        probe.lr,
        probe.hr_patch,
        probe.batch_size,
    )
    assert cfg.callbacks.model_checkpoint.monitor == "val/content_loss" and cfg.trainer.max_steps <= probe.total_steps
    model = instantiate(cfg.model)
    assert cfg.model.net.mode == probe.skip_mode and model.net_range == probe.net_range
    assert isinstance(model.net, InterpolationSkip) and isinstance(model.net.net, RRDBNet)
    x = torch.rand(1, 3, 4, 6)
    assert torch.equal(model.net(x), model.net.interpolate(x))


# ---------------------------------------------------------------- random-acquisition pairs
def _pairs(path: str, degradation: DegradationStack) -> list[ThickSlicePair]:
    from mrisr.io.nifti import load_volume

    volume = load_volume(path)
    return [thick_slice_pair("p", volume, degradation.with_axis(a), a, seed=0) for a in (0, 1, 2)]


def test_random_acquisition_patches_with_a_fixed_acquisition_equal_the_precomputed_ones(hr_files: list[str]) -> None:
    pairs = _pairs(hr_files[0], prettier_degradation())
    base = ThickSlicePatchDataset(pairs, 24, 3, 40, seed=2)
    simulated = RandomAcquisitionPatchDataset(pairs, 24, 3, 40, seed=2, degradation=prettier_degradation())
    for k in range(40):
        a, b = base[k], simulated[k]
        assert torch.equal(a["hr"], b["hr"])
        assert torch.allclose(a["lr"], b["lr"], atol=1e-5 * float(a["hr"].abs().max()))
        assert float(b["thickness_mm"]) == 5.0 and float(b["separation_mm"]) == 6.0


@pytest.mark.parametrize("profile", ["slr", "gaussian", "rect"])
def test_random_acquisition_lr_is_the_forward_model_of_the_hr_with_the_drawn_parameters(
    hr_files: list[str], profile: str
) -> None:
    pairs = _pairs(hr_files[1], prettier_degradation())
    random = DegradationStack(
        steps=[RandomSliceProfile(thickness_range_mm=(3.5, 6.5), profiles=[profile]), Downsample(separation_mm=6.0)]
    )
    data = RandomAcquisitionPatchDataset(pairs, 24, 3, 24, seed=0, degradation=random, flips=False)
    thicknesses = set()
    for k in range(24):
        item = data[k]
        thickness = float(item["thickness_mm"])
        thicknesses.add(thickness)
        assert 3.5 <= thickness <= 6.5 and float(item["separation_mm"]) == 6.0
        # The whole-volume simulation of the same (scaled) HR with the drawn thickness, cut at the same place.
        fixed = prettier_degradation(thickness, 6.0, profile)
        whole = [
            ThickSlicePair(p.name, p.hr, fixed.with_axis(p.axis)(Volume(p.hr, np.eye(4))).data, p.axis, p.factor,
                           p.scale, p.centres, p.spacing_mm)
            for p in pairs
        ]  # fmt: skip
        reference = ThickSlicePatchDataset(whole, 24, 3, 24, seed=0, flips=False)[k]
        assert torch.equal(reference["hr"], item["hr"])
        assert torch.allclose(reference["lr"], item["lr"], atol=1e-5)
        # The LR differs from the one of the target acquisition unless the draw is the target's.
        if thickness != 5.0 or profile != "slr":
            target = ThickSlicePatchDataset(pairs, 24, 3, 24, seed=0, flips=False)[k]
            assert not torch.allclose(target["lr"], item["lr"], atol=1e-4)
    assert len(thicknesses) > 5


def test_random_acquisition_with_another_separation_is_refused(hr_files: list[str]) -> None:
    pairs = _pairs(hr_files[0], prettier_degradation())
    drifting = DegradationStack(steps=[RandomSliceProfile(thickness_range_mm=(4.0, 5.0)), Downsample()])
    data = RandomAcquisitionPatchDataset(pairs, 24, 3, 4, seed=0, degradation=drifting)
    with pytest.raises(ValueError, match="separation must be the target's"):
        [data[k] for k in range(4)]


def test_data_module_excludes_the_held_out_source_and_resamples_to_1mm(hr_files: list[str], tmp_path: Path) -> None:
    fine = tmp_path / "fine" / "hr.nii.gz"
    save_volume(phantom((56, 50, 62), seed=7), fine, affine=np.diag([0.88, 0.88, 0.88, 1.0]))
    held_out = str(Path(hr_files[0]).parent / ".." / "sub0" / "hr.nii.gz")  # another spelling of the same file
    dm = PrettierPairsDataModule(
        [hr_files[0], hr_files[1], str(fine)], [hr_files[0], hr_files[2]], [hr_files[0]], prettier_degradation(),
        hr_patch=24,
        train_degradation=instantiate(compose("train", ["degradation=prettier_random"]).degradation),
        exclude=[held_out], isotropic_mm=1.0,
    )  # fmt: skip
    dm.setup("fit")
    names = {p.name.split("[")[0] for p in dm.train_set.pairs}
    assert names == {"sub1/hr", "fine/hr"} and dm.excluded == [hr_files[0], hr_files[0]]
    assert list(dm._split_volumes()["val"]) == ["sub2/hr"]
    fine_pair = next(p for p in dm.train_set.pairs if p.name.startswith("fine"))
    assert fine_pair.spacing_mm == pytest.approx(1.0) and fine_pair.factor == 6  # 0.88 mm → 1 mm before simulating
    assert isinstance(dm.train_set, RandomAcquisitionPatchDataset)
    assert len({float(dm.train_set[k]["thickness_mm"]) for k in range(12)}) > 3
    with pytest.raises(MrisrInputError, match="excluding"):
        PrettierPairsDataModule([hr_files[0]], [hr_files[1]], [], prettier_degradation(), exclude=[hr_files[0]])


# ---------------------------------------------------------------- learning curves
def test_learning_curve_scores_the_held_out_volume_at_the_requested_steps(hr_files: list[str], tmp_path: Path) -> None:
    hr = Volume(phantom((40, 44, 50), seed=5), np.eye(4))
    case = held_out_case("ph", hr, prettier_degradation().with_axis(2), "nonzero")
    assert case.hr.shape == (40, 44, 48) and case.lr.shape == (40, 44, 8)
    cfg = compose(
        "train",
        ["experiment=prettier_edsr_smoke", f"data.train=[{hr_files[1]}]", f"data.val=[{hr_files[2]}]", "data.test=[]",
         "data.hr_patch=24", "~eval.patch_metrics"],
    )  # fmt: skip
    rows: list[dict] = []
    curve = LearningCurve([case], [0, 2, 4], on_row=rows.append)
    trained = train_model(cfg, tmp_path, max_steps=4, seed=0, callbacks=[curve])
    system, steps = trained.model, trained.steps
    assert steps == 4 and [r["step"] for r in rows] == [0, 2, 4] and rows == curve.rows
    assert rows[0]["train_s"] == 0.0 <= rows[1]["train_s"] <= rows[2]["train_s"]
    assert np.isnan(rows[0]["loss"]) and np.isfinite(rows[2]["loss"])
    final = score_held_out(system, case)
    assert final == pytest.approx({k: rows[2][k] for k in ("psnr_mask", "ssim_mask")}, abs=1e-9)
    assert rows[0]["psnr_mask"] != rows[2]["psnr_mask"]


def _did_not_learn(system: PrettierSR, case: HeldOutCase) -> list[str]:
    """What a net that learned nothing shows on ``case``: no foreground variance, a constant's score, far below
    cubic (on the block used below: cubic 25.2 dB, the mean inside the mask 16.5 dB)."""
    from mrisr.api import super_resolve
    from mrisr.eval.prettier import masked_scores
    from mrisr.io.regrid import on_grid

    image = super_resolve(case.lr.to_nifti(), model=system, axis=case.axis)  # once: scored and checked below
    sr = on_grid(Volume(np.asarray(image.dataobj, dtype=np.float32), image.affine), case.hr, order=3)
    scores, cubic = masked_scores(sr, case.hr.data, case.mask), score_held_out("cubic", case)
    constant = masked_scores(np.full(case.hr.shape, case.hr.data[case.mask].mean()), case.hr.data, case.mask)
    failures = []
    if sr[case.mask].std() < 0.5 * case.hr.data[case.mask].std():
        failures.append("no foreground variance")
    if scores["psnr_mask"] < constant["psnr_mask"] + 3.0:
        failures.append(f"PSNR {scores['psnr_mask']:.2f} dB near the constant image's {constant['psnr_mask']:.2f}")
    if scores["psnr_mask"] < cubic["psnr_mask"] - 1.0:
        failures.append(f"PSNR {scores['psnr_mask']:.2f} dB more than 1 dB below cubic's {cubic['psnr_mask']:.2f}")
    return failures


def test_a_short_fit_of_the_smoke_edsr_has_learned_and_a_zero_net_fails_the_same_checks(tmp_path: Path) -> None:
    from mrisr.data.sources import load_source

    # A block of the MNI152 test slab (voxels 172–232 along axis 1), which the smoke training slabs never contain.
    mni = load_source("mni152")
    hr = Volume(mni.data[60:130, 172:220, 60:108].copy(), mni.affine)
    case = held_out_case("mni152 test block", hr, prettier_degradation().with_axis(2), "head")
    cfg = compose(
        "train", ["experiment=prettier_edsr_smoke", "data.test=[]", "data.hr_patch=24", "~eval.patch_metrics"]
    )
    system = train_model(cfg, tmp_path, max_steps=10, seed=0).model.eval()
    assert _did_not_learn(system, case) == []

    class Zeros(torch.nn.Module):  # the generator of the old smoke RealESRGAN: zeros whatever the input
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(*x.shape[:-2], 4 * x.shape[-2], 4 * x.shape[-1])

    system.net = Zeros()
    assert len(_did_not_learn(system, case)) == 3


# ---------------------------------------------------------------- the probe script's configurations
def _probe_script():
    import importlib.util
    import sys

    path = REPO_ROOT / "experiments" / "benchmarks" / "prettier_probe.py"
    spec = importlib.util.spec_from_file_location("prettier_probe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_probe_composes_and_its_data_exclude_the_held_out_volume(tmp_path: Path) -> None:
    probe = _probe_script()
    for name, spec in probe.PROBES.items():
        for stage in spec.stages:
            cfg = probe.build_config(spec, stage, tmp_path, "flair", 0)
            flair = str(tmp_path / "brain" / "flair_1mm_skullstripped.nii.gz")
            assert list(cfg.data.exclude) == [flair]
            assert (flair in cfg.data.train) == (stage.sources == "all")
            model = instantiate(cfg.model)
            assert isinstance(model.net, InterpolationSkip) == spec.skip, name
            assert (cfg.data.get("train_degradation") is not None) == (stage.train_degradation is not None)
        assert spec.eval_steps[0] == 0 and spec.eval_steps[-1] == spec.total_steps
