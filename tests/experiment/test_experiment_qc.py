"""QC pages of the paper experiments (mrisr.experiment.qc): scores from the rows, the forward residual, the cord."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import phantom
from mrisr.api import simulate, super_resolve
from mrisr.eval.scoring import CordReference, score_volume
from mrisr.experiment.qc import experiment_qc_page
from mrisr.io.nifti import Volume, as_volume
from mrisr.report.qc import RECORD_NAME, write_qc_index

AXIS = 2


class TubeSegmenter:
    """A cord 'segmenter' that returns a fixed tube (radius 4 mm) along the last axis of any 1 mm grid."""

    name = "tube"

    def segment(self, volume: Volume) -> Volume:
        x, y = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in volume.shape[:2]), indexing="ij")
        disc = (x**2 + y**2 <= 16.0).astype(np.float32)
        return Volume(np.repeat(disc[:, :, None], volume.shape[2], axis=2), volume.affine)


class FailingSegmenter:
    name = "failing"

    def segment(self, volume: Volume) -> Volume:
        raise ValueError("no cord found")


@pytest.fixture(scope="module")
def case() -> dict:
    hr = Volume(phantom((40, 36, 48)), np.eye(4))
    lr = as_volume(simulate(hr, thickness_mm=3.0, separation_mm=4.0, axis=AXIS))
    sr = as_volume(super_resolve(lr, model="cubic", axis=AXIS))
    rows = score_volume(sr, hr, "sub1", "3||1", "cubic", seconds=1.5)
    return {"hr": hr, "lr": lr, "sr": sr, "rows": rows}


def record_of(page: Path) -> dict:
    return json.loads((page.parent / RECORD_NAME).read_text())


def test_page_shows_the_rows_scores_and_a_forward_residual(case: dict, tmp_path: Path):
    page = experiment_qc_page(tmp_path, case["lr"], case["sr"], case["rows"], AXIS, 3.0)
    qc = record_of(page)
    record = qc["record"]
    assert (record["subject"], record["setting"], record["model"]) == ("sub1", "3||1", "cubic")
    assert record["scores"] == pytest.approx({r["metric"]: r["value"] for r in case["rows"]})
    assert record["thickness_mm"] == 3.0 and record["seconds"] == 1.5
    # Cubic interpolation of a smooth phantom re-acquires its input closely, but not exactly.
    assert 25.0 < qc["summary"]["forward_psnr_db"] < 80.0
    assert qc["windows"]["residual"][1] > 0
    assert (page.parent / "centre_axial_residual.png").is_file()
    assert not (page.parent / "csa.png").exists()
    index = write_qc_index(tmp_path).read_text()
    assert page.parent.name in index


def test_unknown_thickness_is_taken_as_the_separation_and_said(case: dict, tmp_path: Path):
    record = record_of(experiment_qc_page(tmp_path, case["lr"], case["sr"], case["rows"], AXIS, None))["record"]
    assert record["thickness_mm"] == pytest.approx(4.0)
    assert "T = S" in record["thickness_source"]


def test_a_scored_cord_gives_an_outline_a_csa_plot_and_landmark_views(case: dict, tmp_path: Path):
    cord = CordReference(segmenter=TubeSegmenter(), c2_mm=np.array([20.0, 18.0, 24.0]))
    page = experiment_qc_page(tmp_path, case["lr"], case["sr"], case["rows"], AXIS, 3.0, cord=cord)
    qc = record_of(page)
    assert qc["csa"] == "csa.png" and (page.parent / "csa.png").is_file()
    assert sorted(p.name for p in page.parent.glob("landmark_*_mask.png"))
    assert not qc["warnings"]


def test_a_failed_segmentation_is_a_warning_on_the_page(case: dict, tmp_path: Path):
    cord = CordReference(segmenter=FailingSegmenter(), c2_mm=np.array([20.0, 18.0, 24.0]))
    qc = record_of(experiment_qc_page(tmp_path, case["lr"], case["sr"], case["rows"], AXIS, 3.0, cord=cord))
    assert any("no cord found" in w for w in qc["warnings"])


def test_rows_of_two_outputs_are_refused(case: dict, tmp_path: Path):
    other = [{**r, "method": "other"} for r in case["rows"]]
    with pytest.raises(ValueError, match="exactly one output"):
        experiment_qc_page(tmp_path, case["lr"], case["sr"], [*case["rows"], *other], AXIS, 3.0)
