"""Tests of image-similarity metrics and world-coordinate resampling (docs/evaluation.md §1)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from mrisr.core.errors import MrisrInputError
from mrisr.eval import image_metrics, normalize_intensity, psnr, ssim
from mrisr.io import Volume
from mrisr.io.regrid import resample_to_reference


def _structure(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth random structure scaled to [0, 1]."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.normal(size=shape), sigma=2.0)
    img -= img.min()
    return img / img.max()


def _phantom(shape: tuple[int, int, int] = (32, 30, 28), seed: int = 0) -> np.ndarray:
    """Positive smooth object inside an ellipsoid, zero background, float32."""
    grids = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
    inside = (grids[0] ** 2 + grids[1] ** 2 + grids[2] ** 2) < 0.8
    return (inside * (100.0 + 400.0 * _structure(shape, seed))).astype(np.float32)


def _oblique_affine(zooms: tuple[float, float, float], angle_deg: float = 12.0) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(zooms)
    affine[:3, 3] = (-20.0, 13.5, -7.25)
    return affine


def _world(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """World coordinates (mm) of every voxel centre, shape (3, *shape)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))
    return np.einsum("rc,c...->r...", affine[:3, :3], ijk) + affine[:3, 3, None, None, None]


def _permute_flip(vol: Volume, perm: tuple[int, int, int], flip: tuple[int, ...]) -> Volume:
    """The same image stored with permuted and flipped axes; the affine keeps every voxel in place."""
    t = np.transpose(vol.data, perm)
    P = np.zeros((4, 4))
    P[3, 3] = 1.0
    for k, p in enumerate(perm):
        P[p, k] = 1.0
    F = np.eye(4)
    for f in flip:
        F[f, f] = -1.0
        F[f, 3] = t.shape[f] - 1
    data = np.ascontiguousarray(np.flip(t, axis=flip) if flip else t)
    return Volume(data, vol.affine @ P @ F)


# --------------------------------------------------------------------------------------------------
# PSNR


def test_psnr_matches_gaussian_noise_level() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.8, size=(64, 64, 64))
    for sigma in (0.01, 0.03):
        noisy = x + rng.normal(scale=sigma, size=x.shape)
        assert psnr(noisy, x) == pytest.approx(10.0 * math.log10(1.0 / sigma**2), abs=0.05)
    # Peak scales as L²: doubling the data range adds 20·log10(2) dB.
    noisy = x + rng.normal(scale=0.02, size=x.shape)
    assert psnr(noisy, x, data_range=2.0) - psnr(noisy, x) == pytest.approx(20.0 * math.log10(2.0), abs=1e-9)


def test_psnr_identical_is_inf_and_masked_equals_hand_computed() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((20, 18, 16)).astype(np.float32)
    assert psnr(x, x) == math.inf
    y = x + rng.normal(scale=0.05, size=x.shape).astype(np.float32)
    mask = np.zeros(x.shape, dtype=bool)
    mask[5:15, 3:12, 4:10] = True
    y[~mask] += 0.5  # errors outside the mask must not count
    mse = np.mean((y[mask].astype(np.float64) - x[mask]) ** 2)
    assert psnr(y, x, mask=mask) == pytest.approx(10.0 * math.log10(1.0 / mse), rel=1e-12)
    assert psnr(y, x, mask=mask.astype(np.float32)) == psnr(y, x, mask=mask)
    assert psnr(y, x) < psnr(y, x, mask=mask)
    assert psnr(np.where(mask, x, y), x, mask=mask) == math.inf


def test_psnr_input_errors() -> None:
    x = np.zeros((4, 4, 4))
    with pytest.raises(MrisrInputError, match="shapes differ"):
        psnr(x, np.zeros((4, 4, 5)))
    with pytest.raises(MrisrInputError, match="empty"):
        psnr(x, x, mask=np.zeros_like(x))
    with pytest.raises(MrisrInputError, match="mask shape"):
        psnr(x, x, mask=np.ones((4, 4)))


# --------------------------------------------------------------------------------------------------
# SSIM


def test_ssim_identity_and_monotone_in_noise() -> None:
    x = _structure((32, 32, 24), seed=3)
    assert ssim(x, x) == 1.0
    noise = np.random.default_rng(4).normal(size=x.shape)
    values = [ssim(x + level * noise, x) for level in (0.0, 0.01, 0.03, 0.1, 0.3)]
    assert values[0] == 1.0
    assert all(a > b for a, b in itertools.pairwise(values)), values
    assert values[-1] < 0.5
    y = x + 0.05 * noise
    assert ssim(y, x) == pytest.approx(ssim(x, y), abs=1e-12)  # symmetric


def test_ssim_is_mean_of_the_full_map_over_all_voxels_or_mask() -> None:
    x = _structure((24, 22, 20), seed=5)
    y = x + 0.05 * np.random.default_rng(6).normal(size=x.shape)
    cropped_mean, smap = structural_similarity(
        y, x, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True
    )
    assert ssim(y, x) == pytest.approx(float(smap.mean()), abs=1e-12)
    assert ssim(y, x) != pytest.approx(float(cropped_mean), abs=1e-6)  # no border crop
    mask = np.zeros(x.shape, dtype=bool)
    mask[4:20, 2:12, 5:15] = True
    assert ssim(y, x, mask=mask) == pytest.approx(float(smap[mask].mean()), abs=1e-12)
    # 2-D images are supported as well.
    assert ssim(y[:, :, 10], x[:, :, 10]) < 1.0 and ssim(x[:, :, 10], x[:, :, 10]) == pytest.approx(1.0)


def test_ssim_rejects_volumes_smaller_than_the_window() -> None:
    x = np.random.default_rng(0).random((20, 20, 5))
    with pytest.raises(MrisrInputError, match="SSIM window"):
        ssim(x, x)


# --------------------------------------------------------------------------------------------------
# Intensity normalisation


def test_normalize_puts_reference_percentile_at_one() -> None:
    ref = _phantom(seed=7)
    other = ref * 1.3 + 5.0
    fg = ref > 0
    ref_u, other_u = normalize_intensity(ref, other, clip=False)
    assert float(np.percentile(ref_u[fg].astype(np.float64), 99.5)) == pytest.approx(1.0, abs=1e-6)
    assert ref_u.dtype == np.float32 and ref_u.max() > 1.0
    # Clipping to [0, 1] only touches the values above the percentile.
    ref_n, other_n = normalize_intensity(ref, other)
    assert ref_n.min() >= 0.0 and ref_n.max() == 1.0 and other_n.max() == 1.0
    assert np.array_equal(ref_n, np.clip(ref_u, 0.0, 1.0))
    assert np.mean(ref_n[fg] == 1.0) == pytest.approx(0.005, abs=0.002)
    # Same divisor for every image (checked without clipping).
    p = float(np.percentile(ref[fg].astype(np.float64), 99.5))
    np.testing.assert_allclose(ref_u * p, ref, rtol=1e-6)
    np.testing.assert_allclose(other_u * p, other, rtol=1e-6)
    assert other_u.max() > 1.0
    # The foreground rule ignores background zeros: padding with zeros changes nothing.
    padded = np.pad(ref, 10)
    assert np.array_equal(normalize_intensity(padded)[0][10:-10, 10:-10, 10:-10], ref_n)


def test_normalize_with_mask_and_percentile() -> None:
    ref = _phantom(seed=8)
    mask = np.zeros(ref.shape, dtype=bool)
    mask[8:20, 8:20, 8:20] = True
    (ref_n,) = normalize_intensity(ref, mask=mask, percentile=90.0, clip=False)
    assert float(np.percentile(ref_n[mask].astype(np.float64), 90.0)) == pytest.approx(1.0, abs=1e-6)
    assert float(np.percentile(ref_n[ref > 0].astype(np.float64), 90.0)) != pytest.approx(1.0, abs=1e-3)


def test_normalize_errors() -> None:
    ref = _phantom(seed=9)
    with pytest.raises(MrisrInputError, match="must be > 0"):
        normalize_intensity(ref, mask=ref == 0)  # percentile of the background is 0
    with pytest.raises(MrisrInputError, match="foreground"):
        normalize_intensity(-np.ones((4, 4, 4)))
    with pytest.raises(MrisrInputError, match="shape"):
        normalize_intensity(ref, ref[:-1])


# --------------------------------------------------------------------------------------------------
# Resampling by world coordinates


def test_resample_identical_grid_is_an_exact_copy() -> None:
    vol = Volume(_phantom(), _oblique_affine((1.0, 1.2, 2.5)))
    out = resample_to_reference(vol, Volume(np.zeros(vol.shape, np.float32), vol.affine + 1e-9))
    assert np.array_equal(out, vol.data) and out is not vol.data
    assert not np.shares_memory(out, vol.data)


@pytest.mark.parametrize(
    ("perm", "flip"), [((2, 0, 1), (1,)), ((1, 0, 2), (0, 2)), ((0, 1, 2), (0, 1, 2)), ((2, 1, 0), ())]
)
@pytest.mark.parametrize("order", [0, 3])
def test_permuted_flipped_grid_maps_back_exactly(perm: tuple[int, int, int], flip: tuple[int, ...], order: int) -> None:
    rng = np.random.default_rng(10)
    ref = Volume(rng.random((9, 8, 7)).astype(np.float32), _oblique_affine((0.7, 0.9, 3.0)))
    moved = _permute_flip(ref, perm, flip)
    assert not np.array_equal(moved.affine, ref.affine)
    assert np.array_equal(resample_to_reference(moved, ref, order=order), ref.data)
    assert np.array_equal(resample_to_reference(ref, moved, order=order), moved.data)


def test_integer_shift_clamps_like_nearest_mode() -> None:
    rng = np.random.default_rng(11)
    ref = Volume(rng.random((10, 6, 5)).astype(np.float32), _oblique_affine((1.0, 1.0, 2.0)))
    shift = np.eye(4)
    shift[0, 3] = 3.0
    cropped = Volume(ref.data[3:], ref.affine @ shift)
    out = resample_to_reference(cropped, ref, order=3)
    assert np.array_equal(out[3:], ref.data[3:])
    assert np.array_equal(out[:3], np.broadcast_to(ref.data[3], (3, 6, 5)))  # edge value, not zeros


def _poly(world: np.ndarray) -> np.ndarray:
    x, y, z = world
    return 2.0 + 0.05 * x - 0.03 * y + 0.08 * z + 1e-3 * (x * x - 2.0 * y * z + 0.5 * z * z)


def test_linear_field_is_exact_with_order_1_on_oblique_subvoxel_grid() -> None:
    ref_affine = _oblique_affine((1.0, 1.1, 1.3), angle_deg=0.0)
    moving_affine = _oblique_affine((0.9, 1.2, 1.4), angle_deg=15.0)
    moving_affine[:3, 3] += (-4.3, -3.7, -2.9)
    ref_shape, moving_shape = (20, 18, 16), (30, 28, 24)
    coef = np.array([0.05, -0.03, 0.08])
    moving = Volume(np.einsum("r,r...->...", coef, _world(moving_affine, moving_shape)), moving_affine)
    ref = Volume(np.zeros(ref_shape, np.float32), ref_affine)
    out = resample_to_reference(moving, ref, order=1)
    expected = np.einsum("r,r...->...", coef, _world(ref_affine, ref_shape))
    # Only where the reference voxel lies inside the moving field of view.
    vox = np.einsum("rc,c...->r...", np.linalg.inv(moving_affine)[:3, :3], _world(ref_affine, ref_shape))
    vox += np.linalg.inv(moving_affine)[:3, 3, None, None, None]
    inside = np.all((vox >= 0) & (vox <= np.array(moving_shape)[:, None, None, None] - 1), axis=0)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out[inside], expected[inside], atol=1e-9)


@pytest.mark.parametrize(("perm", "flip"), [((2, 0, 1), (1,)), ((1, 2, 0), (0, 2))])
def test_cubic_recovers_polynomial_on_shifted_permuted_flipped_grid(
    perm: tuple[int, int, int], flip: tuple[int, ...]
) -> None:
    shape = (28, 26, 24)
    ref_affine = _oblique_affine((1.0, 1.0, 1.5))
    ref = Volume(_poly(_world(ref_affine, shape)).astype(np.float64), ref_affine)
    moved = _permute_flip(ref, perm, flip)
    sub = np.eye(4)
    sub[:3, 3] = (0.37, -0.41, 0.23)  # sub-voxel shift of the moving grid
    moving_affine = moved.affine @ sub
    moving = Volume(_poly(_world(moving_affine, moved.shape)), moving_affine)
    out = resample_to_reference(moving, ref, order=3)
    assert out.dtype == np.float64
    interior = (slice(6, -6),) * 3
    np.testing.assert_allclose(out[interior], ref.data[interior], atol=1e-5)
    assert np.abs(out - ref.data).max() < 0.05  # edges: bounded, no zero padding


def test_coarse_grid_compares_in_world_coordinates() -> None:
    shape = (32, 30, 40)
    hr_affine = _oblique_affine((1.0, 1.0, 1.0))
    hr = Volume(_poly(_world(hr_affine, shape)), hr_affine)
    # Same-FOV 2x coarser grid along axis 2 (docs/physics.md §3): zoom x2, origin moved by +0.5 voxel.
    coarse_affine = hr_affine.copy()
    coarse_affine[:3, 2] *= 2.0
    coarse_affine[:3, 3] += hr_affine[:3, 2] * 0.5
    coarse_shape = (32, 30, 20)
    coarse = Volume(_poly(_world(coarse_affine, coarse_shape)), coarse_affine)
    np.testing.assert_allclose(
        _world(coarse_affine, coarse_shape).mean(axis=(1, 2, 3)),
        _world(hr_affine, shape).mean(axis=(1, 2, 3)),
    )
    out = resample_to_reference(coarse, hr, order=3)
    # Cubic B-spline reproduces the quadratic away from the edges (the boundary error decays ~0.27^n).
    interior = (slice(None), slice(None), slice(12, -12))
    np.testing.assert_allclose(out[interior], hr.data[interior], atol=1e-5)
    assert np.abs(out - hr.data).max() < 0.05
    # Ignoring the half-voxel offset (first samples aligned) is visibly wrong.
    wrong = Volume(coarse.data, coarse_affine - np.pad(hr_affine[:3, 2:3] * 0.5, ((0, 1), (3, 0))))
    err_wrong = np.abs(resample_to_reference(wrong, hr, order=3)[interior] - hr.data[interior]).max()
    assert err_wrong > 100 * np.abs(out[interior] - hr.data[interior]).max()


# --------------------------------------------------------------------------------------------------
# image_metrics


def test_image_metrics_identical_and_keys() -> None:
    hr = Volume(_phantom(seed=12), _oblique_affine((1.0, 1.0, 1.0)))
    res = image_metrics(Volume(hr.data.copy(), hr.affine), hr)
    assert res["psnr"] == math.inf and res["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert res["grid"] == "hr" and res["resampled"] is False and res["normalization"] == "hr_p99.5"
    assert "psnr_mask" not in res and "ssim_mask" not in res
    assert image_metrics(hr, hr, percentile=99.0)["normalization"] == "hr_p99"


def test_image_metrics_normalises_by_hr_and_masks() -> None:
    hr_data = _phantom(seed=13)
    affine = _oblique_affine((1.0, 1.0, 1.0))
    hr = Volume(hr_data, affine)
    noise = np.random.default_rng(14).normal(scale=5.0, size=hr_data.shape).astype(np.float32)
    sr = Volume(hr_data + noise, affine)
    mask_arr = np.zeros(hr_data.shape, dtype=np.float32)
    mask_arr[10:22, 9:21, 8:20] = 1.0
    res = image_metrics(sr, hr, mask=Volume(mask_arr, affine))
    m = mask_arr > 0.5
    # The ROI mask selects voxels only; the percentile is taken over the HR foreground.
    p = float(np.percentile(hr_data[hr_data > 0].astype(np.float64), 99.5))
    hr_n = np.clip(hr_data / p, 0, 1)
    sr_n = np.clip((hr_data + noise) / p, 0, 1)
    assert res["psnr_mask"] == pytest.approx(10 * math.log10(1.0 / np.mean((sr_n[m] - hr_n[m]) ** 2)), rel=1e-5)
    assert res["psnr"] == pytest.approx(10 * math.log10(1.0 / np.mean((sr_n - hr_n) ** 2)), rel=1e-5)
    assert res["ssim_mask"] == pytest.approx(ssim(sr_n, hr_n, mask=m), abs=1e-6)
    assert res["normalization_region"] == "foreground" and res["resampled"] is False
    by_norm_mask = image_metrics(sr, hr, mask=Volume(mask_arr, affine), normalization_mask=Volume(mask_arr, affine))
    p_mask = float(np.percentile(hr_data[m].astype(np.float64), 99.5))
    sr_m, hr_m = np.clip((hr_data + noise) / p_mask, 0, 1), np.clip(hr_data / p_mask, 0, 1)
    assert by_norm_mask["psnr_mask"] == pytest.approx(
        10 * math.log10(1.0 / np.mean((sr_m[m] - hr_m[m]) ** 2)), rel=1e-5
    )
    assert by_norm_mask["normalization_region"] == "normalization_mask"
    # The same mask stored on a permuted/flipped grid gives the same numbers.
    res_moved = image_metrics(sr, hr, mask=_permute_flip(Volume(mask_arr, affine), (2, 0, 1), (0,)))
    for key in ("psnr", "ssim", "psnr_mask", "ssim_mask"):
        assert res_moved[key] == pytest.approx(res[key], rel=1e-9)
    # Scaling the SR intensities is penalised: normalisation uses the HR percentile only.
    assert image_metrics(Volume(hr_data * 1.2, affine), hr)["psnr"] < 40.0


def test_image_metrics_resamples_sr_on_a_coarser_grid() -> None:
    shape = (32, 30, 40)
    hr_affine = _oblique_affine((1.0, 1.0, 1.0))
    hr = Volume((_poly(_world(hr_affine, shape)) * 100.0).astype(np.float32), hr_affine)
    coarse_affine = hr_affine.copy()
    coarse_affine[:3, 2] *= 2.0
    coarse_affine[:3, 3] += hr_affine[:3, 2] * 0.5
    sr = Volume((_poly(_world(coarse_affine, (32, 30, 20))) * 100.0).astype(np.float32), coarse_affine)
    res = image_metrics(sr, hr)
    assert res["resampled"] is True and res["grid"] == "hr"
    assert res["psnr"] > 50.0 and res["ssim"] > 0.99
