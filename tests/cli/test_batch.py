"""Batch inference: glob / manifest / BIDS inputs, verified resume, isolated failures, summary and exit code."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import file_digest, run_tool


def make_lr(path: Path, seed: int, slices: int = 6) -> None:
    rng = np.random.default_rng(seed)
    data = (rng.random((24, 20, slices)) + 1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])), path)


@pytest.fixture
def bids(tmp_path: Path) -> Path:
    root = tmp_path / "bids"
    make_lr(root / "sub-01" / "anat" / "sub-01_T2w.nii.gz", 1)
    make_lr(root / "sub-02" / "anat" / "sub-02_T2w.nii.gz", 2)
    make_lr(root / "derivatives" / "x" / "sub-01_T2w.nii.gz", 3)  # not an input
    bad = root / "sub-03" / "anat" / "sub-03_T2w.nii.gz"
    bad.parent.mkdir(parents=True)
    good = (root / "sub-01" / "anat" / "sub-01_T2w.nii.gz").read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # truncated gzip
    return root


def summary(output_dir: Path) -> dict[str, dict[str, str]]:
    return {Path(r["input"]).name: r for r in csv.DictReader((output_dir / "batch_summary.csv").open())}


def test_batch_isolates_failures_and_resumes_verified(bids: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    digests = {p: file_digest(p) for p in bids.rglob("*.nii.gz")}
    args = ["infer.py", f"inputs={bids}", f"output_dir={out}", "model=cubic", f"paths.runs_dir={tmp_path}"]
    first = run_tool(args)
    assert first.returncode == 1, first.stderr[-2000:]
    rows = summary(out)
    assert set(rows) == {"sub-01_T2w.nii.gz", "sub-02_T2w.nii.gz", "sub-03_T2w.nii.gz"}
    assert rows["sub-01_T2w.nii.gz"]["status"] == "done" and rows["sub-02_T2w.nii.gz"]["status"] == "done"
    assert rows["sub-03_T2w.nii.gz"]["status"] == "failed" and "truncated" in rows["sub-03_T2w.nii.gz"]["reason"]
    assert "failed 1" in first.stdout
    sr = out / "sub-01" / "anat" / "sub-01_T2w_sr.nii.gz"
    assert nib.load(sr).shape == (24, 20, 18)
    assert not (out / "sub-03" / "anat" / "sub-03_T2w_sr.nii.gz").exists()
    assert not list(out.rglob(".*.nii.gz*"))  # no temporary leftovers

    # Second run: verified outputs are skipped; a damaged output is redone.
    sr2 = out / "sub-02" / "anat" / "sub-02_T2w_sr.nii.gz"
    sr2.write_bytes(sr2.read_bytes()[:100])
    second = run_tool(args)
    assert second.returncode == 1
    rows = summary(out)
    assert rows["sub-01_T2w.nii.gz"]["status"] == "skipped"
    assert rows["sub-02_T2w.nii.gz"]["status"] == "redone" and "does not match" in rows["sub-02_T2w.nii.gz"]["reason"]
    assert nib.load(sr2).shape == (24, 20, 18)
    assert {p: file_digest(p) for p in bids.rglob("*.nii.gz")} == digests  # inputs untouched


def test_batch_from_manifest_and_glob(bids: Path, tmp_path: Path) -> None:
    shutil.rmtree(bids / "sub-03")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"input,output\n{bids / 'sub-01/anat/sub-01_T2w.nii.gz'},one.nii.gz\n")
    out = tmp_path / "m"
    proc = run_tool(
        ["infer.py", f"inputs={manifest}", f"output_dir={out}", "model=linear", f"paths.runs_dir={tmp_path}"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "one.nii.gz").is_file() and (out / "one.mrisr.json").is_file()
    out_glob = tmp_path / "g"
    proc = run_tool(
        [
            "infer.py",
            f"inputs={bids}/sub-*/anat/*.nii.gz",
            f"output_dir={out_glob}",
            "model=nearest",
            f"paths.runs_dir={tmp_path}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(out_glob.rglob("*_sr.nii.gz"))) == 2
