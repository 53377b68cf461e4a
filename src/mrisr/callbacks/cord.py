"""Cord morphometry of HR, LR and SR test volumes: MUCCA, mean CSA and mask agreement (docs/evaluation.md §2-§4, §8).

Every volume is segmented on its **own grid** (LR is not interpolated first; Dewey et al.); the landmark (PMJ,
value 50, or C2 body centre, value 2) is read once from the HR annotations and reused in world coordinates for
LR and SR (§3.3 ``pmj_source: shared_hr``). Rows are tidy: subject, setting, method, metric, value, backend,
status.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import nibabel as nib
import numpy as np

from mrisr.callbacks.base import STATUS_FIELDS, EvaluationCallback, Table, check_baselines, safe_name
from mrisr.core.atomic import save_figure_atomic
from mrisr.eval.cord import (
    C2_LABEL,
    C2_OFFSET_MM,
    PMJ_LABEL,
    WINDOW_PRESETS,
    MuccaResult,
    compute_mucca,
    csa_per_slice,
    landmark_point,
)
from mrisr.eval.lesions import dice
from mrisr.eval.scoring import segment_cord, segmenter_backend
from mrisr.io.nifti import Volume
from mrisr.io.regrid import resample_to_reference
from mrisr.segmentation import CordSegmenter

log = logging.getLogger(__name__)

CORD_FIELDS = STATUS_FIELDS
PERSLICE_FIELDS = ("subject", "setting", "method", "z_world_mm", "distance_mm", "csa_mm2", "in_window")


def plane_positions_mm(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Superior (world S, mm) coordinate of the centre of every axial plane of a volume (RAS z order).

    Args:
        affine: Voxel-to-world matrix ``(4, 4)`` of the stored volume.
        shape: Stored shape ``(X, Y, Z)``.

    Returns:
        Shape ``(Z_ras,)`` in mm.
    """
    ornt = nib.orientations.io_orientation(affine)
    aff_ras = np.asarray(affine, dtype=np.float64) @ nib.orientations.inv_ornt_aff(ornt, shape)
    nx, ny, nz = (int(shape[int(i)]) for i in np.argsort(ornt[:, 0]))
    ijk = np.stack([np.full(nz, (nx - 1) / 2), np.full(nz, (ny - 1) / 2), np.arange(nz), np.ones(nz)])
    return (aff_ras @ ijk)[2]


class CordMorphometryCallback(EvaluationCallback):
    """MUCCA (and mean CSA, mask Dice) of the HR reference, the LR input and the SR output of every test volume.

    Reads ``test_step`` outputs (``name``, ``setting``, ``method``, ``hr``, ``lr``, ``sr``, ``grid`` and optional
    ``annotations`` with ``cord_mask`` on the HR grid and ``landmarks``). What is missing is skipped with one
    warning: no landmark → no MUCCA (mean CSA and Dice are still written); no HR cord mask and no segmenter →
    nothing for that volume.

    Metrics (rows and logger keys ``test/<metric>_<method>``):

    * ``mucca_mm2`` — MUCCA over ``window`` below the PMJ (or below C2, §3.2); ``NaN`` with status ``failed``
      when the window does not fit the segmentation.
    * ``csa_mean_mm2`` — mean CSA over the planes inside the HR mask's superior-inferior extent (without its
      ``trim_mm`` ends), a landmark-free summary.
    * ``dice_vs_hr`` — Dice of the LR/SR mask (nearest neighbour onto the HR grid) with the HR mask.
    * ``mucca_abs_err`` / ``mucca_rel_err`` — |MUCCA − MUCCA_HR| (mm²) and (MUCCA − MUCCA_HR)/MUCCA_HR.

    Args:
        output_dir: Run directory for the CSV files and QC plots.
        segmenter: Cord segmenter applied to each volume on its own grid (``conf/segmenter``); ``None`` = only
            the HR annotation mask is used.
        hr_mask: ``annotation`` (the HR cord mask of the data when present, else the segmenter) or
            ``segmenter`` (segment HR as well: same method for all three).
        reference: ``auto`` (PMJ when the landmarks contain value ``pmj_label``, else C2), ``pmj`` or ``c2``.
        window: MUCCA window preset (:data:`mrisr.eval.cord.WINDOW_PRESETS`).
        angle_mode: CSA angle correction (``sct``, ``exact``, ``none``).
        convention: Window convention (``sct`` or ``inclusive``).
        pmj_label: PMJ label value.
        c2_label: C2 label value.
        baselines: Interpolation baselines (``nearest``, ``linear``, ``cubic``) evaluated like SR.
        trim_mm: Margin removed at both ends of the HR cord extent for ``csa_mean_mm2`` (mm).
        filename: Summary CSV name.
        perslice_filename: Per-slice CSA-vs-distance CSV name (``None`` disables it).
        qc_plots: Write ``cord_qc_<subject>.png`` (CSA against distance below the landmark).
    """

    def __init__(
        self,
        output_dir: str,
        segmenter: CordSegmenter | None = None,
        hr_mask: Literal["annotation", "segmenter"] = "annotation",
        reference: Literal["auto", "pmj", "c2"] = "auto",
        window: str = "dewey2024_text",
        angle_mode: Literal["sct", "exact", "none"] = "sct",
        convention: Literal["sct", "inclusive"] = "sct",
        pmj_label: int = PMJ_LABEL,
        c2_label: int = C2_LABEL,
        baselines: Sequence[str] = (),
        trim_mm: float = 10.0,
        filename: str = "cord_metrics.csv",
        perslice_filename: str | None = "cord_perslice.csv",
        qc_plots: bool = True,
    ) -> None:
        if window not in WINDOW_PRESETS:
            raise ValueError(f"unknown window {window!r}; choose from {sorted(WINDOW_PRESETS)}")
        self.baselines = check_baselines(baselines)
        if hr_mask not in ("annotation", "segmenter"):
            raise ValueError(f"hr_mask must be 'annotation' or 'segmenter', got {hr_mask!r}")
        if reference not in ("auto", "pmj", "c2"):
            raise ValueError(f"reference must be 'auto', 'pmj' or 'c2', got {reference!r}")
        tables = {"metrics": Table(filename, CORD_FIELDS), "perslice": Table(perslice_filename, PERSLICE_FIELDS)}
        super().__init__(output_dir, tables)
        self.segmenter = segmenter
        self.hr_mask = hr_mask
        self.reference = reference
        self.window = window
        self.angle_mode = angle_mode
        self.convention = convention
        self.pmj_label = int(pmj_label)
        self.c2_label = int(c2_label)
        self.trim_mm = float(trim_mm)
        self.filename = filename
        self.perslice_filename = perslice_filename
        self.qc_plots = qc_plots

    @property
    def perslice(self) -> list[dict[str, Any]]:
        """Rows of the per-slice CSA table."""
        return self.table_rows("perslice")

    # ---------------------------------------------------------------- helpers
    @property
    def backend(self) -> str:
        """Backend tag of segmenter-made masks."""
        return segmenter_backend(self.segmenter) if self.segmenter else "mrisr.eval.cord/none"

    def _landmark(self, annotations: dict[str, Any]) -> tuple[str, np.ndarray] | None:
        labels = annotations.get("landmarks")
        if labels is None:
            self.warn_once("landmarks", "cord morphometry: no landmarks in the test data; MUCCA is skipped")
            return None
        data = np.asarray(labels.data)
        has_pmj = bool(np.any(np.isclose(data, self.pmj_label)))
        has_c2 = bool(np.any(np.isclose(data, self.c2_label)))
        kind = self.reference
        if kind == "auto":
            kind = "pmj" if has_pmj else ("c2" if has_c2 else "none")
        if (kind == "pmj" and not has_pmj) or (kind == "c2" and not has_c2) or kind == "none":
            self.warn_once(
                "landmark-value",
                "cord morphometry: the landmarks hold neither PMJ (%d) nor C2 (%d) as requested (%s); MUCCA skipped",
                self.pmj_label,
                self.c2_label,
                self.reference,
            )
            return None
        value = self.pmj_label if kind == "pmj" else self.c2_label
        return kind, landmark_point(data, labels.affine, value)

    def _segment(self, volume: Volume, method: str) -> tuple[Volume | None, str]:
        """The cord mask of ``volume`` and ``ok``, or ``None`` and why (no segmenter, or a failed segmentation)."""
        if self.segmenter is None:
            self.warn_once("segmenter", "cord morphometry: no segmenter configured; only the HR annotation is used")
            return None, "no segmenter"
        mask, status = segment_cord(self.segmenter, volume)
        if mask is None:
            self.warn_once(f"segment-{method}", "cord morphometry: %s of %s", status, method)
        return mask, status

    def _mean_csa(self, mask: Volume, lo_mm: float, hi_mm: float) -> float:
        profile = csa_per_slice(mask.data, mask.affine, angle_mode=self.angle_mode)
        z_mm = plane_positions_mm(mask.affine, mask.shape)
        inside = (z_mm >= lo_mm) & (z_mm <= hi_mm) & np.isfinite(profile.csa_mm2)
        return float(profile.csa_mm2[inside].mean()) if inside.any() else math.nan

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict[str, Any]) -> None:
        subject, setting = str(outputs["name"]), str(outputs["setting"])
        annotations: dict[str, Any] = outputs.get("annotations") or {}
        hr: Volume = outputs["hr"]

        # HR mask: annotation or segmenter.
        hr_mask: Volume | None = None
        hr_backend = "provided"
        if self.hr_mask == "annotation" and annotations.get("cord_mask") is not None:
            hr_mask = annotations["cord_mask"]
        else:
            if self.hr_mask == "annotation":
                self.warn_once("cord_mask", "cord morphometry: no HR cord mask in the test data; segmenting HR")
            hr_mask, _ = self._segment(hr, "HR")
            hr_backend = self.backend
        if hr_mask is None or not np.any(np.asarray(hr_mask.data) > 0):
            self.warn_once("no-hr", "cord morphometry: no HR cord mask for %s; skipped", subject)
            return

        volumes: dict[str, Volume] = {"LR": outputs["lr"], str(outputs["method"]): outputs["sr"]}
        for name in self.baselines:
            volumes[name] = self.baseline(trainer, outputs, name)
        masks: dict[str, tuple[Volume, str]] = {"HR": (hr_mask, hr_backend)}
        failed: dict[str, str] = {}
        for method, volume in volumes.items():
            mask, status = self._segment(volume, method)
            if mask is not None:
                masks[method] = (mask, self.backend)
            elif self.segmenter is not None:
                failed[method] = status

        landmark = self._landmark(annotations)
        for method, status in failed.items():
            # A missed cord is an error, not a gap: Dice 0 and no MUCCA, with the reason as status.
            row = {"subject": subject, "setting": setting, "method": method, "backend": self.backend, "status": status}
            self.add_row({**row, "metric": "dice_vs_hr", "value": 0.0})
            if landmark is not None:
                self.add_row({**row, "metric": "mucca_mm2", "value": math.nan})
        hr_z = plane_positions_mm(hr_mask.affine, hr_mask.shape)
        hr_profile = csa_per_slice(hr_mask.data, hr_mask.affine, angle_mode=self.angle_mode)
        covered = hr_z[np.isfinite(hr_profile.csa_mm2)]
        lo_mm, hi_mm = float(covered.min()) + self.trim_mm, float(covered.max()) - self.trim_mm

        results: dict[str, MuccaResult] = {}
        for method, (mask, backend) in masks.items():
            row = {"subject": subject, "setting": setting, "method": method, "backend": backend}
            csa_mean = self._mean_csa(mask, lo_mm, hi_mm)
            self.add_row({**row, "metric": "csa_mean_mm2", "value": csa_mean, "status": "ok"})
            if method != "HR":
                on_hr = resample_to_reference(mask, hr_mask, order=0) if mask.shape != hr_mask.shape else mask.data
                self.add_row({**row, "metric": "dice_vs_hr", "value": dice(on_hr, hr_mask.data), "status": "ok"})
            if landmark is None:
                continue
            kind, point = landmark
            result = compute_mucca(
                np.asarray(mask.data, dtype=np.float32),
                mask.affine,
                pmj_mm=point if kind == "pmj" else None,
                c2_mm=point if kind == "c2" else None,
                window=self.window,
                angle_mode=self.angle_mode,
                convention=self.convention,
            )
            results[method] = result
            if result.status != "ok":
                log.warning("cord morphometry: MUCCA of %s %s failed: %s", subject, method, result.reason)
            self.add_row({**row, "metric": "mucca_mm2", "value": result.mucca_mm2, "status": result.status})
            self._add_profile(subject, setting, method, mask, result)

        key = {"HR": "hr", "LR": "lr", str(outputs["method"]): "sr"}
        for method, result in results.items():
            value = result.mucca_mm2
            if math.isfinite(value):
                self.log_metric(f"test/mucca_{key.get(method, method)}", value)
        hr_value = results["HR"].mucca_mm2 if "HR" in results else math.nan
        for method, result in results.items():
            if method == "HR":
                continue
            err = result.mucca_mm2 - hr_value
            status = "ok" if math.isfinite(err) else "failed"
            backend = masks[method][1]
            base = {"subject": subject, "setting": setting, "method": method, "backend": backend, "status": status}
            self.add_row({**base, "metric": "mucca_abs_err", "value": abs(err)})
            self.add_row({**base, "metric": "mucca_rel_err", "value": err / hr_value if hr_value else math.nan})
            if math.isfinite(err):
                suffix = "" if key.get(method) == "sr" else f"_{key.get(method, method)}"
                self.log_metric(f"test/mucca_abs_err{suffix}", abs(err))
        # Each rank plots its own test volumes (one file per subject).
        if self.qc_plots and results:
            self._qc_plot(subject, setting, results)

    def _add_profile(self, subject: str, setting: str, method: str, mask: Volume, result: MuccaResult) -> None:
        if self.perslice_filename is None or result.profile_z.size == 0:
            return
        z_mm = plane_positions_mm(mask.affine, mask.shape)
        selected = set(result.slices)
        for z, d, a in zip(result.profile_z, result.profile_distance_mm, result.profile_csa_mm2, strict=True):
            self.add_row(
                {
                    "subject": subject,
                    "setting": setting,
                    "method": method,
                    "z_world_mm": float(z_mm[int(z)]),
                    "distance_mm": float(d),
                    "csa_mm2": float(a),
                    "in_window": int(int(z) in selected),
                },
                table="perslice",
            )

    def _qc_plot(self, subject: str, setting: str, results: dict[str, MuccaResult]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for method, result in results.items():
            if result.profile_z.size:
                label = f"{method}: {result.mucca_mm2:.1f} mm²"
                ax.plot(result.profile_distance_mm, result.profile_csa_mm2, lw=1, label=label)
        first = next(iter(results.values()))
        lo = first.distance_mm - first.extent_mm / 2 - (C2_OFFSET_MM if first.reference == "c2" else 0.0)
        ax.axvspan(lo, lo + first.extent_mm, color="0.9", zorder=0)
        ax.set_xlabel(f"distance below {first.reference.upper()} (mm)")
        ax.set_ylabel("CSA (mm²)")
        ax.set_title(f"{subject} — {setting} ({first.window})", fontsize=9)
        ax.legend(fontsize=7)
        save_figure_atomic(fig, self.output_dir / f"cord_qc_{safe_name(subject)}.png")
        plt.close(fig)
