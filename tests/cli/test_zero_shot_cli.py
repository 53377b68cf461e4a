"""``infer.py`` with a per-volume (zero-shot) model: the fit on the command line, budgets, real thick scans."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import run_tool
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import as_volume


def test_infer_cli_fits_per_volume_and_logs_the_fit(t2_crop_lr: tuple, tmp_path: Path) -> None:
    _, lr = t2_crop_lr
    lr_path, out = tmp_path / "lr.nii.gz", tmp_path / "sr.nii.gz"
    nib.save(lr, lr_path)
    proc = run_tool(
        [
            "infer.py",
            f"input={lr_path}",
            f"output={out}",
            "model=smore_smoke",
            "thickness=3",
            "budget.max_steps=8",
            "budget.max_time=60",
            f"paths.runs_dir={tmp_path}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert nib.load(out).shape == (60, 55, 52)
    record = json.loads((tmp_path / "sr.mrisr.json").read_text())
    assert record["fit"]["steps"] == 8 and record["fit"]["thickness_mm"] == 3.0
    rows = list(csv.DictReader((tmp_path / "sr.fit.csv").open()))
    assert len(rows) == 8 and all(float(r["loss"]) > 0 for r in rows)


def test_budget_options_are_refused_for_interpolation(t2_crop_lr: tuple, tmp_path: Path) -> None:
    _, lr = t2_crop_lr
    lr_path = tmp_path / "lr.nii.gz"
    nib.save(lr, lr_path)
    proc = run_tool(["infer.py", f"input={lr_path}", f"output={tmp_path / 'o.nii.gz'}", "model=cubic", "thickness=3"])
    assert proc.returncode != 0 and "per volume" in proc.stderr and not (tmp_path / "o.nii.gz").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "relative_path",
    [
        "thick/t2_axial_7p5mm_ms.nii.gz",  # axial 7.5 mm, in-plane 0.688 mm: s ≈ 10.9
        "brain/pd_axial_2p4mm.nii.gz",  # brain, s ≈ 2.8 (non-integer)
    ],
)
def test_infer_cli_zero_shot_on_real_thick_slice_volumes(shared_data: Path, tmp_path: Path, relative_path: str) -> None:
    """``infer.py model=smore…`` on real thick-slice acquisitions: isotropic output grid, same field of view."""
    source = shared_data / relative_path
    before = source.read_bytes()
    out = tmp_path / "sr.nii.gz"
    proc = run_tool(
        [
            "infer.py",
            f"input={source}",
            f"output={out}",
            "model=smore_smoke",
            "budget.max_steps=10",
            f"paths.runs_dir={tmp_path}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert source.read_bytes() == before
    lr, sr = nib.load(source), nib.load(out)
    geometry = detect_slice_axis(as_volume(source))
    axis, inplane = geometry.axis, geometry.inplane_spacing_mm
    n_out = round(lr.shape[axis] * geometry.separation_mm / inplane)
    assert sr.shape == tuple(n_out if d == axis else lr.shape[d] for d in range(3))
    # Through-plane spacing = in-plane spacing; the grid is centred on the LR field of view.
    np.testing.assert_allclose(np.linalg.norm(sr.affine[:3, axis]), inplane, rtol=1e-6)
    for d in range(3):
        if d != axis:
            np.testing.assert_allclose(sr.affine[:3, d], lr.affine[:3, d], atol=1e-6)
    centre = lambda a, n: (a @ np.r_[(np.array(n) - 1) / 2, 1])[:3]  # noqa: E731
    np.testing.assert_allclose(centre(sr.affine, sr.shape), centre(lr.affine, lr.shape), atol=1e-4)
    data = np.asarray(sr.dataobj, dtype=np.float32)
    assert np.isfinite(data).all() and data.std() > 0
