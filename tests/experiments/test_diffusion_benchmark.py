"""Sampler benchmark (experiments/benchmarks/diffusion_sampling.py): rows, cord box, metrics, floors, SD check."""

from __future__ import annotations

import importlib.util
import math
import sys
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT
from mrisr.io.nifti import Volume, as_volume
from mrisr.nets.diffusion_unet import TINY_UNET, ConditionalUNet
from mrisr.systems.diffusion import DiffusionSR

SCRIPT = REPO_ROOT / "experiments" / "benchmarks" / "diffusion_sampling.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diffusion_sampling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["diffusion_sampling"] = module  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def phantom() -> tuple[Volume, np.ndarray]:
    """1 mm PSR-like phantom (axis 0 A–P, 1 I–S, 2 L–R), 40 × 48 × 14 voxels: smooth tissue with a dark "cord" tube
    along I–S inside a bright "CSF" tube, and the tube's mask."""
    a, s, r = np.mgrid[0:40, 0:48, 0:14].astype(np.float32)
    radius = np.hypot(a - 20, (r - 7) * 1.2)
    data = 100 + 20 * np.sin(a / 4) * np.cos(s / 6) + 120 * (radius < 6) - 200 * (radius < 3)
    affine = np.array([[0, 0, 1.0, 0], [-1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])
    return as_volume(nib.Nifti1Image(np.clip(data, 1, None).astype(np.float32), affine)), radius < 3


class DarkSegmenter:
    """Stand-in cord segmenter: voxels darker than half the volume's median."""

    def segment(self, volume: Volume) -> Volume:
        return Volume(data=(volume.data < 0.5 * np.median(volume.data)).astype(np.float32), affine=volume.affine)


def tiny_models() -> tuple[DiffusionSR, DiffusionSR]:
    torch.manual_seed(0)
    ddpm = DiffusionSR(ConditionalUNet(**TINY_UNET), progress=False, method="tiny_ddpm")
    residual = DiffusionSR(
        ConditionalUNet(**{**TINY_UNET, "in_channels": 1}), formulation="residual", progress=False, method="tiny_res"
    )
    return ddpm, residual


def test_cord_box_widens_the_mask_bounding_box_and_crops_keep_world_positions(bench: ModuleType) -> None:
    hr, manual = phantom()
    box = bench.cord_box(manual, (4, 2))
    index = np.argwhere(manual)
    assert box[0] == slice(int(index[:, 0].min()) - 4, int(index[:, 0].max()) + 5)
    assert box[1] == slice(int(index[:, 2].min()) - 2, int(index[:, 2].max()) + 3)
    assert bench.cord_box(manual, (100, 100)) == (slice(0, 40), slice(0, 14))  # clipped to the volume
    crop = bench.crop_box(hr, box)
    first = np.array([box[0].start, 0, box[1].start, 1])
    np.testing.assert_allclose(crop.affine[:3, 3], (hr.affine @ first)[:3])
    np.testing.assert_array_equal(crop.data, hr.data[box[0], :, box[1]])
    with pytest.raises(Exception, match="empty"):
        bench.cord_box(np.zeros_like(manual))


def test_rows_cover_the_references_every_sampler_and_the_sd_check(bench: ModuleType) -> None:
    torch.set_num_threads(1)
    hr, manual = phantom()
    case = bench.build_case("phantom", hr, manual, seed=0, margin=(6, 4))
    ddpm, residual = tiny_models()
    runs = bench.sampler_runs(ddpm, residual, ["ddim", "dpmpp"], {"ddim": (1, 2), "dpmpp": (2,)}, (1,), ["dpmpp:2"])
    rows = bench.benchmark_case(case, runs, segmenter=DarkSegmenter())
    assert [(r["method"], r["steps"], r["samples"]) for r in rows] == [
        ("HR", 0, 1), ("cubic", 0, 1), ("zeros", 0, 1), ("constant", 0, 1), ("residual", 1, 1),
        ("ddim", 1, 1), ("ddim", 2, 1), ("dpmpp", 2, 1), ("ddim_leading", 20, 1), ("dpmpp", 2, bench.SD_SAMPLES),
    ]  # fmt: skip
    scored = {(r["method"], r["steps"], r["samples"]): r for r in rows if r["method"] != "HR"}
    assert all(math.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 and 0 <= r["cord_dice"] <= 1 for r in scored.values())
    # Cubic recovers the phantom far better than the floors, and its cord (dark tube) overlaps the manual mask.
    cubic = scored[("cubic", 0, 1)]
    assert cubic["psnr"] > scored[("zeros", 0, 1)]["psnr"] + 10
    assert cubic["psnr"] > scored[("constant", 0, 1)]["psnr"] + 3
    assert cubic["cord_dice"] > 0.5 and rows[0]["cord_dice"] > 0.9  # the HR row: the segmenter on HR
    # Only the 8-sample row checks its SD map; a random tiny DDPM's draws differ, so its SD is not all zero.
    sd_row = scored[("dpmpp", 2, bench.SD_SAMPLES)]
    assert math.isfinite(sd_row["sd_error_spearman"]) and "sd_error_spearman" not in scored[("dpmpp", 2, 1)]
    assert all(
        r["seconds_volume"] > r["seconds_box"] > 0 for k, r in scored.items() if k[0] not in ("zeros", "constant")
    )
    # Resumable and seeded: nothing is rerun when every key is skipped; a rerun reproduces a sampled row.
    skip = {(r["subject"], r["model"], r["method"], int(r["steps"]), int(r["samples"])) for r in rows}
    assert bench.benchmark_case(case, runs, skip, segmenter=DarkSegmenter()) == []
    again = bench.benchmark_case(case, runs[1:2], skip - {("phantom", "tiny_ddpm", "ddim", 1, 1)},
                                 segmenter=DarkSegmenter())  # fmt: skip
    assert [r["method"] for r in again] == ["ddim"] and again[0]["psnr"] == scored[("ddim", 1, 1)]["psnr"]


class PosteriorMeanOracle(torch.nn.Module):
    """ε-denoiser of the exact posterior mean for HR planes x0 ~ N(condition, τ²·I): a perfectly trained model whose
    images scatter by τ around the condition. A sampler that returns (part of) its starting noise scores far below
    cubic with it; a correct one scores like cubic."""

    def __init__(self, alphas_cumprod: torch.Tensor, tau: float = 0.02) -> None:
        super().__init__()
        self.alphas_cumprod, self.tau = alphas_cumprod, tau

    def forward(self, x_t: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod[timesteps.long().cpu()].to(x_t).view(-1, 1, 1, 1)
        return (1 - a).sqrt() / (a * self.tau**2 + 1 - a) * (x_t - a.sqrt() * condition)


def test_every_sampler_row_of_an_exact_model_scores_like_cubic(bench: ModuleType) -> None:
    torch.set_num_threads(1)
    hr, manual = phantom()
    case = bench.build_case("phantom", hr, manual, seed=1, margin=(6, 4))
    ddpm, _ = tiny_models()
    ddpm.ema.module = PosteriorMeanOracle(ddpm.train_scheduler.alphas_cumprod)
    steps = {name: (1, 2, 4) for name in bench.SAMPLERS}
    runs = bench.sampler_runs(ddpm, None, list(bench.SAMPLERS), steps, (), [])
    rows = bench.benchmark_case(case, runs, segmenter=DarkSegmenter())
    cubic = next(r["psnr"] for r in rows if r["method"] == "cubic")
    sampled = [r for r in rows if r["model"] == "tiny_ddpm"]
    assert len(sampled) == 3 * 3 + 1
    # The sampled images are the condition up to ~τ; a row holding the starting noise would score ~5 dB.
    for row in sampled:
        assert abs(row["psnr"] - cubic) < 2.0, row


def test_reference_gap_is_zero_for_ddim50_and_empty_without_it(bench: ModuleType) -> None:
    base = {"subject": "s", "model": "m", "samples": 1, "ssim": 0.5}
    rows = [
        {**base, "method": "ddim", "steps": 50, "psnr": 30.0},
        {**base, "method": "unipc", "steps": 4, "psnr": 29.25},
        {**base, "method": "ddim", "steps": 50, "samples": 8, "psnr": 31.0},
        {**base, "model": "other", "method": "cubic", "steps": 0, "psnr": 28.0},
        {**base, "method": "HR", "steps": 0, "psnr": ""},
    ]
    gaps = [r["dpsnr_ddim50"] for r in bench.with_reference_gap(rows)]
    assert gaps == [0.0, -0.75, 1.0, "", ""]


def test_sd_error_correlation_ranks_a_tracking_sd_map_high(bench: ModuleType) -> None:
    rng = np.random.default_rng(0)
    hr = rng.random((20, 20, 6))
    sr = hr + rng.normal(0, 0.1, hr.shape)
    region = np.ones(hr.shape, dtype=bool)
    region[:5] = False
    tracking = np.abs(sr - hr) + rng.normal(0, 0.01, hr.shape)
    assert bench.sd_error_correlation(tracking, sr, hr, region) > 0.9
    assert abs(bench.sd_error_correlation(rng.random(hr.shape), sr, hr, region)) < 0.1
    assert bench.sd_error_correlation(-tracking, sr, hr, region) < -0.9


PROBE = SCRIPT.with_name("diffusion_residual_probe.py")


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diffusion_residual_probe", PROBE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant", ["regression", "ddpm"])
def test_residual_probe_rows_follow_training(probe: ModuleType, variant: str) -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    hr = torch.rand((16, 1, 32, 32), generator=generator)
    val_hr = torch.rand((2, 1, 48, 48), generator=generator)
    pool = {"hr": hr, "lr": (hr + 0.1).clamp(0, 1), "val_hr": val_hr, "val_lr": (val_hr + 0.1).clamp(0, 1)}
    rows = probe.train_variant(variant, "synthetic", pool, steps=3, eval_every=2, batch=4, lr=1e-3, seed=0)
    # Scored at steps 0, 2 and the last one, for the live net, the warmed-up EMA and the plain EMA.
    assert [(r["step"], r["weights"]) for r in rows] == [
        (s, w) for s in (0, 2, 3) for w in ("live", "ema", "ema_plain")
    ]
    assert all(set(r) <= set(probe.FIELDS) and r["setting"] == "synthetic" for r in rows)
    assert all(math.isfinite(r[f"psnr_{n}"]) for r in rows for n in (1, 2, 4))
    # Before training the three sets of weights are the same network; afterwards the plain EMA lags behind.
    assert rows[0]["loss"] == rows[1]["loss"] == rows[2]["loss"]
    assert rows[-3]["loss"] != rows[-1]["loss"]
    quantities = ("x0", "eps") if variant == "ddpm" else ("x0",)
    bins = probe.BINS["ddpm" if variant == "ddpm" else "residual"]
    assert all(f"{q}_ratio_{b}" in rows[-1] for q in quantities for b in bins)
    assert ("psnr_4_leading" in rows[-1]) == (variant == "ddpm")
