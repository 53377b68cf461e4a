"""Cord segmentation backends (docs/evaluation.md §4): classical, provided, SCT command line, ``mrisr.cli.segment``."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import REPO_ROOT
from mrisr.core.errors import MrisrInputError
from mrisr.eval.cord import compute_mucca, csa_per_slice, landmark_point
from mrisr.eval.lesions import dice
from mrisr.io import Volume, load_volume, save_volume
from mrisr.segmentation import CordSegmenter
from mrisr.segmentation.classical import ClassicalSegmenter, cord_contour, polygon_coverage
from mrisr.segmentation.provided import ProvidedSegmenter
from mrisr.segmentation.sct import SctSegmenter
from mrisr.utils.cli import run_cli

CORD_A, CORD_B = 5.0, 3.5  # cord semi-axes (mm): area π·a·b = 54.98 mm²


def spine_phantom(tilt_deg: float = 0.0, spacing: float = 1.0, seed: int = 0) -> tuple[Volume, np.ndarray]:
    """T2w-like phantom: dark elliptic cord (5 × 3.5 mm) inside a bright CSF tube (9 × 7 mm) in grey tissue.

    The tube axis is tilted by ``tilt_deg`` about the RL axis. Partial volume by 3³ supersampling, mild blur and
    noise. Returns the image (RAS, 1 mm) and the true cord fraction per voxel.
    """
    n = (40, 44, 60)
    t = math.tan(math.radians(tilt_deg))
    acc_cord = np.zeros(n, np.float32)
    acc_csf = np.zeros(n, np.float32)
    offsets = (np.arange(3) + 0.5) / 3 - 0.5
    for ox in offsets:
        for oy in offsets:
            for oz in offsets:
                x, y, z = np.meshgrid(
                    (np.arange(n[0]) + ox - n[0] / 2) * spacing,
                    (np.arange(n[1]) + oy - n[1] / 2) * spacing,
                    (np.arange(n[2]) + oz - n[2] / 2) * spacing,
                    indexing="ij",
                    sparse=True,
                )
                # Coordinates across the tilted axis (direction (0, t, 1)).
                v = (y - t * z) / math.sqrt(1 + t * t)
                acc_cord += (x / CORD_A) ** 2 + (v / CORD_B) ** 2 <= 1
                acc_csf += (x / 9.0) ** 2 + (v / 7.0) ** 2 <= 1
    cord, csf = acc_cord / 27, acc_csf / 27
    image = 0.25 + 0.75 * (csf - cord) + 0.35 * cord
    from scipy import ndimage

    image = ndimage.gaussian_filter(image, 0.5) + np.random.default_rng(seed).normal(0, 0.01, n)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    return Volume(image.astype(np.float32) * 1000, affine), cord


# ------------------------------------------------------------------------------------------ classical, synthetic


@pytest.mark.parametrize("tilt", [0.0, 20.0])
def test_classical_recovers_phantom_cord_area(tilt: float) -> None:
    image, truth = spine_phantom(tilt)
    seg = ClassicalSegmenter(level_fraction=0.5, soft=True)
    assert isinstance(seg, CordSegmenter)
    mask = seg.segment(image)
    assert mask.shape == image.shape and np.allclose(mask.affine, image.affine)
    area = math.pi * CORD_A * CORD_B
    inner = slice(8, -8)
    measured = np.nanmean(csa_per_slice(mask.data, mask.affine).csa_mm2[inner])
    assert measured == pytest.approx(area, rel=0.05)
    # Without angle correction the tilted tube's oblique section is larger by 1/cos(tilt).
    oblique = np.nanmean(csa_per_slice(mask.data, mask.affine, angle_mode="none").csa_mm2[inner])
    assert oblique == pytest.approx(area / math.cos(math.radians(tilt)), rel=0.05)
    assert dice(mask.data[:, :, inner], truth[:, :, inner]) > 0.9
    assert set(seg.last_methods) <= {"rays", "contour"}


def test_contour_methods_agree_and_coverage_sums_to_polygon_area() -> None:
    image, _ = spine_phantom(0.0)
    plane = image.data[:, :, 30]
    rays = cord_contour(plane, (20.0, 22.0), (1.0, 1.0), method="rays")
    iso = cord_contour(plane, (20.0, 22.0), (1.0, 1.0), method="contour")
    assert rays.method == "rays" and iso.method == "contour"
    assert rays.area_mm2 == pytest.approx(math.pi * CORD_A * CORD_B, rel=0.06)
    assert iso.area_mm2 == pytest.approx(rays.area_mm2, rel=0.05)
    assert 0.5 < rays.eccentricity < 0.85  # ellipse 5 × 3.5: e = 0.714
    _, cov = polygon_coverage(rays.polygon, plane.shape, (1.0, 1.0), step_mm=0.1)
    assert cov.sum() == pytest.approx(rays.area_mm2, rel=0.01)
    # Anisotropic pixels: the same disk of radius 4 mm on a 0.5 × 2 mm grid.
    theta = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    disk = np.stack([20 + 8 * np.cos(theta), 10 + 2 * np.sin(theta)], axis=1)  # 4 mm radius in voxels
    _, cov = polygon_coverage(disk, (40, 20), (0.5, 2.0), step_mm=0.1)
    assert cov.sum() * 0.5 * 2.0 == pytest.approx(math.pi * 16, rel=0.01)


def test_classical_rejects_image_without_cord() -> None:
    flat = Volume(np.random.default_rng(0).normal(100, 1, (30, 30, 20)).astype(np.float32), np.eye(4))
    with pytest.raises(MrisrInputError):
        ClassicalSegmenter().segment(flat)


# ------------------------------------------------------------------------------------------ classical, real data


@pytest.mark.parametrize("subject", ["errsm_11", "errsm_18", "errsm_21"])
def test_classical_dice_and_c2_mucca_against_manual_masks(shared_data: Path, subject: str) -> None:
    base = shared_data / "spine_hr" / subject
    image = load_volume(base / "t2.nii.gz")
    manual = load_volume(base / "t2_manual_segmentation.nii.gz")
    labels = load_volume(base / "t2_landmarks_C2_T2_center.nii.gz", allow_constant=True)
    mask = ClassicalSegmenter().segment(image)
    assert dice(mask.data, manual.data) >= 0.85
    c2 = landmark_point(labels.data, labels.affine, 2)
    ours = compute_mucca(mask.data, mask.affine, c2_mm=c2)
    reference = compute_mucca(manual.data, manual.affine, c2_mm=c2)
    assert ours.status == "ok" and reference.status == "ok"
    assert abs(ours.mucca_mm2 / reference.mucca_mm2 - 1) < 0.05


# ------------------------------------------------------------------------------------------ provided


def test_provided_segmenter_finds_mask_beside_image_and_resamples(shared_data: Path, tmp_path: Path) -> None:
    base = shared_data / "fixtures" / "t2_crop"
    image = load_volume(base / "t2.nii.gz")
    manual = load_volume(base / "t2_seg-manual.nii.gz")
    mask = ProvidedSegmenter().segment(image)
    np.testing.assert_array_equal(mask.data, manual.data)
    # A mask stored on a flipped grid is brought back onto the image grid exactly.
    flipped = manual.affine @ np.array([[-1, 0, 0, manual.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    path = save_volume(Volume(manual.data[::-1].copy(), flipped), tmp_path / "flipped.nii.gz")
    np.testing.assert_array_equal(ProvidedSegmenter(path=str(path)).segment(image).data, manual.data)
    lone = Volume(image.data, image.affine, path=tmp_path / "lonely.nii.gz")
    with pytest.raises(MrisrInputError, match=r"segmenter\.path"):
        ProvidedSegmenter().segment(lone)


# ------------------------------------------------------------------------------------------ SCT command line


def test_sct_backend_reports_missing_toolbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    volume = Volume(np.ones((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(MrisrInputError, match="not on PATH"):
        SctSegmenter().segment(volume)


def test_sct_backend_runs_command_line_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in ``sct_deepseg_sc`` on PATH checks the subprocess contract (arguments, output, cache)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    script = bin_dir / "sct_deepseg_sc"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{calls}"\n'
        'while [ $# -gt 0 ]; do case "$1" in -o) out="$2"; shift;; esac; shift; done\n'
        'cp "$FAKE_SCT_MASK" "$out"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    data = np.zeros((8, 8, 6), np.float32)
    data[3:5, 3:5, :] = 1
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    fake = save_volume(Volume(data, affine), tmp_path / "fake_mask.nii.gz")
    monkeypatch.setenv("FAKE_SCT_MASK", str(fake))
    image = Volume(np.random.default_rng(0).random((8, 8, 6)).astype(np.float32), affine)
    seg = SctSegmenter(cache_dir=str(tmp_path / "cache"))
    mask = seg.segment(image)
    np.testing.assert_array_equal(mask.data, data)
    assert "-c t2" in calls.read_text()
    again = seg.segment(image)  # from the cache: the command is not run again
    np.testing.assert_array_equal(again.data, data)
    assert len(calls.read_text().splitlines()) == 1


# ------------------------------------------------------------------------------------------ CLI


def test_segment_cli_in_process(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mrisr.cli.segment import main

    base = shared_data / "fixtures" / "t2_crop"
    out = tmp_path / "seg.nii.gz"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [f"image={base / 't2.nii.gz'}", f"output={out}"])
    assert exit_info.value.code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["backend"] == "classical" and result["voxels"] > 1000
    written = nib.load(out)
    manual = load_volume(base / "t2_seg-manual.nii.gz")
    np.testing.assert_allclose(written.affine, manual.affine, atol=1e-5)
    assert dice(np.asarray(written.dataobj), manual.data) > 0.9
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [f"image={base / 't2.nii.gz'}", f"output={out}", "segmenter=sct"])
    assert exit_info.value.code == 2
    assert "not on PATH" in capsys.readouterr().err


def test_every_segmenter_option_composes_and_instantiates() -> None:
    from hydra.utils import instantiate

    from mrisr.utils.config import compose

    options = sorted((REPO_ROOT / "conf" / "segmenter").glob("*.yaml"))
    assert {p.stem for p in options} >= {"provided", "sct", "classical"}
    required = {"segment": ["image=x.nii.gz", "output=y.nii.gz"], "mucca": ["image=x.nii.gz"]}
    for option in options:
        for config, extra in required.items():
            cfg = compose(config, [f"segmenter={option.stem}", *extra])
            segmenter = instantiate(cfg.segmenter)
            assert isinstance(segmenter, CordSegmenter) and segmenter.name == option.stem


# ------------------------------------------------------------------------------------------ U-Net


def test_unet_segmenter_without_checkpoint_is_a_clear_error() -> None:
    from mrisr.segmentation.unet import UNetSegmenter

    image, _ = spine_phantom()
    with pytest.raises(MrisrInputError, match="experiment=cordseg"):
        UNetSegmenter().segment(image)


def test_unet_trains_on_crops_and_segments_from_its_checkpoint(tmp_path: Path) -> None:
    """A few optimisation steps on phantom subjects, then the checkpoint drives ``segmenter=unet``."""
    import lightning as L

    from mrisr.data.cordseg import CordSegDataModule
    from mrisr.segmentation.unet import UNetSegmenter
    from mrisr.systems.segmentation import CordSegUNet

    subjects = {}
    for i, tilt in enumerate((0.0, 15.0, 25.0)):
        image, truth = spine_phantom(tilt, seed=i)
        subjects[f"s{i}"] = {
            "image": str(save_volume(image, tmp_path / f"s{i}.nii.gz")),
            "mask": str(
                save_volume(Volume((truth >= 0.5).astype(np.float32), image.affine), tmp_path / f"m{i}.nii.gz")
            ),
        }
    data = CordSegDataModule(
        subjects,
        held_out="s2",
        degradations=[{"thickness_mm": 3.0, "separation_mm": 3.0, "axis": 2}],
        patch_size=32,
        batch_size=4,
        samples_per_epoch=8,
        val_samples=4,
    )
    model = CordSegUNet(features=(4, 4, 8, 8, 16, 4), patch_size=32)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=data)
    ckpt = tmp_path / "unet.ckpt"
    trainer.save_checkpoint(ckpt)
    results = trainer.test(model, datamodule=data, verbose=False)[0]
    assert {"test/dice_HR", "test/dice_T3_S3_ax2"} <= set(results)
    assert all(0.0 <= v <= 1.0 for v in results.values())
    segmenter = UNetSegmenter(checkpoint=str(ckpt))
    image = load_volume(subjects["s2"]["image"])
    mask = segmenter.segment(image)
    assert mask.shape == image.shape and set(np.unique(mask.data)) <= {0.0, 1.0}
