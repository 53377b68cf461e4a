"""QC pages of the paper experiments: every scored output of a run, next to the thick-slice input it came from.

One page per (subject, setting, method) through :func:`mrisr.report.qc.write_qc_page`, the same report as
``infer.py qc=<folder>``: the input and the output on three planes, the forward-consistency residual (the input
re-acquired from the output minus the input, :func:`mrisr.eval.consistency.forward_consistency`), the per-voxel SD map
of a stochastic model, and, when the experiment scores the cord, the cord mask of the output (outline) with its
per-slice cross-sectional area and views centred on the C2 landmark. The record beside the images holds the
experiment's scores of that output (the tidy rows, so the report and the table cannot disagree), its wall time and
optimiser steps, the thickness the forward check used and where it came from, the mrisr version and every warning
(a failed segmentation or MUCCA, a poor forward match). The index is
:func:`mrisr.report.qc.write_qc_index` of the folder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrisr.io.nifti import Volume
from mrisr.physics.profiles import ProfileKind

__all__ = ["experiment_qc_page"]


def _scores(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float | None], list[str]]:
    """``{metric: value}`` of one output's rows and a warning for every row whose status is not ``ok``."""
    scores: dict[str, float | None] = {}
    warnings: list[str] = []
    for row in rows:
        value = float(row["value"])
        scores[str(row["metric"])] = value if math.isfinite(value) else None
        if str(row["status"]) != "ok":
            warnings.append(f"{row['metric']}: {row['status']}")
    return scores, warnings


def _csa_pairs(mask: Volume) -> list[tuple[float, float]] | None:
    """``(distance from the first RAS axial slice in mm, CSA in mm²)`` of every slice with cord; ``None`` if empty."""
    from mrisr.eval.cord import csa_per_slice

    if not np.any(mask.data > 0.5):
        return None
    profile = csa_per_slice(mask.data.astype(np.float32), mask.affine)
    step = float(profile.spacing_mm[2])
    return [(k * step, float(a)) for k, a in enumerate(profile.csa_mm2) if math.isfinite(a)]


def experiment_qc_page(
    folder: str | Path,
    lr: Volume,
    sr: Volume,
    rows: Sequence[Mapping[str, Any]],
    axis: int,
    thickness_mm: float | None,
    thickness_source: str = "experiment (simulated acquisition)",
    profile: ProfileKind = "slr",
    cord: Any = None,
    sd: Volume | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the QC page of one scored output of a paper experiment.

    Args:
        folder: the run's QC folder (``--qc``); the page goes to ``<folder>/<subject>_<setting>_<method>/``.
        lr: the thick-slice input on its grid (what the method was given).
        sr: the method's output, overlaying ``lr`` in world coordinates.
        rows: the tidy rows :func:`mrisr.eval.scoring.score_volume` wrote for ``sr`` (one subject, setting and method);
            their scores, wall time and steps go in the record.
        axis: the input's through-plane voxel axis.
        thickness_mm: slice thickness T of the simulated acquisition (mm); ``None``: T = S (said in the record).
        thickness_source: where ``thickness_mm`` comes from.
        profile: slice-profile kind of the acquisition (the forward check re-acquires with it).
        cord: the subject's :class:`mrisr.eval.scoring.CordReference` when the experiment scores the cord: the output
            is segmented with its segmenter for the outline and the CSA plot, and views are centred on its C2 point.
        sd: per-voxel standard deviation of stochastic samples, on the output grid.
        extra: anything else to show in the record (e.g. the drawn acquisition of a random stack).

    Returns:
        The page (``index.html``).

    Raises:
        ValueError: ``rows`` is empty or mixes outputs.
    """
    from mrisr.core.version import VERSION
    from mrisr.eval.consistency import forward_consistency
    from mrisr.eval.scoring import segment_cord
    from mrisr.io.geometry import detect_slice_axis
    from mrisr.report.qc import QCEntry, write_qc_page

    keys = {(str(r["subject"]), str(r["setting"]), str(r["method"])) for r in rows}
    if len(keys) != 1:
        raise ValueError(f"experiment_qc_page needs the rows of exactly one output, got {sorted(keys) or 'none'}")
    subject, setting, method = keys.pop()
    scores, warnings = _scores(rows)
    geometry = detect_slice_axis(lr, axis=axis)
    thickness = float(geometry.separation_mm if thickness_mm is None else thickness_mm)
    source = "separation (T = S assumed)" if thickness_mm is None else thickness_source
    report = forward_consistency(sr, lr, thickness, geometry=geometry, profile=profile, keep_resimulated=True)
    residual = None
    if report.resimulated is not None:
        residual = Volume((report.resimulated - lr.data).astype(np.float32), lr.affine, lr.header, None)
    if report.warn:
        warnings.append(
            f"the output re-acquired with T = {thickness:g} mm matches the input poorly (PSNR {report.psnr:.1f} dB)"
        )
    cord_mask = csa = landmark = None
    if cord is not None:
        cord_mask, status = segment_cord(cord.segmenter, sr)
        if cord_mask is None:
            warnings.append(f"cord: {status}")
        else:
            csa = _csa_pairs(cord_mask)
        landmark = [float(v) for v in np.asarray(cord.c2_mm, dtype=float)]
    first = rows[0]
    record: dict[str, Any] = {
        "model": method,
        "subject": subject,
        "setting": setting,
        "mrisr_version": VERSION,
        "thickness_mm": thickness,
        "thickness_source": source,
        "profile": profile,
        "seconds": float(first["seconds"]) if first.get("seconds") is not None else None,
        "steps": first.get("steps"),
        "forward_consistency": {"psnr": report.psnr, "ssim": report.ssim},
        "scores": scores,
        "warnings": warnings,
        **dict(extra or {}),
    }
    entry = QCEntry(
        name=f"{subject}_{setting}_{method}",
        input=lr,
        output=sr,
        record=record,
        residual=residual,
        sd=sd,
        cord_mask=cord_mask,
        csa_mm2=csa,
        landmark_mm=landmark,
    )
    return write_qc_page(entry, folder)
