"""PRETTIER patch metrics (docs/evaluation.md §1): analytic values, volume tiling, and the Lightning callback."""

from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest
import torch
from scipy import ndimage

from mrisr.callbacks import PatchMetricsCallback
from mrisr.degradations import DegradationStack, Downsample, SliceProfile
from mrisr.eval.patches import PATCH_METRICS, patch_metrics, volume_patches
from mrisr.inference import output_grid
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.intensity import PRETTIER_RULE
from mrisr.io.nifti import Volume
from mrisr.utils.config import compose

pytestmark = pytest.mark.skipif(importlib.util.find_spec("piq") is None, reason="piq not installed")


def textured(n: int = 4, channels: int = 3, size: int = 48, seed: int = 0) -> torch.Tensor:
    """Smooth random texture in [0.1, 0.9], ``(n, channels, size, size)``."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((n, channels, size, size)), (0, 0, 2, 2))
    x = (x - x.min()) / np.ptp(x)
    return torch.from_numpy((0.1 + 0.8 * x).astype(np.float32))


@pytest.mark.parametrize("channels", [1, 3])
def test_identical_patches_score_the_analytic_maximum(channels: int) -> None:
    hr = textured(channels=channels)
    values = patch_metrics(hr.clone(), hr)
    assert set(values) == set(PATCH_METRICS)
    # piq's PSNR floors the MSE at 1e-8: 80 dB, finite, as the slice-wise piq metrics.
    assert torch.allclose(values["psnr"], torch.full((4,), 80.0), atol=1e-3)
    for name in ("ssim", "vif_p", "fsim", "vsi", "haarpsi"):
        assert torch.allclose(values[name], torch.ones(4), atol=1e-4), name


def test_a_degraded_patch_scores_lower_on_every_metric() -> None:
    hr = textured()
    blurred = torch.from_numpy(ndimage.gaussian_filter(hr.numpy(), (0, 0, 1.5, 1.5)))
    noisy = (blurred + 0.05 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    clean, mild, bad = patch_metrics(hr, hr), patch_metrics(blurred, hr), patch_metrics(noisy, hr)
    for name in PATCH_METRICS:
        assert torch.all(mild[name] < clean[name]), name
        assert torch.all(bad[name] < mild[name]), name
    # PSNR is 10·log10(1 / MSE) (data range 1) below the cap.
    mse = torch.mean((blurred - hr) ** 2, dim=(1, 2, 3))
    assert torch.allclose(mild["psnr"], -10 * torch.log10(mse), atol=1e-3)


def test_values_are_clipped_to_the_unit_range() -> None:
    hr = textured()
    over = hr * 1.5  # clipped: equals the clipped HR where HR · 1.5 ≥ 1
    values = patch_metrics(over, hr)
    mse = torch.mean((over.clamp(0, 1) - hr) ** 2, dim=(1, 2, 3))
    assert torch.allclose(values["psnr"], -10 * torch.log10(mse), atol=1e-3)


def test_too_small_patches_are_refused() -> None:
    with pytest.raises(ValueError, match="41 pixels"):
        patch_metrics(textured(size=32), textured(size=32))
    assert set(patch_metrics(textured(size=32), textured(size=32), metrics=("psnr", "ssim"))) == {"psnr", "ssim"}


def test_volume_patches_layout_and_foreground_selection() -> None:
    vol = np.zeros((10, 20, 30), dtype=np.float32)
    vol[:, :, :15] = np.arange(10, dtype=np.float32)[:, None, None] + 1.0  # left half foreground, plane index coded
    groups = volume_patches(vol * 2, vol, axis=1, in_channels=3, patch_size=10, min_foreground=0.6)
    assert len(groups) == 2
    (x0, r0), (x2, r2) = groups
    assert np.array_equal(x2, 2 * r2)
    # Slicing axis 0: items (3, rows along axis 1, cols along axis 2); only the first 10-column tile is tissue.
    assert r0.shape == (8 * 2, 3, 10, 10) and np.array_equal(x0, 2 * r0)
    assert np.array_equal(r0[0, :, 0, 0], [1.0, 2.0, 3.0])
    # Slicing axis 2: planes 0…14 are tissue, items starting at 0…12 have tissue in their centre plane.
    assert r2.shape == (14 * 2 * 1, 3, 10, 10)
    assert groups[0][0].dtype == np.float32
    whole = volume_patches(vol, vol, axis=1, in_channels=1, patch_size=None, min_foreground=0.0)
    assert [g[0].shape for g in whole] == [(10, 1, 20, 30), (30, 1, 20, 10)]


class _StubTrainer:
    """What the evaluation base reads from a trainer (weak-referenceable, unlike SimpleNamespace)."""

    test_dataloaders = None
    global_rank = 0
    is_global_zero = True


class _StubSystem:
    """What the callback reads from a system at test: ``in_channels``, ``intensity`` and ``log``."""

    in_channels = 3
    device = torch.device("cpu")
    intensity = PRETTIER_RULE

    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log(self, name: str, value: torch.Tensor, **kwargs) -> None:
        self.logged[name] = float(value)


def test_test_stage_scores_volume_tiles_of_sr_and_the_cubic_baseline(tmp_path) -> None:
    rng = np.random.default_rng(0)
    hr_data = np.zeros((48, 12, 48), dtype=np.float32)
    hr_data[4:44, :, 4:44] = 100 + 300 * ndimage.gaussian_filter(rng.random((40, 12, 40)), 1.5)
    hr = Volume(data=hr_data, affine=np.eye(4), header=None, path=None)
    degradation = DegradationStack(steps=[SliceProfile(thickness_mm=4.0, separation_mm=4.0), Downsample()])
    lr = degradation.with_axis(2)(hr, seed=0)
    grid = output_grid(detect_slice_axis(lr, axis=2), lr.shape[2], target_spacing_mm=1.0)
    outputs = {"name": "s0", "setting": "T4_S4", "hr": hr, "lr": lr, "grid": grid, "sr": hr, "method": "oracle"}
    callback = PatchMetricsCallback(str(tmp_path), test_patch_size=48, min_foreground=0.5, stride=4)
    trainer, system = _StubTrainer(), _StubSystem()
    callback.on_test_epoch_start(trainer, system)
    callback.on_test_batch_end(trainer, system, outputs, outputs, 0)
    callback.on_test_epoch_end(trainer, system)
    # SR = HR: the analytic maxima; the cubic interpolation of the thick-slice LR scores lower on every metric.
    assert system.logged["test/patch_psnr"] == pytest.approx(80.0, abs=1e-3)
    for name in PATCH_METRICS:
        if name != "psnr":
            assert system.logged[f"test/patch_{name}"] == pytest.approx(1.0, abs=1e-4), name
        assert system.logged[f"test/patch_{name}_cubic"] < system.logged[f"test/patch_{name}"], name
    rows = list(csv.DictReader((tmp_path / "test_patch_metrics.csv").open()))
    assert {(r["method"], r["metric"]) for r in rows} == {
        (m, f"patch_{n}") for m in ("oracle", "cubic") for n in PATCH_METRICS
    }


def test_smoke_experiment_logs_patch_metrics_in_validation(tmp_path) -> None:
    from mrisr.app.train import train

    cfg = compose(
        "train",
        [
            "experiment=prettier_edsr_smoke",
            "~eval.image_metrics",
            "logger=none",
            "test=false",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            "data.val_patches=2",
            f"paths.runs_dir={tmp_path}",
            f"paths.output_dir={tmp_path / 'run'}",
        ],
    )
    metrics = train(cfg).metrics
    for name in PATCH_METRICS:
        assert np.isfinite(metrics[f"val/patch_{name}"]), name
    assert 0 < metrics["val/patch_ssim"] <= 1 and metrics["val/patch_psnr"] < 80


@pytest.mark.slow
def test_smoke_experiment_logs_patch_metrics_in_test(tmp_path) -> None:
    from mrisr.app.train import train

    cfg = compose(
        "train",
        [
            "experiment=prettier_edsr_smoke",
            "~eval.image_metrics",
            "logger=none",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            "data.val_patches=2",
            "eval.patch_metrics.stride=64",
            f"paths.runs_dir={tmp_path}",
            f"paths.output_dir={tmp_path / 'run'}",
        ],
    )
    metrics = train(cfg).metrics
    for name in PATCH_METRICS:
        assert np.isfinite(metrics[f"val/patch_{name}"]), name
        assert np.isfinite(metrics[f"test/patch_{name}"]), name
        assert np.isfinite(metrics[f"test/patch_{name}_cubic"]), name
    rows = (tmp_path / "run" / "test_patch_metrics.csv").read_text().splitlines()
    assert rows[0].startswith("subject,setting,method,metric,value") and len(rows) == 1 + 2 * len(PATCH_METRICS)
