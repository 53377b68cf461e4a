"""Python API on real shared data: simulate → super_resolve → evaluate, identities and baseline ordering."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import mrisr
from mrisr.core.errors import MrisrInputError


@pytest.fixture(scope="module")
def errsm_11(shared_data: Path) -> nib.Nifti1Image:
    return nib.load(shared_data / "spine_hr" / "errsm_11" / "t2.nii.gz")


def test_identity_when_thickness_equals_separation_equals_spacing(errsm_11: nib.Nifti1Image) -> None:
    lr = mrisr.simulate(errsm_11, thickness_mm=1.0, axis=2)
    np.testing.assert_allclose(lr.get_fdata(), errsm_11.get_fdata(), atol=1e-4 * errsm_11.get_fdata().max())
    np.testing.assert_allclose(lr.affine, errsm_11.affine, atol=1e-6)


def test_cubic_beats_nearest_on_real_spine_at_3_skip_1(errsm_11: nib.Nifti1Image) -> None:
    lr = mrisr.simulate(errsm_11, thickness_mm=3.0, gap_mm=1.0, axis=2)
    assert lr.shape == (384, 216, 13)
    scores = {m: mrisr.evaluate(mrisr.super_resolve(lr, model=m), errsm_11) for m in ("nearest", "linear", "cubic")}
    assert scores["cubic"]["psnr"] > scores["nearest"]["psnr"] + 0.5
    assert scores["linear"]["psnr"] > scores["nearest"]["psnr"]
    assert scores["cubic"]["ssim"] > scores["nearest"]["ssim"]
    assert all(s["resampled"] is False for s in scores.values())  # S = 4 nests into the 52-slice HR grid


def test_non_integer_factor_is_compared_in_world_coordinates(errsm_11: nib.Nifti1Image) -> None:
    lr = mrisr.simulate(errsm_11, thickness_mm=3.0, gap_mm=0.3, axis=2)  # S = 3.3 mm
    assert lr.shape[2] == round(52 / 3.3)
    sr = mrisr.super_resolve(lr, model="cubic")
    assert sr.shape[2] == round(lr.shape[2] * 3.3)
    metrics = mrisr.evaluate(sr, errsm_11)
    assert metrics["resampled"] is True and 25 < metrics["psnr"] < 60


def test_gap_changes_the_sampling_not_the_blur(errsm_11: nib.Nifti1Image) -> None:
    no_gap = mrisr.simulate(errsm_11, thickness_mm=3.0, separation_mm=3.0, axis=2, profile="rect")
    gap = mrisr.simulate(errsm_11, thickness_mm=3.0, separation_mm=4.0, axis=2, profile="rect")
    assert no_gap.header.get_zooms()[2] == pytest.approx(3.0) and gap.header.get_zooms()[2] == pytest.approx(4.0)
    # Same blur kernel: the LR slice of the gapped stack whose centre coincides with a no-gap slice centre matches.
    world = lambda img, k: (img.affine @ np.array([0, 0, k, 1]))[:3]  # noqa: E731
    matched = 0
    for k in range(gap.shape[2]):
        for j in range(no_gap.shape[2]):
            if np.allclose(world(gap, k), world(no_gap, j), atol=1e-6):
                np.testing.assert_allclose(gap.get_fdata()[..., k], no_gap.get_fdata()[..., j], rtol=1e-5, atol=1e-3)
                matched += 1
    assert matched == 5  # centres coincide at HR positions 1.5, 13.5, 25.5, 37.5 and 49.5


def test_seeded_noise_is_reproducible(errsm_11: nib.Nifti1Image) -> None:
    a = mrisr.simulate(errsm_11, thickness_mm=3.0, axis=2, noise_std=0.02, seed=1).get_fdata()
    b = mrisr.simulate(errsm_11, thickness_mm=3.0, axis=2, noise_std=0.02, seed=1).get_fdata()
    c = mrisr.simulate(errsm_11, thickness_mm=3.0, axis=2, noise_std=0.02, seed=2).get_fdata()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0


def test_isotropic_input_needs_an_axis_for_super_resolution(errsm_11: nib.Nifti1Image) -> None:
    with pytest.raises(MrisrInputError, match="near-isotropic"):
        mrisr.super_resolve(errsm_11)
