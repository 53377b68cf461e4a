"""Learning curves on held-out volumes: whole-volume scores at chosen optimiser steps during ``fit``.

At every step of ``eval_steps`` (Lightning ``global_step`` after the optimiser step; 0 = before the first), the
system super-resolves each held-out case's LR volume through :func:`mrisr.api.super_resolve` and the result is scored
by :func:`mrisr.eval.prettier.score_held_out` (PSNR / SSIM in the case's mask, docs/evaluation.md §1). The training
clock excludes the evaluations, so ``train_s`` is the time spent training up to that step; ``loss`` is the mean
training loss over the steps since the previous point. Rows are kept in :attr:`LearningCurve.rows` and passed to
``on_row`` (e.g. to append them to a CSV as they come).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch

from mrisr.experiment.held_out import HeldOutCase, score_held_out

log = logging.getLogger(__name__)

__all__ = ["LearningCurve"]


class LearningCurve(L.Callback):
    """Score held-out volumes at ``eval_steps`` (module docstring).

    Args:
        cases: held-out volumes (:func:`mrisr.eval.prettier.held_out_case`).
        eval_steps: optimiser steps at which to score (0 = the initial network).
        on_row: called with every new row.
        step_offset: added to the step of every row (a second training stage continues the curve of the first).
        time_offset_s: added to ``train_s`` (same use).

    Row keys: ``case``, ``step``, ``train_s``, ``eval_s``, ``loss`` (NaN at the first point), ``psnr_mask``,
    ``ssim_mask``.
    """

    def __init__(
        self,
        cases: Sequence[HeldOutCase],
        eval_steps: Sequence[int],
        on_row: Callable[[Mapping[str, Any]], None] | None = None,
        step_offset: int = 0,
        time_offset_s: float = 0.0,
    ) -> None:
        if not cases:
            raise ValueError("LearningCurve needs at least one held-out case")
        if any(int(s) < 0 for s in eval_steps):
            raise ValueError(f"eval_steps must be ≥ 0, got {list(eval_steps)}")
        self.cases = list(cases)
        self.eval_steps = sorted({int(s) for s in eval_steps})
        self.on_row = on_row
        self.step_offset = int(step_offset)
        self.time_offset_s = float(time_offset_s)
        self.rows: list[dict[str, Any]] = []
        self._train_s = 0.0
        self._clock = 0.0
        self._losses: list[float] = []
        self._done: set[int] = set()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._clock = time.perf_counter()
        if trainer.global_step in self.eval_steps:
            self._evaluate(trainer.global_step, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            self._losses.append(float(loss.detach()))
        step = trainer.global_step
        if step in self.eval_steps and step not in self._done:
            self._evaluate(step, pl_module)

    def _evaluate(self, step: int, pl_module: L.LightningModule) -> None:
        now = time.perf_counter()
        self._train_s += now - self._clock
        loss = sum(self._losses) / len(self._losses) if self._losses else math.nan
        self._losses = []
        was_training = pl_module.training
        for case in self.cases:
            start = time.perf_counter()
            with torch.no_grad():
                scores = score_held_out(pl_module, case)
            row = {
                "case": case.name,
                "step": step + self.step_offset,
                "train_s": round(self._train_s + self.time_offset_s, 1),
                "eval_s": round(time.perf_counter() - start, 1),
                "loss": loss,
                **scores,
            }
            self.rows.append(row)
            log.info("%s step %d: %.3f dB, SSIM %.4f", case.name, row["step"], row["psnr_mask"], row["ssim_mask"])
            if self.on_row is not None:
                self.on_row(row)
        pl_module.train(was_training)
        self._done.add(step)
        self._clock = time.perf_counter()

    @property
    def train_seconds(self) -> float:
        """Training time (s) up to the last evaluation, evaluations excluded."""
        return self._train_s
