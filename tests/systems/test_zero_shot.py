"""Zero-shot (SMORE-family) SR: network geometry, self-training pairs physics, seconds-long fits on real data."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

import mrisr
from mrisr.data.zero_shot import PatchGeometry, SelfTrainingPairs, gradient_density
from mrisr.inference import FittedModel, output_grid
from mrisr.inference.acquisition import resolve_acquisition
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume, as_volume
from mrisr.nets.wdsr import WDSR, pixel_shuffle_1d, pixel_unshuffle_1d, upsample_rows
from mrisr.physics import blur_axis, kernel_fwhm_voxels, slice_kernel
from mrisr.physics.resample import interpolation_matrix
from mrisr.systems.zero_shot import ZeroShotSR, one_cycle_lr
from mrisr.utils.config import compose


@pytest.mark.parametrize("scale", [2.0, 2.5, 3.3, 4.0, 4.667, 10.909])
@pytest.mark.parametrize("rows", [8, 13, 48])
def test_wdsr_output_length_is_round_s_times_rows(scale: float, rows: int) -> None:
    net = WDSR(scale, n_blocks=1, n_feats=4)
    assert net(torch.rand(2, 1, rows, 7)).shape == (2, 1, round(scale * rows), 7)


def test_pixel_shuffle_1d_fills_sub_rows_and_inverts() -> None:
    x = torch.arange(2 * 6 * 3 * 2, dtype=torch.float32).reshape(2, 6, 3, 2)
    y = pixel_shuffle_1d(x, 3)
    assert y.shape == (2, 2, 9, 2)
    for i in range(3):
        torch.testing.assert_close(y[:, :, i::3], x[:, i::3])  # channel c·r + i fills sub-row i
    torch.testing.assert_close(pixel_unshuffle_1d(y, 3), x)


def test_untrained_wdsr_is_cubic_interpolation() -> None:
    x = torch.rand(1, 1, 10, 12)
    net = WDSR(3.3, n_blocks=2, n_feats=8)
    torch.testing.assert_close(net(x), upsample_rows(x, 3.3), rtol=0, atol=1e-6)


def test_one_cycle_schedule_shape() -> None:
    assert one_cycle_lr(0.0, 1e-3) == pytest.approx(1e-3 / 25)
    assert one_cycle_lr(0.3, 1e-3) == pytest.approx(1e-3)
    assert one_cycle_lr(1.0, 1e-3) == pytest.approx(1e-3 / 25 / 1e4)
    values = [one_cycle_lr(p, 1e-3) for p in np.linspace(0.3, 1, 50)]
    assert all(a >= b for a, b in itertools.pairwise(values))


@pytest.mark.parametrize(("scale", "lr_rows"), [(4.0, 8), (3.3, 10), (2.5, 8)])
def test_training_pair_equals_crop_of_whole_plane(scale: float, lr_rows: int) -> None:
    """docs/physics.md §7: the LR patch equals the whole plane blurred and sampled at the same absolute positions."""
    volume = torch.rand(80, 70, 5, generator=torch.Generator().manual_seed(0))
    kernel = slice_kernel(kernel_fwhm_voxels(3.0, 1.0), "slr")
    patch = PatchGeometry(lr_rows=lr_rows, hr_rows=round(scale * lr_rows), cols=12, scale=scale)
    pairs = SelfTrainingPairs(volume, kernel, patch)
    lr, hr = pairs.assemble(
        torch.tensor([[40, 35, 2], [40, 35, 2], [38, 30, 1], [38, 30, 1]]), torch.tensor([0, 6, 1, 7])
    )
    whole = volume.double().numpy()
    x0, y0 = 40 - patch.hr_rows // 2, 35 - patch.cols // 2
    along_x = interpolation_matrix(80, x0 + patch.lr_positions, 3) @ blur_axis(whole, kernel, 0)[:, y0 : y0 + 12, 2]
    np.testing.assert_allclose(lr[0, 0].numpy(), along_x, atol=2e-6)
    np.testing.assert_allclose(lr[1, 0].numpy(), along_x[::-1, ::-1], atol=2e-6)  # both flips
    np.testing.assert_array_equal(hr[0, 0].numpy(), whole[x0 : x0 + patch.hr_rows, y0 : y0 + 12, 2].astype(np.float32))
    y0b, x0b = 30 - patch.hr_rows // 2, 38 - patch.cols // 2
    along_y = (
        interpolation_matrix(70, y0b + patch.lr_positions, 3) @ blur_axis(whole, kernel, 1)[x0b : x0b + 12, :, 1].T
    )
    np.testing.assert_allclose(lr[2, 0].numpy(), along_y, atol=2e-6)
    np.testing.assert_allclose(lr[3, 0].numpy(), along_y[::-1, ::-1], atol=2e-6)


def test_training_pairs_preserve_flat_field_and_are_seeded() -> None:
    patch = PatchGeometry(lr_rows=8, hr_rows=26, cols=10, scale=3.3)
    kernel = slice_kernel(kernel_fwhm_voxels(3.3, 1.0), "gaussian")
    flat = SelfTrainingPairs(torch.full((30, 25, 4), 0.7), kernel, patch, sampling="uniform")
    lr, _ = flat.batch(16, torch.Generator().manual_seed(1))  # patches reach the volume borders (padding)
    torch.testing.assert_close(lr, torch.full_like(lr, 0.7), rtol=1e-5, atol=0)
    varied = SelfTrainingPairs(torch.rand(30, 25, 4, generator=torch.Generator().manual_seed(2)), kernel, patch)
    a = varied.batch(8, torch.Generator().manual_seed(3))
    b = varied.batch(8, torch.Generator().manual_seed(3))
    c = varied.batch(8, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_gradient_density_avoids_flat_background() -> None:
    volume = np.zeros((40, 40, 6))
    volume[15:25, 15:25] = 1.0
    density = gradient_density(volume, sigma=1.0)
    assert density.sum() == pytest.approx(1.0)
    assert density[0:5, 0:5].sum() == 0.0 and density[12:28, 12:28].sum() > 0.95


def smoke_model(**overrides: object) -> ZeroShotSR:
    cfg = compose("infer", ["model=smore_smoke", "input=x", "output=y"])
    return instantiate(cfg.model, **overrides)


def fit_and_predict(lr: nib.Nifti1Image, **overrides: object) -> tuple[FittedModel, Volume]:
    """The model's fit with its own seed (no generator) and the fitted model's output."""
    volume = as_volume(lr)
    geometry = detect_slice_axis(volume)
    model = smoke_model(**overrides)
    acquisition = resolve_acquisition(None, volume, geometry, model.acquisition_request(), estimate=False)
    fitted = model.fit_volume(volume, geometry, acquisition)
    grid = output_grid(geometry, volume.shape[geometry.axis])
    return fitted, fitted.inferer(volume, geometry, grid, torch.Generator()).sr


def test_seconds_long_fit_learns_and_keeps_geometry(t2_crop_lr: tuple[nib.Nifti1Image, nib.Nifti1Image]) -> None:
    hr, lr = t2_crop_lr
    fitted, sr = fit_and_predict(lr, thickness_mm=3.0, max_steps=60, batch_size=8)
    losses = [row["loss"] for row in fitted.log]
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert fitted.record["kernel_fwhm_voxels"] == pytest.approx(np.sqrt(8.0))
    assert sr.shape == hr.shape  # 13 slices × s = 4 → 52
    np.testing.assert_allclose(sr.affine, hr.affine, atol=1e-6)
    assert np.isfinite(sr.data).all()


def test_same_seed_same_output(t2_crop_lr: tuple[nib.Nifti1Image, nib.Nifti1Image]) -> None:
    _, lr = t2_crop_lr
    _, a = fit_and_predict(lr, max_steps=5, seed=3)
    _, b = fit_and_predict(lr, max_steps=5, seed=3)
    _, c = fit_and_predict(lr, max_steps=5, seed=4)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)


def test_non_integer_factor_with_gap(t2_crop_lr: tuple[nib.Nifti1Image, nib.Nifti1Image]) -> None:
    hr, _ = t2_crop_lr
    lr = mrisr.simulate(hr, thickness_mm=3.0, gap_mm=0.3, axis=2)  # s = 3.3
    _, sr = fit_and_predict(lr, thickness_mm=3.0, max_steps=3)
    assert sr.shape[2] == round(lr.shape[2] * 3.3)
    centre = lambda a, n: (a @ np.r_[(np.array(n) - 1) / 2, 1])[:3]  # noqa: E731
    np.testing.assert_allclose(centre(sr.affine, sr.shape), centre(lr.affine, lr.shape), atol=1e-5)
