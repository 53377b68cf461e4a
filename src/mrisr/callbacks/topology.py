"""Vertebra topology of HR, LR and SR test volumes: Betti errors, detection rate, Dice (docs/evaluation.md §6, §8).

No vertebra segmenter can run offline here (SPINEPS and TotalSpineSeg download their weights), so predictions
come from a user ``segment_fn`` (any callable ``Volume -> Volume`` of instance labels, or an object with a
``segment`` method); the ground truth is the ``vertebrae`` annotation of the test data (instance labels on the
HR grid). Predictions are made on each volume's own grid and brought onto the HR grid by nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import lightning as L
import numpy as np

from mrisr.callbacks.base import STATUS_FIELDS, EvaluationCallback, Table, check_baselines
from mrisr.eval.topology import CERVICAL_LABELS, TopologyResult, instance_betti, vertebra_topology
from mrisr.io.nifti import Volume
from mrisr.io.regrid import resample_to_reference

TOPOLOGY_FIELDS = STATUS_FIELDS
VERTEBRA_FIELDS = (
    "subject",
    "setting",
    "method",
    "label",
    "detected",
    "matched",
    "b0",
    "b1",
    "b2",
    "b0_error",
    "b1_error",
    "b2_error",
    "dice",
)
SUMMARY_METRICS = (
    "detection_rate",
    "b0_error_rate",
    "b1_error_rate",
    "b2_error_rate",
    "dice_mean",
    "dice_bone",
    "n_false_positives",
)

SegmentFn = Callable[[Volume], Volume]


class TopologyCallback(EvaluationCallback):
    """Betti-number error rates, detection rate and Dice of vertebra instance segmentations of HR, LR and SR.

    Reads ``test_step`` outputs (``name``, ``setting``, ``method``, ``hr``, ``lr``, ``sr``, ``grid``) and the
    ``vertebrae`` annotation (GT instance labels on the HR grid). Without annotation the volume is skipped, and
    without ``segment_fn`` only the ground truth's own Betti numbers are written (method ``GT``); each with one
    warning.

    Args:
        output_dir: Run directory.
        segment_fn: Vertebra instance segmenter (``Volume -> Volume``, or an object with ``segment``).
        rule: Betti error rule, ``paper`` or ``gt_relative`` (:func:`mrisr.eval.topology.vertebra_topology`).
        matching: Detection rule, ``centroid`` (paper) or ``iou`` (Hungarian, IoU > 0.5).
        cervical_labels: Labels with the relaxed cervical b1 rule.
        exclude_labels: GT labels never evaluated (C1 by default).
        exclude_from: GT labels ≥ this are not vertebrae.
        exclude_caudal: Leave out the most caudal (cut) vertebra.
        exclude_border: Leave out vertebrae touching the field of view.
        baselines: Interpolation baselines evaluated like SR.
        filename: Summary CSV name.
        vertebra_filename: Per-vertebra CSV name (``None`` disables it).
    """

    def __init__(
        self,
        output_dir: str,
        segment_fn: SegmentFn | Any | None = None,
        rule: Literal["paper", "gt_relative"] = "paper",
        matching: Literal["centroid", "iou"] = "centroid",
        cervical_labels: Sequence[int] = CERVICAL_LABELS,
        exclude_labels: Sequence[int] = (1,),
        exclude_from: int | None = 50,
        exclude_caudal: bool = True,
        exclude_border: bool = False,
        baselines: Sequence[str] = (),
        filename: str = "topology_metrics.csv",
        vertebra_filename: str | None = "topology_vertebrae.csv",
    ) -> None:
        self.baselines = check_baselines(baselines)
        tables = {"metrics": Table(filename, TOPOLOGY_FIELDS), "vertebrae": Table(vertebra_filename, VERTEBRA_FIELDS)}
        super().__init__(output_dir, tables)
        self.segment_fn = segment_fn
        self.options = {
            "rule": rule,
            "matching": matching,
            "cervical_labels": tuple(cervical_labels),
            "exclude_labels": tuple(exclude_labels),
            "exclude_from": exclude_from,
            "exclude_caudal": exclude_caudal,
            "exclude_border": exclude_border,
        }
        self.filename = filename
        self.vertebra_filename = vertebra_filename

    @property
    def vertebra_rows(self) -> list[dict[str, Any]]:
        """Rows of the per-vertebra table."""
        return self.table_rows("vertebrae")

    @property
    def backend(self) -> str:
        """Backend tag of the rows."""
        fn = self.segment_fn
        name = getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__
        return f"mrisr.eval.topology/{name}"

    def _segment(self, volume: Volume) -> Volume:
        assert self.segment_fn is not None
        fn = getattr(self.segment_fn, "segment", self.segment_fn)
        return fn(volume)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict[str, Any]) -> None:
        subject, setting = str(outputs["name"]), str(outputs["setting"])
        annotations: dict[str, Any] = outputs.get("annotations") or {}
        gt_volume: Volume | None = annotations.get("vertebrae")
        if gt_volume is None:
            self.warn_once("gt", "topology: no 'vertebrae' annotation in the test data; topology skipped")
            return
        hr: Volume = outputs["hr"]
        gt = np.rint(resample_to_reference(gt_volume, hr, order=0)).astype(np.int64)
        base = {"subject": subject, "setting": setting}
        if self.segment_fn is None:
            self.warn_once("segment_fn", "topology: no segment_fn configured; only the GT Betti numbers are written")
            for value, betti in instance_betti(gt).items():
                for k, b in enumerate(betti):
                    self.add_row(
                        {
                            **base,
                            "method": "GT",
                            "metric": f"b{k}_label{value}",
                            "value": float(b),
                            "backend": "mrisr.eval.topology/annotation",
                            "status": "ok",
                        }
                    )
            return
        volumes: dict[str, Volume] = {"HR": hr, "LR": outputs["lr"], str(outputs["method"]): outputs["sr"]}
        for name in self.baselines:
            volumes[name] = self.baseline(trainer, outputs, name)
        key = {"HR": "_hr", "LR": "_lr", str(outputs["method"]): ""}
        for method, volume in volumes.items():
            labels = self._segment(volume)
            pred = np.rint(resample_to_reference(labels, hr, order=0)).astype(np.int64)
            result = vertebra_topology(pred, gt, **self.options)  # type: ignore[arg-type]
            self._record(base, method, result)
            for metric in ("detection_rate", "b0_error_rate", "b1_error_rate"):
                value = result.summary[metric]
                if np.isfinite(value):
                    self.log_metric(f"test/{metric}{key.get(method, '_' + method)}", value)

    def _record(self, base: dict[str, str], method: str, result: TopologyResult) -> None:
        for metric in SUMMARY_METRICS:
            value = float(result.summary[metric])
            status = "ok" if np.isfinite(value) else "empty"
            self.add_row(
                {**base, "method": method, "metric": metric, "value": value, "backend": self.backend, "status": status}
            )
        for r in result.records:
            self.add_row(
                {
                    **base,
                    "method": method,
                    "label": r.label,
                    "detected": int(r.detected),
                    "matched": r.matched,
                    "b0": r.betti_pred[0],
                    "b1": r.betti_pred[1],
                    "b2": r.betti_pred[2],
                    "b0_error": int(r.b0_error),
                    "b1_error": int(r.b1_error),
                    "b2_error": int(r.b2_error),
                    "dice": r.dice,
                },
                table="vertebrae",
            )
