"""Vertebra topology and detection (Graf et al.; docs/evaluation.md §6).

* :func:`betti_numbers` — Betti numbers (b0, b1, b2) of a binary 3-D mask with the complementary 26/6
  connectivities: b0 = 26-connected foreground components, b2 = 6-connected background components − 1 (after
  padding, the outside is one component), χ = Euler characteristic (26-connectivity), b1 = b0 + b2 − χ.
* :func:`instance_betti` — Betti numbers of every label of an instance map (each cropped to its bounding box).
* :func:`vertebra_topology` — per-vertebra Betti errors under the paper rule (b0 ≠ 1; b1 ≠ 1, or b1 ∉ {1, 2, 3}
  for cervical vertebrae, whose transverse foramina may appear as extra tunnels) or the ground-truth-relative
  rule (|b_pred − b_gt| > 0), detection by the vertebral centre of mass (a GT vertebra is missed when omitted or
  merged) or by IoU > 0.5 with Hungarian matching; missing vertebrae count as Betti errors; configurable
  exclusions (C1, the most caudal cut vertebra, labels ≥ 50, labels touching the field of view).

Label convention (SPINEPS / TotalSpineSeg style): C1-C7 = 1-7, T1-T12 = 8-19, L1-L6 = 20-25, sacrum 26;
labels ≥ 50 are other structures (discs, canal, cord).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from skimage.measure import euler_number, label

from mrisr.eval.lesions import dice

__all__ = [
    "CERVICAL_LABELS",
    "TopologyResult",
    "VertebraRecord",
    "betti_numbers",
    "instance_betti",
    "vertebra_topology",
]

_LOG = logging.getLogger(__name__)

#: Cervical vertebra labels (C1-C7).
CERVICAL_LABELS: tuple[int, ...] = tuple(range(1, 8))


def betti_numbers(mask: np.ndarray) -> tuple[int, int, int]:
    """Betti numbers (b0, b1, b2) of a binary 3-D mask (26-connected foreground, 6-connected background).

    The mask is cropped to its bounding box and padded by one background voxel, so the outside is a single
    background component.

    Args:
        mask: Array ``(X, Y, Z)``; non-zero voxels are foreground.

    Returns:
        ``(b0, b1, b2)``: connected components, tunnels (handles) and cavities; ``(0, 0, 0)`` for an empty mask.
    """
    m = np.asarray(mask) != 0
    if m.ndim != 3:
        raise ValueError(f"betti_numbers needs a 3-D mask, got shape {m.shape}")
    if not m.any():
        return 0, 0, 0
    box = ndimage.find_objects(m.astype(np.uint8))[0]
    m = np.pad(m[box], 1)
    _, b0 = label(m, connectivity=3, return_num=True)
    _, n_background = label(~m, connectivity=1, return_num=True)
    b2 = n_background - 1
    chi = int(euler_number(m, connectivity=3))
    b1 = b0 + b2 - chi
    return int(b0), int(b1), int(b2)


def instance_betti(labels: np.ndarray, values: Iterable[int] | None = None) -> dict[int, tuple[int, int, int]]:
    """Betti numbers of every instance of a label map.

    Args:
        labels: Integer instance map ``(X, Y, Z)`` (0 = background).
        values: Labels to analyse; default all non-zero labels present.

    Returns:
        ``{label: (b0, b1, b2)}`` (``(0, 0, 0)`` for requested labels that are absent).
    """
    arr = np.asarray(labels)
    chosen = sorted(int(v) for v in np.unique(arr) if v != 0) if values is None else [int(v) for v in values]
    objects = ndimage.find_objects(arr.astype(np.int64)) if arr.size else []
    out: dict[int, tuple[int, int, int]] = {}
    for value in chosen:
        box = objects[value - 1] if 0 < value <= len(objects) else None
        out[value] = (0, 0, 0) if box is None else betti_numbers(arr[box] == value)
    return out


@dataclass(frozen=True)
class VertebraRecord:
    """Topology and detection of one ground-truth vertebra.

    Attributes:
        label: Ground-truth label.
        detected: Whether the vertebra was detected (not omitted, not merged).
        matched: Predicted label matched to it (0 when none).
        betti_gt: Betti numbers of the ground truth.
        betti_pred: Betti numbers of the matched prediction (``(0, 0, 0)`` when missed).
        b0_error: Betti-0 error under the chosen rule (missed vertebrae count as errors).
        b1_error: Betti-1 error under the chosen rule.
        b2_error: Betti-2 error (b2 ≠ 0, or ≠ GT for the relative rule).
        dice: Dice of the matched prediction with the ground truth (0 when missed).
    """

    label: int
    detected: bool
    matched: int
    betti_gt: tuple[int, int, int]
    betti_pred: tuple[int, int, int]
    b0_error: bool
    b1_error: bool
    b2_error: bool
    dice: float


@dataclass(frozen=True)
class TopologyResult:
    """Per-vertebra records and the summary rates of one volume.

    Attributes:
        records: One :class:`VertebraRecord` per evaluated ground-truth vertebra.
        excluded: Ground-truth labels left out by the exclusion rules.
        false_positives: Predicted instances matched to no ground-truth vertebra.
        rule: Betti rule used (``paper`` or ``gt_relative``).
        matching: Detection rule used (``centroid`` or ``iou``).
        summary: ``detection_rate``, ``b0_error_rate``, ``b1_error_rate``, ``b2_error_rate``, ``dice_mean``
            (mean over evaluated vertebrae, missed = 0), ``dice_bone`` (binary foreground Dice),
            ``n_vertebrae``, ``n_false_positives``.
    """

    records: tuple[VertebraRecord, ...]
    excluded: tuple[int, ...]
    false_positives: tuple[int, ...]
    rule: str
    matching: str
    summary: dict[str, float] = field(default_factory=dict)


def _touches_border(labels: np.ndarray, value: int) -> bool:
    m = labels == value
    return bool(m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any() or m[:, :, 0].any() or m[:, :, -1].any())


def _excluded_labels(
    gt: np.ndarray,
    values: Sequence[int],
    exclude_labels: Sequence[int],
    exclude_from: int | None,
    exclude_caudal: bool,
    exclude_border: bool,
    caudal_axis: int,
    caudal_sign: int,
) -> set[int]:
    out = {v for v in values if v in set(exclude_labels)}
    if exclude_from is not None:
        out |= {v for v in values if v >= exclude_from}
    if exclude_border:
        out |= {v for v in values if _touches_border(gt, v)}
    if exclude_caudal:
        remaining = [v for v in values if v not in out and (exclude_from is None or v < exclude_from)]
        if remaining:
            com = ndimage.center_of_mass(np.ones(gt.shape), gt, remaining)
            positions = [c[caudal_axis] * caudal_sign for c in com]
            out.add(remaining[int(np.argmin(positions))])
    return out


def vertebra_topology(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    rule: Literal["paper", "gt_relative"] = "paper",
    matching: Literal["centroid", "iou"] = "centroid",
    cervical_labels: Sequence[int] = CERVICAL_LABELS,
    exclude_labels: Sequence[int] = (1,),
    exclude_from: int | None = 50,
    exclude_caudal: bool = True,
    exclude_border: bool = False,
    caudal_axis: int = 2,
    caudal_sign: int = 1,
    merge_fraction: float = 0.5,
    iou_threshold: float = 0.5,
) -> TopologyResult:
    """Per-vertebra Betti errors, detection rate and Dice of a predicted instance segmentation (§6).

    Detection (``centroid``, the paper): a GT vertebra is *omitted* when no predicted instance has its centre of
    mass inside the GT mask (for a hollow instance whose centre of mass falls outside it, its voxel nearest to
    the centre of mass), and *merged* when the predicted instance whose centre of mass lies in it also
    covers more than ``merge_fraction`` of another GT vertebra; missed = omitted or merged. ``iou``: one-to-one
    Hungarian matching of instances on IoU, a pair counting when IoU > ``iou_threshold``. Detection rate =
    detected / evaluated GT vertebrae; unmatched predicted instances are false positives.

    Betti errors (missed vertebrae count as errors): ``paper`` — b0 ≠ 1; b1 ≠ 1 (b1 ∉ {1, 2, 3} for
    ``cervical_labels``); b2 ≠ 0. ``gt_relative`` — b_k(pred) ≠ b_k(GT).

    Args:
        prediction: Predicted instance map ``(X, Y, Z)`` on the GT grid (nearest-neighbour resampled).
        ground_truth: GT instance map, same shape.
        rule: Betti error rule.
        matching: Detection rule.
        cervical_labels: Labels of cervical vertebrae (relaxed b1 rule).
        exclude_labels: GT labels never evaluated (default C1 = 1).
        exclude_from: GT labels ≥ this are not vertebrae (``None`` keeps all).
        exclude_caudal: Leave out the most caudal evaluated vertebra (usually cut by the field of view).
        exclude_border: Leave out GT vertebrae touching the volume border.
        caudal_axis: Voxel axis along which the spine runs.
        caudal_sign: +1 when the index increases cranially along ``caudal_axis`` (RAS z), −1 otherwise.
        merge_fraction: Coverage of a second GT vertebra above which a predicted instance merges them.
        iou_threshold: IoU above which two instances match (``iou``).

    Returns:
        A :class:`TopologyResult`.
    """
    pred = np.asarray(prediction).astype(np.int64)
    gt = np.asarray(ground_truth).astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"instance maps differ in shape: {pred.shape} vs {gt.shape}; resample onto the GT grid")
    if rule not in ("paper", "gt_relative"):
        raise ValueError(f"rule must be 'paper' or 'gt_relative', got {rule!r}")
    if matching not in ("centroid", "iou"):
        raise ValueError(f"matching must be 'centroid' or 'iou', got {matching!r}")
    gt_values = [int(v) for v in np.unique(gt) if v != 0]
    pred_values = [int(v) for v in np.unique(pred) if v != 0]
    excluded = _excluded_labels(
        gt, gt_values, exclude_labels, exclude_from, exclude_caudal, exclude_border, caudal_axis, caudal_sign
    )
    evaluated = [v for v in gt_values if v not in excluded]

    # Overlap table: voxels of GT label g (row) covered by predicted label p (column).
    both = (gt > 0) & (pred > 0)
    g_index = {v: i for i, v in enumerate(gt_values)}
    p_index = {v: i for i, v in enumerate(pred_values)}
    table = np.zeros((len(gt_values), len(pred_values)), dtype=np.int64)
    if both.any():
        gi = np.searchsorted(gt_values, gt[both])
        pi = np.searchsorted(pred_values, pred[both])
        np.add.at(table, (gi, pi), 1)
    gt_size = np.array([np.count_nonzero(gt == v) for v in gt_values], dtype=np.int64)
    pred_size = np.array([np.count_nonzero(pred == v) for v in pred_values], dtype=np.int64)

    match: dict[int, int] = {}
    if matching == "centroid":
        if pred_values:
            com = ndimage.center_of_mass(np.ones(pred.shape), pred, pred_values)
            for p, c in zip(pred_values, com, strict=True):
                idx = tuple(round(float(x)) for x in c)
                if pred[idx] != p:  # hollow shape (a ring): use the instance voxel nearest to the centre of mass
                    voxels = np.argwhere(pred == p)
                    idx = tuple(voxels[int(np.argmin(((voxels - np.asarray(c)) ** 2).sum(axis=1)))])
                g = int(gt[idx])
                if g == 0 or g not in g_index:
                    continue
                covered = table[:, p_index[p]] / np.maximum(gt_size, 1)
                merged = [gv for gv, f in zip(gt_values, covered, strict=True) if gv != g and f > merge_fraction]
                if merged:
                    continue  # the instance merges several vertebrae: none of them counts as detected
                if g not in match or table[g_index[g], p_index[p]] > table[g_index[g], p_index[match[g]]]:
                    match[g] = p
    else:
        if gt_values and pred_values:
            union = gt_size[:, None] + pred_size[None, :] - table
            iou = table / np.maximum(union, 1)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] > iou_threshold:
                    match[gt_values[r]] = pred_values[c]

    betti_gt = instance_betti(gt, evaluated)
    matched_pred = sorted(set(match.values()))
    betti_pred = instance_betti(pred, matched_pred)
    cervical = {int(v) for v in cervical_labels}
    records: list[VertebraRecord] = []
    for g in evaluated:
        p = match.get(g, 0)
        bg = betti_gt[g]
        if p == 0:
            records.append(VertebraRecord(g, False, 0, bg, (0, 0, 0), True, True, True, 0.0))
            continue
        bp = betti_pred[p]
        if rule == "paper":
            b0_err = bp[0] != 1
            b1_err = bp[1] not in (1, 2, 3) if g in cervical else bp[1] != 1
            b2_err = bp[2] != 0
        else:
            b0_err, b1_err, b2_err = bp[0] != bg[0], bp[1] != bg[1], bp[2] != bg[2]
        value = 2.0 * table[g_index[g], p_index[p]] / (gt_size[g_index[g]] + pred_size[p_index[p]])
        records.append(VertebraRecord(g, True, p, bg, bp, b0_err, b1_err, b2_err, float(value)))
    false_pos = tuple(p for p in pred_values if p not in set(match.values()))
    n = len(records)
    summary = {
        "detection_rate": sum(r.detected for r in records) / n if n else math.nan,
        "b0_error_rate": sum(r.b0_error for r in records) / n if n else math.nan,
        "b1_error_rate": sum(r.b1_error for r in records) / n if n else math.nan,
        "b2_error_rate": sum(r.b2_error for r in records) / n if n else math.nan,
        "dice_mean": float(np.mean([r.dice for r in records])) if n else math.nan,
        "dice_bone": dice(pred > 0, gt > 0),
        "n_vertebrae": float(n),
        "n_false_positives": float(len(false_pos)),
    }
    return TopologyResult(tuple(records), tuple(sorted(excluded)), false_pos, rule, matching, summary)
