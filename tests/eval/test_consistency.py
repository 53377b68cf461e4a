"""Forward consistency (mrisr.eval.consistency) separates outputs that explain their input from ones that do not."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from mrisr.api import super_resolve
from mrisr.core.errors import MrisrInputError
from mrisr.degradations.thick_slice import ThickSlice
from mrisr.eval.consistency import DEFAULT_PSNR_THRESHOLD_DB, forward_consistency
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume, as_volume

THICKNESS, SEPARATION = 3.0, 3.0


@pytest.fixture(scope="module")
def case() -> tuple[Volume, Volume, Volume]:
    """(HR 1 mm, thick-slice input 3||0 slr along axis 2, cubic SR on the HR grid)."""
    rng = np.random.default_rng(0)
    texture = ndimage.gaussian_filter(rng.standard_normal((40, 40, 60)), 2.0)
    data = 1.0 + (texture > 0) * 0.8 + 2.0 * texture
    affine = np.array([[1.0, 0, 0, -20.0], [0, 1.0, 0, 5.0], [0, 0, 1.0, 30.0], [0, 0, 0, 1.0]])
    hr = Volume(np.clip(data, 0, None).astype(np.float32), affine)
    lr = ThickSlice(thickness_mm=THICKNESS, separation_mm=SEPARATION, axis=2, profile="slr")(hr)
    sr = as_volume(super_resolve(lr, model="cubic"))
    return hr, lr, sr


def shifted(volume: Volume, voxels: int) -> Volume:
    n = volume.shape[2]
    return Volume(volume.data[:, :, np.clip(np.arange(n) - voxels, 0, n - 1)], volume.affine)


def test_ground_truth_reproduces_its_input_exactly(case: tuple[Volume, Volume, Volume]) -> None:
    hr, lr, _ = case
    report = forward_consistency(hr, lr, thickness_mm=THICKNESS)
    assert not report.resampled  # the HR grid nests with the input grid
    assert math.isinf(report.psnr) or report.psnr > 90
    assert report.max_slice_residual < 1e-5 and report.ssim == pytest.approx(1.0, abs=1e-6)
    assert len(report.slice_residual) == lr.shape[2] and not report.warn


def test_good_output_passes_and_wrong_ones_are_flagged(case: tuple[Volume, Volume, Volume]) -> None:
    _, lr, sr = case
    good = forward_consistency(sr, lr, thickness_mm=THICKNESS)
    slice_shift = forward_consistency(shifted(sr, 3), lr, thickness_mm=THICKNESS)
    thick = forward_consistency(sr, lr, thickness_mm=2.5 * THICKNESS)
    assert not good.warn and good.psnr > DEFAULT_PSNR_THRESHOLD_DB
    assert slice_shift.warn and slice_shift.psnr < good.psnr - 10
    assert thick.psnr < good.psnr - 5 and thick.median_slice_residual > good.median_slice_residual
    # A one-voxel shift is a smaller contradiction: between the good and the slice-shifted output.
    voxel_shift = forward_consistency(shifted(sr, 1), lr, thickness_mm=THICKNESS)
    assert slice_shift.psnr < voxel_shift.psnr < good.psnr
    assert slice_shift.ssim < voxel_shift.ssim < good.ssim


def test_non_nested_grid_is_resampled_by_world_coordinates(case: tuple[Volume, Volume, Volume]) -> None:
    _, lr, sr = case
    fine = as_volume(super_resolve(lr, model="cubic", target_spacing_mm=0.7))
    reference = forward_consistency(sr, lr, thickness_mm=THICKNESS)
    # A centred SR grid of another spacing still re-acquires exactly onto the input slices ...
    nested = forward_consistency(fine, lr, thickness_mm=THICKNESS)
    assert not nested.resampled and abs(nested.psnr - reference.psnr) < 3.0
    # ... a cropped one does not (its FOV centre moved): the re-acquisition is interpolated onto the input grid.
    cropped = forward_consistency(Volume(fine.data[:, :, :-2], fine.affine), lr, thickness_mm=THICKNESS)
    assert cropped.resampled and not cropped.warn
    assert abs(cropped.psnr - reference.psnr) < 6.0


def test_report_is_json_ready(case: tuple[Volume, Volume, Volume]) -> None:
    _, lr, sr = case
    record = forward_consistency(sr, lr, thickness_mm=THICKNESS, geometry=detect_slice_axis(lr)).as_dict()
    assert json.loads(json.dumps(record))["thickness_mm"] == THICKNESS
    assert record["separation_mm"] == SEPARATION and record["axis"] == 2


def test_rejects_coarse_or_misplaced_outputs(case: tuple[Volume, Volume, Volume]) -> None:
    _, lr, sr = case
    with pytest.raises(MrisrInputError, match="coarser than the input slice separation"):
        forward_consistency(Volume(lr.data[:, :, ::2], lr.affine @ np.diag([1, 1, 2, 1.0])), lr, thickness_mm=THICKNESS)
    moved = sr.affine.copy()
    moved[:3, 3] += 500.0
    with pytest.raises(MrisrInputError, match="covers only"):
        forward_consistency(Volume(sr.data, moved), lr, thickness_mm=THICKNESS)
