"""Acquisition resolution (mrisr.inference.acquisition): argument → JSON sidecar → estimate → separation, the
profile kind, and the errors of BIDS sidecars (mrisr.io.sidecar)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mrisr.core.errors import MrisrInputError
from mrisr.inference import acquisition
from mrisr.inference.acquisition import AcquisitionRequest, resolve_acquisition
from mrisr.io.geometry import SliceGeometry, detect_slice_axis
from mrisr.io.nifti import Volume
from mrisr.io.sidecar import read_sidecar, sidecar_path, write_acquisition_sidecar


class FakeEstimate:
    """What the image estimator returns, with a chosen thickness and kind."""

    def __init__(self, fwhm_mm: object, shape: str = "slr") -> None:
        self.fwhm_mm, self.shape, self.fwhm_spread_mm, self.fits, self.seconds = fwhm_mm, shape, 0.0, {}, 0.0

    def summary(self) -> str:
        return f"{self.shape} FWHM {self.fwhm_mm} mm (fake)"


def fake_estimator(monkeypatch: pytest.MonkeyPatch, value: object, shape: str = "slr") -> list[bool]:
    """Replace the image estimator; returns the list of its calls' ``joint`` flags."""
    calls: list[bool] = []

    def estimate(volume: Volume, geometry: SliceGeometry, request: AcquisitionRequest, joint: bool) -> FakeEstimate:
        calls.append(joint)
        return FakeEstimate(value, shape)

    monkeypatch.setattr(acquisition, "_estimate", estimate)
    return calls


def resolve_thickness(
    image: Path | None,
    volume: Volume,
    geometry: SliceGeometry,
    thickness_mm: float | None = None,
    estimate: bool = False,
) -> acquisition.Acquisition:
    return resolve_acquisition(image, volume, geometry, AcquisitionRequest(thickness_mm=thickness_mm), estimate)


def thick_volume(separation: float = 4.0) -> tuple[Volume, SliceGeometry]:
    rng = np.random.default_rng(0)
    data = rng.random((24, 24, 8)).astype(np.float32)
    volume = Volume(data=data, affine=np.diag([1.0, 1.0, separation, 1.0]))
    return volume, detect_slice_axis(volume)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return tmp_path / "sub-01_T2w.nii.gz"


def write_sidecar(image: Path, record: object) -> Path:
    path = sidecar_path(image)
    path.write_text(json.dumps(record))
    return path


def test_sidecar_path() -> None:
    assert sidecar_path("/d/sub-01_T2w.nii.gz") == Path("/d/sub-01_T2w.json")
    assert sidecar_path("/d/a.b.nii") == Path("/d/a.b.json")


def test_argument_wins_over_sidecar(image: Path) -> None:
    volume, geometry = thick_volume()
    write_sidecar(image, {"SliceThickness": 3.0})
    res = resolve_thickness(image, volume, geometry, thickness_mm=2.5, estimate=True)
    assert (res.thickness_mm, res.thickness_source) == (2.5, "argument")


def test_sidecar_wins_over_estimate(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volume, geometry = thick_volume()
    side = write_sidecar(image, {"SliceThickness": 3, "SpacingBetweenSlices": 4.0})
    calls = fake_estimator(monkeypatch, 9.9)
    res = resolve_thickness(image, volume, geometry, estimate=True)
    assert (res.thickness_mm, res.thickness_source) == (3.0, "sidecar")
    assert str(side) in res.thickness_detail
    assert calls == [], "the estimator must not run when the sidecar has the thickness"


def test_estimate_when_sidecar_lacks_thickness(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volume, geometry = thick_volume()
    write_sidecar(image, {"SpacingBetweenSlices": 4.0, "EchoTime": 0.1})
    calls = fake_estimator(monkeypatch, 3.2)
    res = resolve_thickness(image, volume, geometry, estimate=True)
    assert (res.thickness_mm, res.thickness_source, res.profile, res.profile_source) == (
        3.2,
        "estimate",
        "slr",
        "argument",
    )
    assert calls == [False]


def test_profile_auto_estimates_kind_and_thickness_jointly(image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volume, geometry = thick_volume()
    calls = fake_estimator(monkeypatch, 3.4, shape="gaussian")
    res = resolve_acquisition(image, volume, geometry, AcquisitionRequest(profile="auto"), estimate=False)
    assert (res.thickness_mm, res.thickness_source, res.profile, res.profile_source) == (
        3.4,
        "estimate",
        "gaussian",
        "estimate",
    )
    assert calls == [True]
    # A given thickness wins; the kind is still estimated (one vocabulary: argument / estimate).
    res = resolve_acquisition(image, volume, geometry, AcquisitionRequest(3.0, "auto"), estimate=True)
    assert (res.thickness_mm, res.thickness_source, res.profile, res.profile_source) == (
        3.0,
        "argument",
        "gaussian",
        "estimate",
    )
    assert res.as_record()["profile_estimate"]["shape"] == "gaussian"


def test_builtin_estimator_runs(image: Path) -> None:
    volume, geometry = thick_volume()
    res = resolve_thickness(image, volume, geometry, estimate=True)
    assert res.thickness_source == "estimate"
    assert geometry.inplane_spacing_mm <= res.thickness_mm <= 1.6 * geometry.separation_mm
    assert "FWHM" in res.thickness_detail


def test_separation_fallback_warns(image: Path, caplog: pytest.LogCaptureFixture) -> None:
    volume, geometry = thick_volume(separation=5.0)
    with caplog.at_level(logging.WARNING, logger="mrisr.inference.acquisition"):
        res = resolve_thickness(image, volume, geometry)
    assert (res.thickness_mm, res.thickness_source) == (5.0, "separation")
    assert any("thickness unknown" in r.message for r in caplog.records)
    # No path at all (in-memory volume): same fallback.
    assert resolve_thickness(None, volume, geometry).thickness_source == "separation"


def test_unreadable_json(image: Path) -> None:
    volume, geometry = thick_volume()
    side = sidecar_path(image)
    side.write_text("{'SliceThickness': 3")
    with pytest.raises(MrisrInputError, match="not valid JSON") as info:
        resolve_thickness(image, volume, geometry)
    assert info.value.path == str(side)


def test_json_that_is_not_an_object(image: Path) -> None:
    volume, geometry = thick_volume()
    write_sidecar(image, [3.0])
    with pytest.raises(MrisrInputError, match="not an object"):
        resolve_thickness(image, volume, geometry)


@pytest.mark.parametrize(
    ("record", "key", "message"),
    [
        ({"SliceThickness": "3mm"}, "SliceThickness", "not a number"),
        ({"SliceThickness": True}, "SliceThickness", "not a number"),
        ({"SliceThickness": 0}, "SliceThickness", "not a positive length"),
        ({"SliceThickness": -3.0}, "SliceThickness", "not a positive length"),
        ({"SliceThickness": 3.0, "SpacingBetweenSlices": "x"}, "SpacingBetweenSlices", "not a number"),
        ({"SliceThickness": 3.0, "SpacingBetweenSlices": 0.0}, "SpacingBetweenSlices", "not a positive length"),
    ],
)
def test_invalid_sidecar_values(image: Path, record: dict, key: str, message: str) -> None:
    volume, geometry = thick_volume()
    side = write_sidecar(image, record)
    with pytest.raises(MrisrInputError, match=message) as info:
        resolve_thickness(image, volume, geometry)
    assert key in str(info.value) and str(side) in str(info.value)


def test_thickness_beyond_three_separations(image: Path) -> None:
    volume, geometry = thick_volume(separation=4.0)
    write_sidecar(image, {"SliceThickness": 12.5})
    with pytest.raises(MrisrInputError, match="exceeds 3 x the slice separation 4 mm") as info:
        resolve_thickness(image, volume, geometry)
    assert "SliceThickness" in str(info.value)
    # exactly 3 x is accepted
    write_sidecar(image, {"SliceThickness": 12.0})
    assert resolve_thickness(image, volume, geometry).thickness_mm == 12.0


def test_spacing_contradicting_the_header(image: Path) -> None:
    volume, geometry = thick_volume(separation=4.0)
    write_sidecar(image, {"SliceThickness": 3.0, "SpacingBetweenSlices": 5.0})
    with pytest.raises(MrisrInputError, match="SpacingBetweenSlices' = 5 mm contradicts the NIfTI slice separation 4"):
        resolve_thickness(image, volume, geometry)
    # within 10 %: accepted
    write_sidecar(image, {"SliceThickness": 3.0, "SpacingBetweenSlices": 4.3})
    assert resolve_thickness(image, volume, geometry).thickness_source == "sidecar"


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), 13.0])
def test_invalid_argument(image: Path, value: float) -> None:
    volume, geometry = thick_volume(separation=4.0)
    with pytest.raises(MrisrInputError, match="given slice thickness"):
        resolve_thickness(image, volume, geometry, thickness_mm=value)


@pytest.mark.parametrize("value", [-2.0, 20.0, "thick"])
def test_invalid_estimate(image: Path, value: object, monkeypatch: pytest.MonkeyPatch) -> None:
    volume, geometry = thick_volume(separation=4.0)
    fake_estimator(monkeypatch, value)
    with pytest.raises(MrisrInputError, match="estimated slice thickness"):
        resolve_thickness(image, volume, geometry, estimate=True)


def test_simulated_acquisition_sidecar_round_trip(image: Path) -> None:
    """``write_acquisition_sidecar`` writes what the thickness chain reads (thickness and separation), keeps keys."""
    volume, geometry = thick_volume(separation=4.0)
    write_sidecar(image, {"EchoTime": 0.1})
    write_acquisition_sidecar(image, thickness_mm=3.0, separation_mm=4.0)
    assert read_sidecar(sidecar_path(image)) == {"EchoTime": 0.1, "SliceThickness": 3.0, "SpacingBetweenSlices": 4.0}
    res = resolve_thickness(image, volume, geometry, estimate=True)
    assert (res.thickness_mm, res.thickness_source) == (3.0, "sidecar")
