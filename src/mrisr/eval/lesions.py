"""Overlap metrics: Dice per label and lesion detection/volume metrics (docs/evaluation.md §7).

* :func:`dice` — 2|A ∩ B| / (|A| + |B|) of two binary masks (both empty → 1, logged).
* :func:`dice_per_label` — Dice of every label of two label maps, of their merged foreground, and the mean
  over labels (unmatched ground-truth labels count 0 when asked).
* :func:`lesion_metrics` — voxel-wise Dice, sensitivity, precision and volume error (mL) of a predicted lesion
  mask, and optionally lesion-wise detection (26-connected components, detection by ≥ 1 voxel overlap or by
  IoU ≥ τ) with lesion-wise TPR, PPV and F1. PRETTIER Table 4 reports the voxel-wise metrics.

Masks must share one grid (resample predictions onto the HR grid with nearest neighbour first, e.g.
:func:`mrisr.io.regrid.resample_to_reference` with ``order=0``).
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
from scipy import ndimage

__all__ = ["dice", "dice_per_label", "lesion_metrics"]

_LOG = logging.getLogger(__name__)

#: 26-connectivity structuring element (3-D).
_CONN26 = np.ones((3, 3, 3), dtype=bool)


def _binary(mask: np.ndarray, threshold: float) -> np.ndarray:
    m = np.asarray(mask)
    return m if m.dtype == np.bool_ else m > threshold


def dice(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> float:
    """Dice coefficient of two masks, binarised at ``threshold`` (boolean masks are used as they are).

    Args:
        a: Mask, any shape.
        b: Mask, same shape.
        threshold: Values ``> threshold`` are foreground.

    Returns:
        Dice in [0, 1]; 1.0 when both masks are empty (logged).

    Raises:
        ValueError: Shapes differ.
    """
    ab, bb = _binary(a, threshold), _binary(b, threshold)
    if ab.shape != bb.shape:
        raise ValueError(f"mask shapes differ: {ab.shape} vs {bb.shape}; resample onto one grid first")
    total = int(np.count_nonzero(ab)) + int(np.count_nonzero(bb))
    if total == 0:
        _LOG.info("dice: both masks are empty; Dice defined as 1")
        return 1.0
    return 2.0 * int(np.count_nonzero(ab & bb)) / total


def dice_per_label(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    labels: list[int] | None = None,
    missing_as_zero: bool = True,
) -> dict[str, float]:
    """Dice of every label, of the merged foreground and the mean over labels (docs/evaluation.md §7).

    Args:
        prediction: Integer label map.
        ground_truth: Integer label map, same shape.
        labels: Labels to score; default every non-zero ground-truth label.
        missing_as_zero: A ground-truth label absent from the prediction scores 0 (else it is left out of the
            mean).

    Returns:
        ``{"dice_<label>": …, "dice_foreground": …, "dice_mean": …}`` (mean NaN when no label is scored).
    """
    pred = np.asarray(prediction)
    gt = np.asarray(ground_truth)
    if pred.shape != gt.shape:
        raise ValueError(f"label map shapes differ: {pred.shape} vs {gt.shape}")
    chosen = sorted(int(v) for v in np.unique(gt) if v != 0) if labels is None else [int(v) for v in labels]
    out: dict[str, float] = {}
    scored: list[float] = []
    for label in chosen:
        g, p = gt == label, pred == label
        if not p.any() and not missing_as_zero:
            continue
        value = dice(p, g)
        out[f"dice_{label}"] = value
        scored.append(value)
    out["dice_foreground"] = dice(pred != 0, gt != 0)
    out["dice_mean"] = float(np.mean(scored)) if scored else math.nan
    return out


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labels, n = ndimage.label(mask, structure=_CONN26)
    return labels, int(n)


def lesion_metrics(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    voxel_volume_mm3: float,
    lesion_wise: bool = False,
    detection: Literal["overlap", "iou"] = "overlap",
    iou_threshold: float = 0.1,
    threshold: float = 0.5,
) -> dict[str, float | str]:
    """Voxel-wise (and optionally lesion-wise) agreement of a predicted lesion mask with the reference.

    Voxel-wise: Dice, sensitivity = TP / (TP + FN), precision = TP / (TP + FP), volumes V (mL) and the volume
    error V_pred − V_gt (mL) with its absolute and relative (÷ V_gt) value. Empty denominators give NaN,
    except Dice (both empty → 1).

    Lesion-wise (``lesion_wise=True``): 26-connected components of both masks; a reference lesion is detected
    when a predicted component overlaps it by ≥ 1 voxel (``detection="overlap"``) or with IoU ≥
    ``iou_threshold`` (``"iou"``), and symmetrically for predicted lesions (true vs false positives);
    TPR = detected / reference lesions, PPV = true-positive predictions / predicted lesions, F1 = their
    harmonic mean.

    Args:
        prediction: Predicted mask ``(X, Y, Z)`` (binary or probabilities).
        ground_truth: Reference mask, same shape.
        voxel_volume_mm3: Volume of one voxel (mm³).
        lesion_wise: Add the lesion-wise metrics.
        detection: Lesion-wise detection rule.
        iou_threshold: τ of the IoU rule.
        threshold: Binarisation threshold of non-boolean masks.

    Returns:
        Metric name → value, plus ``"lesion_detection"`` naming the lesion-wise variant used.
    """
    pred, gt = _binary(prediction, threshold), _binary(ground_truth, threshold)
    if pred.shape != gt.shape:
        raise ValueError(f"lesion mask shapes differ: {pred.shape} vs {gt.shape}; resample onto the HR grid first")
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    v_pred = (tp + fp) * voxel_volume_mm3 / 1000.0
    v_gt = (tp + fn) * voxel_volume_mm3 / 1000.0
    err = v_pred - v_gt
    out: dict[str, float | str] = {
        "dice": dice(pred, gt),
        "sensitivity": tp / (tp + fn) if tp + fn else math.nan,
        "precision": tp / (tp + fp) if tp + fp else math.nan,
        "volume_pred_ml": v_pred,
        "volume_gt_ml": v_gt,
        "volume_error_ml": err,
        "volume_abs_error_ml": abs(err),
        "volume_rel_error": err / v_gt if v_gt > 0 else math.nan,
    }
    if not lesion_wise:
        return out
    if detection not in ("overlap", "iou"):
        raise ValueError(f"detection must be 'overlap' or 'iou', got {detection!r}")
    gt_labels, n_gt = _components(gt)
    pred_labels, n_pred = _components(pred)
    # Overlap table between reference (rows) and predicted (columns) components.
    both = (gt_labels > 0) & (pred_labels > 0)
    table = np.zeros((n_gt + 1, n_pred + 1), dtype=np.int64)
    np.add.at(table, (gt_labels[both], pred_labels[both]), 1)
    if detection == "overlap":
        match = table[1:, 1:] > 0
    else:
        size_gt = np.bincount(gt_labels.ravel(), minlength=n_gt + 1)[1:]
        size_pred = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)[1:]
        union = size_gt[:, None] + size_pred[None, :] - table[1:, 1:]
        match = table[1:, 1:] >= iou_threshold * np.maximum(union, 1)
        match &= table[1:, 1:] > 0
    detected = int(match.any(axis=1).sum())
    true_pred = int(match.any(axis=0).sum())
    tpr = detected / n_gt if n_gt else math.nan
    ppv = true_pred / n_pred if n_pred else math.nan
    f1 = 2 * tpr * ppv / (tpr + ppv) if n_gt and n_pred and (tpr + ppv) > 0 else (0.0 if n_gt and n_pred else math.nan)
    out.update(
        {
            "lesions_gt": float(n_gt),
            "lesions_pred": float(n_pred),
            "lesion_tpr": tpr,
            "lesion_ppv": ppv,
            "lesion_f1": f1,
            "lesion_detection": detection if detection == "overlap" else f"iou>={iou_threshold:g}",
        }
    )
    return out
