"""Slice-profile estimation (mrisr.physics.estimation) on an isotropic synthetic phantom with a known profile.

Phantom: 96³ voxels (1 mm) of randomly placed balls (radius 2–8 mm, contrast 0.2–1, overlaps add) with a 0.5-voxel
Gaussian PSF. Balls are isotropic, so the principle of the estimator holds exactly in distribution; the remaining
error is the sampling noise of the edge statistic in a volume this small. Tolerance 0.75 mm: over six phantom seeds
the slab-compensated estimator (exact under isotropy) erred by at most 0.72 mm at T = S = 3 mm (mean |error| 0.2 mm)
and 0.39 mm at 3||1, for all three kinds.
"""

from __future__ import annotations

import numpy as np
import pytest

from mrisr.core.errors import MrisrInputError
from mrisr.physics.estimation import edge_concentration, estimate_slice_profile
from mrisr.physics.profiles import kernel_fwhm_voxels, slice_kernel
from support.volumes import ball_phantom, thick_stack

TOLERANCE_MM = 0.75


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return ball_phantom()


@pytest.mark.parametrize("kind", ["gaussian", "slr", "rect"])
def test_recovers_thickness_of_each_kind(phantom: np.ndarray, kind: str) -> None:
    lr = thick_stack(phantom, 3.0, 3.0, kind)
    est = estimate_slice_profile(
        lr, axis=2, separation_mm=3.0, inplane_spacing_mm=1.0, shapes=(kind,), slab_compensation=True
    )
    assert est.shape == kind and est.fits[kind].bracketed
    assert abs(est.fwhm_mm - 3.0) <= TOLERANCE_MM
    # The kernel is the simulation kernel of the estimate (same function, same convention), unit sum.
    expected = slice_kernel(kernel_fwhm_voxels(est.fwhm_mm, 1.0, "variance"), kind)
    np.testing.assert_allclose(est.kernel, expected)
    assert est.kernel.sum() == pytest.approx(1.0, abs=1e-12)


def test_recovers_thickness_with_gap(phantom: np.ndarray) -> None:
    lr = thick_stack(phantom, 3.0, 4.0, "slr")
    est = estimate_slice_profile(lr, axis=2, separation_mm=4.0, inplane_spacing_mm=1.0, slab_compensation=True)
    assert abs(est.fwhm_mm - 3.0) <= TOLERANCE_MM
    assert est.gap_mm == pytest.approx(4.0 - est.fwhm_mm)
    assert est.separation_mm == 4.0 and est.inplane_spacing_mm == 1.0


def test_thicker_slices_give_larger_estimates(phantom: np.ndarray) -> None:
    estimates = [
        estimate_slice_profile(thick_stack(phantom, t, 3.0, "slr"), 2, 3.0, 1.0).fwhm_mm for t in (2.0, 3.0, 4.5)
    ]
    assert estimates[0] < estimates[1] < estimates[2]
    assert estimates[2] - estimates[0] > 1.5  # true difference 2.5 mm


def test_axis_and_statistic_are_consistent(phantom: np.ndarray) -> None:
    lr = thick_stack(phantom, 3.0, 3.0, "slr")
    est = estimate_slice_profile(lr, axis=2, separation_mm=3.0, inplane_spacing_mm=1.0)
    moved = estimate_slice_profile(np.moveaxis(lr, 2, 0), axis=0, separation_mm=3.0, inplane_spacing_mm=1.0)
    assert moved.axis == 0 and est.axis == 2
    assert moved.statistic == pytest.approx(est.statistic, abs=1e-12)
    assert est.statistic == pytest.approx(edge_concentration(lr, 2)[0])
    # H lies in [1/2, 1] for monotone edges; the median over the strongest edges too.
    assert 0.5 <= est.statistic <= 1.0


def test_deterministic(phantom: np.ndarray) -> None:
    lr = thick_stack(phantom, 3.0, 3.5, "rect")
    a = estimate_slice_profile(lr, 2, 3.5, 1.0, shapes=("slr", "gaussian", "rect")).as_dict()
    b = estimate_slice_profile(lr.copy(), 2, 3.5, 1.0, shapes=("slr", "gaussian", "rect")).as_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert a["shape"] in ("slr", "gaussian", "rect")


def test_edge_concentration_of_ideal_edges() -> None:
    # A step between samples 1 and 2 of every line: all jump in one interval (H = 1).
    step = np.zeros((4, 4, 8))
    step[..., 2:] = 1.0
    assert edge_concentration(step, 2)[0] == pytest.approx(1.0)
    # A linear ramp: equal increments (H = 1/2).
    ramp = np.broadcast_to(np.arange(8.0), (4, 4, 8))
    assert edge_concentration(ramp, 2)[0] == pytest.approx(0.5)


def test_rejects_isotropic_input(phantom: np.ndarray) -> None:
    with pytest.raises(MrisrInputError, match="near-isotropic"):
        estimate_slice_profile(phantom, axis=2, separation_mm=1.0, inplane_spacing_mm=1.0)


def test_rejects_too_few_slices(phantom: np.ndarray) -> None:
    with pytest.raises(MrisrInputError, match="too few"):
        estimate_slice_profile(phantom[:, :, :4], axis=2, separation_mm=3.0, inplane_spacing_mm=1.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [(np.ones((40, 40, 10)), "constant"), (np.full((40, 40, 10), np.nan), "NaN"), (np.ones((40, 40)), "3-D")],
)
def test_rejects_bad_data(data: np.ndarray, message: str) -> None:
    with pytest.raises(MrisrInputError, match=message):
        estimate_slice_profile(data, axis=2 if data.ndim == 3 else 1, separation_mm=3.0, inplane_spacing_mm=1.0)


def test_rejects_unknown_shape(phantom: np.ndarray) -> None:
    with pytest.raises(ValueError, match="shapes"):
        estimate_slice_profile(thick_stack(phantom, 3.0, 3.0, "slr"), 2, 3.0, 1.0, shapes=("box",))
