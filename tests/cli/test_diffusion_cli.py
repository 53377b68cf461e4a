"""The diffusion smoke experiment on the command line: train.py writes a checkpoint that infer.py rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, run_tool
from support.volumes import axial_volume


def find_checkpoint(runs_dir: Path) -> Path:
    ckpts = sorted(runs_dir.glob("train/*/checkpoints/last.ckpt"))
    assert ckpts, f"no checkpoint under {runs_dir}"
    return ckpts[-1]


@pytest.fixture(scope="module")
def smoke_checkpoint(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs_dir = tmp_path_factory.mktemp("runs")
    proc = run_tool(
        [
            "train.py",
            "experiment=palette_smoke",
            f"paths.runs_dir={runs_dir}",
            "trainer.max_steps=2",
            "trainer.max_epochs=1",
            "data.patches_per_epoch=16",
            "data.val_patches=2",
            "test=false",
        ],
        extra_env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return find_checkpoint(runs_dir)


def test_smoke_checkpoint_reloads_in_infer_and_overlays_the_input(smoke_checkpoint: Path, tmp_path: Path) -> None:
    stored = torch.load(smoke_checkpoint, map_location="cpu", weights_only=False)
    assert stored["mrisr_config"]["model"]["_target_"] == "mrisr.systems.diffusion.DiffusionSR"
    assert any(k.startswith("ema.module.") for k in stored["state_dict"])
    volume = axial_volume((16, 14, 5))
    lr_path = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(volume.data, volume.affine), lr_path)
    out, cubic = tmp_path / "sr.nii.gz", tmp_path / "cubic.nii.gz"
    common = [f"input={lr_path}", f"paths.runs_dir={tmp_path}", "device=cpu"]
    proc = run_tool(
        ["infer.py", *common, f"output={out}", f"ckpt_path={smoke_checkpoint}", "model.sampler.steps=2",
         "model.samples=2"]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_tool(["infer.py", *common, f"output={cubic}", "model=cubic"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    sr, ref = nib.load(out), nib.load(cubic)
    assert sr.shape == ref.shape == (16, 14, 15)
    np.testing.assert_allclose(sr.affine, ref.affine, atol=1e-6)
    assert np.isfinite(sr.get_fdata()).all()
    sd_path = tmp_path / "sr_sd.nii.gz"
    sd = nib.load(sd_path)
    assert sd.shape == sr.shape and (sd.get_fdata() >= 0).all()
    sidecar = json.loads((tmp_path / "sr.mrisr.json").read_text())
    assert sidecar["uncertainty"] == str(sd_path) and sidecar["method"] == "palette_tiny"


DIFFUSION_ZOO = sorted(p.stem for p in (REPO_ROOT / "conf" / "model" / "zoo").glob("palette*.yaml"))


@pytest.mark.parametrize("name", DIFFUSION_ZOO)
def test_shipped_diffusion_model_runs_by_name_on_a_real_thick_scan_and_overlays_it(
    name: str, shared_data: Path, tmp_path: Path
) -> None:
    """``infer.py model=zoo/<name>`` on the real 7.5 mm axial T2 (a block of 16 sagittal planes × 96 A–P rows around
    the centre, cut with its exact affine, to keep the test short): the output lies on the input's isotropic grid
    and overlays it in world coordinates, and differs from cubic interpolation (the model ran)."""
    from mrisr.data.pairs import crop_volume
    from mrisr.io.nifti import load_volume

    thick = load_volume(shared_data / "thick" / "t2_axial_7p5mm_ms.nii.gz")  # 320 × 256 × 19, 0.6875 mm in-plane
    block = crop_volume(crop_volume(thick, 0, 152, 168), 1, 80, 176)
    lr_path = tmp_path / "block.nii.gz"
    nib.save(nib.Nifti1Image(block.data, block.affine), lr_path)
    out, cubic = tmp_path / "sr.nii.gz", tmp_path / "cubic.nii.gz"
    common = [f"input={lr_path}", f"paths.runs_dir={tmp_path}", "device=cpu"]
    proc = run_tool(["infer.py", *common, f"output={out}", f"model=zoo/{name}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_tool(["infer.py", *common, f"output={cubic}", "model=cubic"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lr, sr, ref = nib.load(lr_path), nib.load(out), nib.load(cubic)
    assert sr.shape == ref.shape == (16, 96, round(19 * 7.5 / 0.6875))
    np.testing.assert_allclose(sr.affine, ref.affine, atol=1e-6)
    centre = lambda img: img.affine @ np.r_[(np.array(img.shape[:3]) - 1) / 2, 1]  # noqa: E731
    np.testing.assert_allclose(centre(sr), centre(lr), atol=1e-4)
    np.testing.assert_allclose(sr.affine[:3, :2], lr.affine[:3, :2], atol=1e-7)
    data, base = np.asarray(sr.dataobj, dtype=np.float64), np.asarray(ref.dataobj, dtype=np.float64)
    assert np.isfinite(data).all()
    assert np.abs(data - base).mean() > 1e-3 * np.abs(base).mean()
