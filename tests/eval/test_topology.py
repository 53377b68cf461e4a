"""Betti numbers, vertebra topology/detection, Dice, lesion metrics, slice-wise metrics and the topology callback."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from scipy import ndimage

from mrisr.callbacks.topology import TopologyCallback
from mrisr.eval.lesions import dice, dice_per_label, lesion_metrics
from mrisr.eval.slicewise import piq_available, slicewise_metrics
from mrisr.eval.topology import betti_numbers, instance_betti, vertebra_topology
from mrisr.io import Volume
from support.replay import ReplayModule


def ring(n: int = 25, width: int = 9, r_in: float = 5.0, r_out: float = 9.0) -> np.ndarray:
    """Annulus slab: a ring in the (0, 1) plane extruded ``width`` voxels along axis 2."""
    z, y, _ = np.mgrid[0:n, 0:n, 0:width]
    r = np.hypot(z - n // 2, y - n // 2)
    return (r >= r_in) & (r <= r_out)


def ball(shape: tuple[int, int, int], centre: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))) <= radius


# ------------------------------------------------------------------------------------------ Betti numbers


def test_betti_phantoms() -> None:
    r = ring()
    assert betti_numbers(r) == (1, 1, 0)
    foramina = r.copy()
    z, y, _ = np.mgrid[0:25, 0:25, 0:9]
    for cy in (5, 19):  # two tunnels along axis 2 through the ring body
        foramina[np.hypot(z - 12, y - cy) <= 1.0] = False
    assert betti_numbers(foramina) == (1, 3, 0)
    assert betti_numbers(ball((30,) * 3, (15, 15, 15), 10) & ~ball((30,) * 3, (15, 15, 15), 6)) == (1, 0, 1)
    assert betti_numbers(ball((30,) * 3, (8, 8, 8), 5) | ball((30,) * 3, (21, 21, 21), 5)) == (2, 0, 0)
    cut = r.copy()
    cut[10:15, 12:, :] = False
    assert betti_numbers(cut) == (1, 0, 0)
    assert betti_numbers(np.zeros((4, 4, 4))) == (0, 0, 0)
    # Diagonal contact joins under 26-connectivity (one component), the complementary background is 6-connected.
    diag = np.zeros((4, 4, 4), bool)
    diag[1, 1, 1] = diag[2, 2, 2] = True
    assert betti_numbers(diag) == (1, 0, 0)


def spine_labels(labels: tuple[int, ...] = (8, 9, 10, 11), gap: int = 3) -> np.ndarray:
    """Rings stacked along axis 2 (index increasing cranially), one label each: label k+1 above label k."""
    r = ring(width=6)
    out = np.zeros((25, 25, len(labels) * (6 + gap) + gap), np.int16)
    for i, value in enumerate(labels):
        z0 = gap + i * (6 + gap)
        out[:, :, z0 : z0 + 6][r] = value
    return out


def test_instance_betti_and_topology_of_a_perfect_prediction() -> None:
    gt = spine_labels()
    assert instance_betti(gt) == {8: (1, 1, 0), 9: (1, 1, 0), 10: (1, 1, 0), 11: (1, 1, 0)}
    result = vertebra_topology(gt, gt)
    assert result.excluded == (8,)  # the most caudal (cut) vertebra
    assert result.summary["detection_rate"] == 1.0
    assert result.summary["b0_error_rate"] == result.summary["b1_error_rate"] == 0.0
    assert result.summary["dice_mean"] == result.summary["dice_bone"] == 1.0


def test_topology_errors_missing_merged_and_relabelled_instances() -> None:
    gt = spine_labels()
    pred = gt.copy()
    pred[10:15, 12:, :][pred[10:15, 12:, :] == 9] = 0  # cut ring of vertebra 9: b1 = 0
    result = vertebra_topology(pred, gt)
    by_label = {r.label: r for r in result.records}
    assert by_label[9].betti_pred == (1, 0, 0) and by_label[9].b1_error and not by_label[9].b0_error
    assert result.summary["b1_error_rate"] == pytest.approx(1 / 3)
    # Omitted vertebra: missed, counted as Betti error.
    omitted = gt.copy()
    omitted[omitted == 10] = 0
    result = vertebra_topology(omitted, gt)
    assert result.summary["detection_rate"] == pytest.approx(2 / 3)
    assert result.summary["b0_error_rate"] == pytest.approx(1 / 3)
    # Merged vertebrae (one instance over 10 and 11): neither is detected.
    merged = gt.copy()
    merged[merged == 11] = 10
    merged[:, :, 20:27][ring(width=7)] = 10  # bridge the gap: one connected instance
    result = vertebra_topology(merged, gt)
    assert {r.label for r in result.records if not r.detected} == {10, 11}
    # Relabelled prediction: centroid and IoU matching both find every vertebra.
    relabelled = np.where(gt > 0, gt + 100, 0)
    for matching in ("centroid", "iou"):
        result = vertebra_topology(relabelled, gt, matching=matching, exclude_from=None)
        assert result.summary["detection_rate"] == 1.0
        assert result.false_positives == ()


def test_cervical_b1_rule_and_gt_relative_rule() -> None:
    gt = spine_labels(labels=(2, 3, 4))
    pred = gt.copy()
    z, y, _ = np.mgrid[0 : gt.shape[0], 0 : gt.shape[1], 0 : gt.shape[2]]
    foramina = (np.hypot(z - 12, y - 5) <= 1.0) | (np.hypot(z - 12, y - 19) <= 1.0)
    pred[foramina & (pred == 3)] = 0  # C3 with two transverse foramina: b1 = 3
    assert instance_betti(pred, [3])[3] == (1, 3, 0)
    paper = vertebra_topology(pred, gt, exclude_caudal=False)
    assert not {r.label: r for r in paper.records}[3].b1_error  # allowed for cervical vertebrae
    thoracic = vertebra_topology(pred, gt, exclude_caudal=False, cervical_labels=())
    assert {r.label: r for r in thoracic.records}[3].b1_error
    relative = vertebra_topology(pred, gt, exclude_caudal=False, rule="gt_relative")
    assert {r.label: r for r in relative.records}[3].b1_error


# ------------------------------------------------------------------------------------------ Dice and lesions


def test_dice_and_per_label_dice() -> None:
    a = np.zeros((4, 4, 4))
    assert dice(a, a) == 1.0  # both empty: defined as 1
    a[0, 0, :2] = 1
    b = np.zeros_like(a)
    b[0, 0, 1:3] = 1
    assert dice(a, b) == pytest.approx(0.5)
    gt = np.zeros((4, 4, 4), int)
    gt[0] = 1
    gt[1] = 2
    pred = gt.copy()
    pred[1, :2] = 0
    scores = dice_per_label(pred, gt)
    assert scores["dice_1"] == 1.0 and scores["dice_2"] == pytest.approx(2 * 8 / (16 + 8))
    assert scores["dice_mean"] == pytest.approx((1 + 2 / 3) / 2)
    assert dice_per_label(pred, gt, labels=[1, 3])["dice_3"] == 1.0  # absent in both


def test_lesion_metrics_hand_computed_example() -> None:
    gt = np.zeros((10, 10, 10), bool)
    gt[1:3, 1:3, 1:3] = True  # lesion A: 8 voxels
    gt[6:8, 6:8, 6:7] = True  # lesion B: 4 voxels
    pred = np.zeros_like(gt)
    pred[1:3, 1:3, 1:2] = True  # 4 voxels inside A
    pred[8:10, 0:2, 8:10] = True  # 8 false-positive voxels
    out = lesion_metrics(pred, gt, voxel_volume_mm3=2.0, lesion_wise=True)
    tp, fp, fn = 4, 8, 8
    assert out["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert out["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert out["precision"] == pytest.approx(tp / (tp + fp))
    assert out["volume_error_ml"] == pytest.approx((12 - 12) * 2.0 / 1000)
    assert out["volume_gt_ml"] == pytest.approx(0.024)
    assert out["lesion_tpr"] == pytest.approx(0.5) and out["lesion_ppv"] == pytest.approx(0.5)
    assert out["lesion_f1"] == pytest.approx(0.5) and out["lesion_detection"] == "overlap"
    strict = lesion_metrics(pred, gt, voxel_volume_mm3=2.0, lesion_wise=True, detection="iou", iou_threshold=0.6)
    assert strict["lesion_tpr"] == 0.0  # IoU of the overlapping pair is 0.5


# ------------------------------------------------------------------------------------------ slice-wise metrics


def test_slicewise_metrics_report_status_and_never_nan() -> None:
    rng = np.random.default_rng(0)
    ref = ndimage.gaussian_filter(rng.random((48, 48, 6)), 2)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    noisy = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1)
    records = {
        r["metric"]: r for r in slicewise_metrics(noisy, ref, axis=2, metrics=["psnr", "ssim", "fsim", "ms_ssim"])
    }
    mse = np.mean((noisy - ref) ** 2, axis=(0, 1))
    assert records["psnr"]["status"] == "ok"
    assert records["psnr"]["value"] == pytest.approx(float(np.mean(10 * np.log10(1 / mse))), rel=1e-4)
    assert 0 < records["ssim"]["value"] < 1 and records["ssim"]["n_slices"] == 6
    assert records["ms_ssim"]["status"] == "not_applicable" and records["ms_ssim"]["value"] is None
    if piq_available():
        assert records["fsim"]["status"] == "ok" and records["fsim"]["backend"] == "piq"
    else:
        assert records["fsim"]["status"] == "unavailable" and records["fsim"]["value"] is None
    for record in records.values():
        assert record["value"] is None or math.isfinite(record["value"])
    mask = np.zeros(ref.shape)
    mask[:, :, 2:4] = 1
    assert slicewise_metrics(noisy, ref, axis=2, mask=mask)[0]["n_slices"] == 2


@pytest.mark.skipif(not piq_available(), reason="piq not installed (pip install -e '.[metrics]')")
def test_piq_backend_agrees_with_the_numpy_fallback_and_runs_offline_metrics() -> None:
    rng = np.random.default_rng(1)
    ref = ndimage.gaussian_filter(rng.random((64, 64, 4)), 2)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    noisy = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, 1)
    names = ["psnr", "ssim", "vif_p", "haarpsi", "gmsd"]
    piq_records = {r["metric"]: r for r in slicewise_metrics(noisy, ref, axis=2, metrics=names, backend="piq")}
    numpy_records = {r["metric"]: r for r in slicewise_metrics(noisy, ref, axis=2, backend="skimage")}
    assert piq_records["psnr"]["backend"] == "piq"
    assert piq_records["psnr"]["value"] == pytest.approx(numpy_records["psnr"]["value"], rel=1e-4)
    # piq's SSIM uses the same 11-tap σ = 1.5 Gaussian; only the border handling differs.
    assert piq_records["ssim"]["value"] == pytest.approx(numpy_records["ssim"]["value"], abs=0.02)
    for name in ("vif_p", "haarpsi", "gmsd"):
        assert piq_records[name]["status"] == "ok" and math.isfinite(piq_records[name]["value"])
    identical = {r["metric"]: r for r in slicewise_metrics(ref, ref, axis=2, metrics=["vif_p", "haarpsi", "gmsd"])}
    assert identical["vif_p"]["value"] == pytest.approx(1.0, abs=1e-3)
    assert identical["haarpsi"]["value"] == pytest.approx(1.0, abs=1e-3)
    assert identical["gmsd"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert piq_records["haarpsi"]["value"] < 1.0 and piq_records["gmsd"]["value"] > 0.0

    # ------------------------------------------------------------------------------------------ callback

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        return batch


def segment_rings(volume: Volume) -> Volume:
    """Toy vertebra segmenter: threshold, then one label per connected component numbered caudal → cranial."""
    components, n = ndimage.label(volume.data > 0.5, structure=np.ones((3, 3, 3)))
    if n == 0:
        return Volume(np.zeros(volume.shape, np.int16), volume.affine)
    order = np.argsort([c[2] for c in ndimage.center_of_mass(np.ones(volume.shape), components, range(1, n + 1))])
    relabel = np.zeros(n + 1, np.int16)
    relabel[order + 1] = 8 + np.arange(n)
    return Volume(relabel[components], volume.affine)


def run_callbacks(items: list[dict], callback: L.Callback, tmp_path: Path) -> None:
    trainer = L.Trainer(
        accelerator="cpu", logger=False, callbacks=[callback], enable_progress_bar=False, default_root_dir=tmp_path
    )
    loader = torch.utils.data.DataLoader(items, batch_size=1, collate_fn=lambda b: b[0])
    trainer.test(ReplayModule(), dataloaders=loader, verbose=False)


def test_topology_callback_writes_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gt = spine_labels()
    hr = Volume((gt > 0).astype(np.float32), np.eye(4))
    lr_affine = np.diag([1.0, 1.0, 3.0, 1.0])
    lr_affine[2, 3] = 2.0  # 3 mm slices centred on HR planes 2, 5, 8, … (not aligned with the rings)
    lr = Volume(ndimage.uniform_filter1d(hr.data, 3, axis=2)[:, :, 2::3].copy(), lr_affine)
    item = {"name": "rings", "setting": "T3", "method": "Identity", "hr": hr, "lr": lr, "sr": hr, "grid": None}
    item["annotations"] = {"vertebrae": Volume(gt, np.eye(4))}
    callback = TopologyCallback(output_dir=str(tmp_path), segment_fn=segment_rings)
    run_callbacks([item, {**item, "annotations": {}}], callback, tmp_path)
    rows = list(csv.DictReader((tmp_path / "topology_metrics.csv").open()))
    value = {(r["method"], r["metric"]): float(r["value"]) for r in rows}
    assert value[("HR", "detection_rate")] == value[("Identity", "detection_rate")] == 1.0
    assert value[("HR", "b1_error_rate")] == 0.0
    assert 0.0 <= value[("LR", "dice_bone")] < 1.0
    assert {r["backend"] for r in rows} == {"mrisr.eval.topology/segment_rings"}
    vertebrae = list(csv.DictReader((tmp_path / "topology_vertebrae.csv").open()))
    assert {int(r["label"]) for r in vertebrae} == {9, 10, 11}
    # Without a segmenter: only the ground truth's own Betti numbers, and one warning.
    quiet = TopologyCallback(output_dir=str(tmp_path / "gt_only"))
    with caplog.at_level(logging.WARNING, logger="mrisr.callbacks.topology"):
        run_callbacks([item, item], quiet, tmp_path)
    gt_rows = list(csv.DictReader((tmp_path / "gt_only" / "topology_metrics.csv").open()))
    assert {r["method"] for r in gt_rows} == {"GT"}
    assert float(next(r["value"] for r in gt_rows if r["metric"] == "b1_label9")) == 1.0
    assert len([m for m in caplog.messages if "segment_fn" in m]) == 1
