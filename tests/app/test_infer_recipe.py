"""infer(cfg) in process: resume keyed on the recipe, replay, checks before the fit, starved fits, output dtype and
clip, label maps, all-negative images, strict keys, QC report and BIDS derivatives."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrisr.app.infer import infer, sidecar_path
from mrisr.core.errors import MrisrInputError
from mrisr.systems import zero_shot
from mrisr.utils.config import compose


def make_lr(path: Path, seed: int = 0, shape: tuple[int, int, int] = (28, 24, 8), offset: float = 1.0) -> Path:
    """A smooth thick-slice volume (3 mm slices on 1 mm in-plane) with some texture."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    data = offset + np.sin(x / 4) * np.cos(y / 5) + 0.5 * np.cos(z / 2) + 0.1 * rng.random(shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([1.0, 1.0, 3.0, 1.0])), path)
    return path


def run(*overrides: str) -> int:
    return infer(compose("infer", list(overrides)))


def batch_rows(output_dir: Path) -> dict[str, dict[str, str]]:
    return {Path(r["input"]).name: r for r in csv.DictReader((output_dir / "batch_summary.csv").open())}


def sidecar(path: Path) -> dict:
    return json.loads(sidecar_path(path).read_text())


# ------------------------------------------------------------------------------------------------ resume
def test_resume_is_keyed_on_the_whole_recipe(tmp_path: Path) -> None:
    for k in range(2):
        make_lr(tmp_path / "in" / f"v{k}.nii.gz", seed=k)
    out = tmp_path / "out"
    common = [f"inputs={tmp_path / 'in'}", f"output_dir={out}", "forward_check=false", "progress=false"]
    assert run(*common, "model=cubic") == 0
    assert {r["status"] for r in batch_rows(out).values()} == {"done"}
    assert run(*common, "model=cubic") == 0
    assert {r["status"] for r in batch_rows(out).values()} == {"skipped"}
    # Another model: redone, and the sidecar says which model made the file now.
    assert run(*common, "model=linear") == 0
    rows = batch_rows(out)
    assert {r["status"] for r in rows.values()} == {"redone"} and "another recipe" in rows["v0.nii.gz"]["reason"]
    assert sidecar(out / "v0_sr.nii.gz")["recipe"]["method"] == "linear"
    # Another option, another seed: redone too.
    assert run(*common, "model=linear", "target_spacing_mm=1.5") == 0
    assert {r["status"] for r in batch_rows(out).values()} == {"redone"}
    assert run(*common, "model=linear", "target_spacing_mm=1.5", "seed=3") == 0
    assert {r["status"] for r in batch_rows(out).values()} == {"redone"}
    # existing=keep refuses to replace an output of another recipe, says so and exits non-zero.
    assert run(*common, "model=cubic", "existing=keep") == 1
    rows = batch_rows(out)
    assert {r["status"] for r in rows.values()} == {"refused"} and "existing=keep" in rows["v1.nii.gz"]["reason"]
    assert sidecar(out / "v1_sr.nii.gz")["recipe"]["method"] == "linear"


# ------------------------------------------------------------------------------------------------ fail early
def test_an_output_folder_that_cannot_exist_fails_before_a_zero_shot_fit(tmp_path: Path) -> None:
    source = make_lr(tmp_path / "lr.nii.gz")
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder is needed")
    cfg = compose("infer", [f"input={source}", f"output={blocker / 'sub' / 'sr.nii.gz'}", "model=smore_fast"])
    started = time.perf_counter()
    with pytest.raises(MrisrInputError, match="is a file, not a folder"):
        infer(cfg)
    assert time.perf_counter() - started < 5.0  # the 60 s fit never starts


def test_batch_checks_every_job_before_the_model_and_isolates_a_bad_one(tmp_path: Path) -> None:
    good = make_lr(tmp_path / "in" / "good.nii.gz")
    bad = tmp_path / "in" / "bad.nii.gz"
    bad.write_bytes(good.read_bytes()[:50])
    (tmp_path / "in" / "good.json").write_text("{not json")  # a broken BIDS sidecar is refused before any fit
    make_lr(tmp_path / "in" / "fine.nii.gz", seed=2)
    out = tmp_path / "out"
    code = run(f"inputs={tmp_path / 'in'}", f"output_dir={out}", "model=cubic", "forward_check=false")
    rows = batch_rows(out)
    assert code == 1
    assert rows["bad.nii.gz"]["status"] == "failed" and rows["good.nii.gz"]["status"] == "failed"
    assert "not valid JSON" in rows["good.nii.gz"]["reason"]
    assert rows["fine.nii.gz"]["status"] == "done"


# ------------------------------------------------------------------------------------------------ replay
def test_replay_reproduces_a_step_budgeted_zero_shot_output_bit_for_bit(tmp_path: Path) -> None:
    source = make_lr(tmp_path / "lr.nii.gz", shape=(32, 30, 9))
    first = tmp_path / "sr.nii.gz"
    assert run(f"input={source}", f"output={first}", "model=smore_smoke", "budget.max_steps=6", "thickness=2.5") == 0
    record = sidecar(first)
    assert record["model"]["max_steps"] == 6 and record["model"]["max_time_s"] is None  # bounded by steps alone
    assert record["thickness_source"] == "argument" and record["fit"]["steps"] == 6
    assert record["recipe"]["mrisr_version"] and record["recipe_sha256"]
    again = tmp_path / "again.nii.gz"
    assert run(f"replay={sidecar_path(first)}", f"output={again}") == 0
    np.testing.assert_array_equal(np.asarray(nib.load(again).dataobj), np.asarray(nib.load(first).dataobj))
    assert sidecar(again)["recipe_sha256"] == record["recipe_sha256"]
    with pytest.raises(MrisrInputError, match="overwrite the output it reproduces"):
        run(f"replay={sidecar_path(first)}", f"output={first}")


# ------------------------------------------------------------------------------------------------ starved fit
def test_a_starved_fit_is_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps made artificially slow after the step rate was measured: far fewer steps than the budget allowed."""
    source = make_lr(tmp_path / "lr.nii.gz", shape=(32, 30, 9))
    real = zero_shot.SelfTrainingSystem.training_step

    def slow(self: zero_shot.SelfTrainingSystem, batch: dict, batch_idx: int) -> object:
        time.sleep(0.5)
        return real(self, batch, batch_idx)

    monkeypatch.setattr(zero_shot.SelfTrainingSystem, "training_step", slow)
    out = tmp_path / "sr.nii.gz"
    budget = ["budget.max_time=6", "budget.max_steps=100000"]
    assert run(f"input={source}", f"output={out}", "model=smore_smoke", *budget, "thickness=2.5") == 0
    record = sidecar(out)
    assert record["fit"]["starved"] is True and record["fit"]["steps"] < 0.25 * record["fit"]["expected_steps"]
    assert any("fewer than 25%" in w for w in record["warnings"])


# ------------------------------------------------------------------------------------------------ outputs
def test_int16_output_keeps_the_input_dtype_and_scaling(tmp_path: Path) -> None:
    x, y, z = np.meshgrid(*(np.arange(n) for n in (24, 20, 8)), indexing="ij")
    data = (1500 + 1400 * np.sign(np.sin(x / 3) * np.cos(y / 4 + z))).astype(np.int16)  # sharp edges: cubic rings
    image = nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0]))
    image.header.set_data_dtype(np.int16)
    image.header.set_slope_inter(0.5, 10.0)
    source = tmp_path / "int16.nii.gz"
    nib.save(image, source)
    float_out, int_out = tmp_path / "float.nii.gz", tmp_path / "int.nii.gz"
    assert run(f"input={source}", f"output={float_out}", "model=cubic", "forward_check=false") == 0
    args = [f"input={source}", f"output={int_out}", "model=cubic", "forward_check=false"]
    assert run(*args, "output_dtype=input", "clip=input_range") == 0
    stored = nib.load(int_out)
    assert stored.get_data_dtype() == np.int16 and (stored.dataobj.slope, stored.dataobj.inter) == (0.5, 10.0)
    floats = np.asarray(nib.load(float_out).dataobj, dtype=np.float64)
    lo, hi = data.min() * 0.5 + 10, data.max() * 0.5 + 10
    expected = np.clip(floats, lo, hi)
    np.testing.assert_allclose(np.asarray(stored.dataobj, dtype=np.float64), expected, atol=0.25 + 1e-6)
    assert float(floats.min()) < lo or float(floats.max()) > hi  # cubic over- or undershoots: clip had work to do
    assert sidecar(int_out)["output_storage"]["stored_dtype"] == "int16"


def test_label_map_input_warns_and_suggests_nearest(tmp_path: Path) -> None:
    mask = (np.random.default_rng(1).random((20, 20, 8)) > 0.5).astype(np.float32)
    source = tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(mask, np.diag([1.0, 1.0, 3.0, 1.0])), source)
    out = tmp_path / "sr.nii.gz"
    assert run(f"input={source}", f"output={out}", "model=cubic", "forward_check=false") == 0
    assert any("label map" in w and "model=nearest" in w for w in sidecar(out)["warnings"])
    nearest = tmp_path / "nn.nii.gz"
    assert run(f"input={source}", f"output={nearest}", "model=nearest", "forward_check=false") == 0
    assert sidecar(nearest)["warnings"] == []


def test_an_all_negative_image_goes_through_cubic(tmp_path: Path) -> None:
    source = make_lr(tmp_path / "neg.nii.gz", offset=-5.0)
    assert np.asarray(nib.load(source).dataobj).max() < 0
    out = tmp_path / "sr.nii.gz"
    assert run(f"input={source}", f"output={out}", "model=cubic") == 0
    assert np.asarray(nib.load(out).dataobj).max() < 0


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [("+thicknes=3", "thickness"), ("thicknes=3", "thickness"), ("budget.max_step=4", "max_steps")],
)
def test_an_unknown_key_is_refused_with_the_nearest_valid_key(override: str, suggestion: str) -> None:
    with pytest.raises(MrisrInputError, match=f"did you mean '.*{suggestion}'") as err:
        compose("infer", ["input=a.nii.gz", "output=b.nii.gz", override])
    assert "+thicknes" not in str(err.value).split("Fix:")[1]  # never advice to add a key nothing reads


# ------------------------------------------------------------------------------------------------ QC and BIDS
def test_qc_report_for_single_and_batch_runs(tmp_path: Path) -> None:
    for k in range(2):
        make_lr(tmp_path / "in" / f"v{k}.nii.gz", seed=k)
    qc = tmp_path / "qc"
    out = tmp_path / "out"
    assert run(f"inputs={tmp_path / 'in'}", f"output_dir={out}", "model=cubic", f"qc={qc}") == 0
    pages = sorted(p.parent.name for p in qc.glob("*/qc.json"))
    assert pages == ["v0_sr", "v1_sr"]
    record = json.loads((qc / "v0_sr" / "qc.json").read_text())
    assert record["record"]["mrisr_version"] and "psnr" in record["record"]["forward_consistency"]
    index = (qc / "index.html").read_text()
    assert "v0_sr" in index and "v1_sr" in index
    # A resumed batch skips its verified outputs and keeps the report complete; a single run adds its page.
    assert run(f"inputs={tmp_path / 'in'}", f"output_dir={out}", "model=cubic", f"qc={qc}") == 0
    assert {r["status"] for r in batch_rows(out).values()} == {"skipped"}
    single = tmp_path / "single_sr.nii.gz"
    assert run(f"input={tmp_path / 'in' / 'v0.nii.gz'}", f"output={single}", "model=linear", f"qc={qc}") == 0
    index = (qc / "index.html").read_text()
    assert all(name in index for name in ("v0_sr", "v1_sr", "single_sr"))


def test_bids_dataset_in_derivatives_out(shared_data: Path, tmp_path: Path) -> None:
    """A toy BIDS dataset of the shared thick scans (dcm2niix-style sidecars) gives a derivatives dataset."""
    from mrisr.io.bids import parse_bids_name

    root = tmp_path / "bids"
    (root).mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "toy", "BIDSVersion": "1.10.0"}))
    scans = {"01": "t2_axial_7p5mm_ms.nii.gz", "02": "t1w_axial_5mm.nii.gz"}
    for label, name in scans.items():
        anat = root / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        image = nib.load(shared_data / "thick" / name)
        target = anat / f"sub-{label}_T2w.nii.gz"
        nib.save(image, target)
        spacing = float(image.header.get_zooms()[2])
        (anat / f"sub-{label}_T2w.json").write_text(
            json.dumps({"SliceThickness": spacing, "SpacingBetweenSlices": spacing, "EchoTime": 0.1})
        )
    out = root / "derivatives" / "mrisr"
    common = [f"inputs={root}", f"output_dir={out}", "model=cubic", "participant_label=01", "progress=false"]
    assert run(*common) == 0
    derived = out / "sub-01" / "anat" / "sub-01_rec-SR_T2w.nii.gz"
    assert derived.is_file() and not (out / "sub-02").exists()
    assert parse_bids_name(derived).entities["rec"] == "SR"
    side = json.loads(derived.with_name("sub-01_rec-SR_T2w.json").read_text())
    assert side["Sources"] == ["bids:raw:sub-01/anat/sub-01_T2w.nii.gz"]
    assert side["SliceThickness"] == pytest.approx(float(nib.load(derived).header.get_zooms()[2]))
    assert side["EchoTime"] == 0.1 and side["mrisr"]["recipe"]["method"] == "cubic"
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "mrisr"
    assert sidecar(derived)["forward_consistency"]["thickness_source"] == "sidecar"
    assert run(*common) == 0
    assert {r["status"] for r in batch_rows(out).values()} == {"skipped"}
