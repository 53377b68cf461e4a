"""Sampler benchmark (experiments/benchmarks/diffusion_sampling.py): rows, metrics and the DDIM reference gap."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest
import torch

from mrisr.api import simulate
from mrisr.inference import interpolate_volume, output_grid
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import as_volume
from mrisr.nets.diffusion_unet import TINY_UNET, ConditionalUNet
from mrisr.systems.diffusion import DiffusionSR

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / "diffusion_sampling.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diffusion_sampling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def phantom() -> nib.Nifti1Image:
    """Smooth 1 mm PSR-like phantom (axis 1 = I–S, axis 2 = L–R), 24 × 40 × 6 voxels."""
    grid = np.mgrid[0:24, 0:40, 0:6].astype(np.float32)
    data = 100 + 50 * np.sin(grid[0] / 3) * np.cos(grid[1] / 5) + 5 * grid[2]
    affine = np.array([[0, 0, 1.0, 0], [-1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])
    return nib.Nifti1Image(data.astype(np.float32), affine)


def test_core_rows_cover_every_sampler_and_steps_on_a_tiny_random_model(bench: ModuleType) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = DiffusionSR(ConditionalUNet(**TINY_UNET), progress=False)
    residual = DiffusionSR(ConditionalUNet(**{**TINY_UNET, "in_channels": 1}), formulation="residual", progress=False)
    hr, stack_axis = bench.crop_planes(as_volume(phantom()), 1, 2)
    assert stack_axis == 2 and hr.shape == (24, 40, 2)
    # The crop keeps world positions: its first voxel is the full volume's voxel (0, 0, 2).
    np.testing.assert_allclose(hr.affine[:3, 3], (phantom().affine @ [0, 0, 2, 1])[:3])
    lr = as_volume(simulate(hr, thickness_mm=4.0, axis=1))
    rows = bench.benchmark(model, hr, lr, stack_axis, steps=(1, 2), residual_model=residual, residual_steps=(1,))
    assert [(r["method"], r["steps"]) for r in rows] == [
        ("cubic", 0),
        ("ddim", 1), ("ddim", 2), ("dpmpp", 1), ("dpmpp", 2), ("unipc", 1), ("unipc", 2), ("ddim_leading", 20),
        ("residual", 1),
    ]  # fmt: skip
    assert all(r["planes"] == 2 and math.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 for r in rows)
    assert all(r["seconds_per_plane"] > 0 for r in rows)
    # The cubic row is plain cubic interpolation scored by the same rule.
    geometry = detect_slice_axis(lr)
    cubic = interpolate_volume(lr, output_grid(geometry, lr.shape[geometry.axis]), order=3)
    assert rows[0]["psnr"] == pytest.approx(bench.plane_metrics(cubic, hr, stack_axis)["psnr"])
    # A perfect SR scores infinite PSNR and SSIM 1.
    perfect = bench.plane_metrics(hr, hr, stack_axis)
    assert perfect["psnr"] == math.inf and perfect["ssim"] == pytest.approx(1.0)
    # Seeded: a rerun reproduces the sampled row exactly; skipped keys are not rerun.
    skip = {("cubic", 0), ("ddim_leading", 20)}
    again = bench.benchmark(model, hr, lr, stack_axis, samplers=["ddim"], steps=(1,), skip=skip)
    assert [(r["method"], r["steps"]) for r in again] == [("ddim", 1)]
    assert again[0]["psnr"] == rows[1]["psnr"]


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
    model = DiffusionSR(ConditionalUNet(**TINY_UNET), progress=False)
    model.ema.module = PosteriorMeanOracle(model.train_scheduler.alphas_cumprod)
    hr, stack_axis = bench.crop_planes(as_volume(phantom()), 1, 2)
    lr = as_volume(simulate(hr, thickness_mm=4.0, axis=1))
    rows = bench.benchmark(model, hr, lr, stack_axis, steps=(1, 2, 4))
    cubic = rows[0]["psnr"]
    assert rows[0]["method"] == "cubic" and len(rows) == 1 + 3 * 3 + 1
    # The sampled images are the condition up to ~τ (cubic scores 40 dB on this smooth phantom, so the τ-scatter of
    # the leading DDIM-20, which ends with a step at t = 0, costs ~1 dB); a row holding the starting noise would score
    # ~5 dB.
    for row in rows[1:]:
        assert abs(row["psnr"] - cubic) < 2.0, row


def test_reference_gap_is_zero_for_ddim20_and_empty_without_it(bench: ModuleType) -> None:
    base = {"subject": "s", "setting": "x", "model": "m", "planes": 2, "ssim": 0.5, "seconds_per_plane": 1.0}
    rows = [
        {**base, "method": "ddim_leading", "steps": 20, "psnr": 30.0},
        {**base, "method": "unipc", "steps": 4, "psnr": 29.25},
        {**base, "model": "other", "method": "cubic", "steps": 0, "psnr": 28.0},
    ]
    gaps = [r["dpsnr_ddim20"] for r in bench.with_reference_gap(rows)]
    assert gaps == [0.0, -0.75, ""]


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
