"""Seam metric (mrisr.eval.seams): detail locked to the input slice grid is measured; smooth outputs score near 1."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mrisr.degradations.thick_slice import ThickSlice
from mrisr.eval.seams import seam_profile
from mrisr.inference import interpolate_volume, output_grid
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume


@pytest.fixture(scope="module")
def pair() -> tuple[Volume, Volume, Volume]:
    rng = np.random.default_rng(0)
    hr_data = ndimage.gaussian_filter(rng.random((48, 40, 96)), 2.0) * 1000 + 200
    hr = Volume(hr_data.astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    lr = ThickSlice(thickness_mm=4.0, separation_mm=4.0, axis=2)(hr, seed=0)
    grid = output_grid(detect_slice_axis(lr, axis=2), lr.shape[2], target_spacing_mm=1.0)
    return hr, lr, interpolate_volume(lr, grid, order=3)


def test_phases_bins_and_a_smooth_output(pair: tuple[Volume, Volume, Volume]) -> None:
    _, lr, cubic = pair
    profile = seam_profile(cubic, lr)
    # 4 output samples per 4 mm slice: the midpoints between samples sit at phases −¼, 0, ¼ and ½ of a slice.
    assert profile.phases == pytest.approx((-0.25, 0.0, 0.25, 0.5)) and sum(profile.counts) == cubic.shape[2] - 1
    assert 1.0 <= profile.ratio < 1.4
    # Nearest-neighbour interpolation puts all through-plane change at the slice borders: the extreme seam.
    grid_step = cubic.shape[2] // lr.shape[2]
    nearest = Volume(np.repeat(lr.data, grid_step, axis=2), cubic.affine)
    assert seam_profile(nearest, lr).ratio == float("inf")


def test_detail_at_the_slice_period_raises_the_ratio(pair: tuple[Volume, Volume, Volume]) -> None:
    hr, lr, cubic = pair
    # Texture added only around the input slice centres (every 4th output sample, phase 0): a seam.
    seamed = cubic.data.copy()
    texture = np.random.default_rng(1).normal(0, 60, seamed.shape[:2])
    positions = np.arange(seamed.shape[2])
    seamed[..., positions % 4 == 2] += texture[..., None]
    profile = seam_profile(Volume(seamed, cubic.affine), lr)
    assert profile.ratio > 1.5 * seam_profile(cubic, lr).ratio
    # The true HR volume has no slice grid: its detail does not depend on the phase either.
    assert seam_profile(Volume(hr.data, cubic.affine), lr).ratio < 1.3
