"""A prior for the per-volume zero-shot fit: pretraining, shipped weights, loading and export (docs/models.md §1.9).

The per-volume fit of :class:`mrisr.systems.zero_shot.ZeroShotSR` starts from a randomly initialised network (which
is cubic interpolation: WDSR's residual branch starts at zero). A *prior* starts it instead from weights pretrained on
self-training pairs of HR volumes under random acquisitions (:mod:`mrisr.data.prior`), so the short fit of a
time budget only has to adapt them to the input (``model=smore_prior``).

* :class:`ZeroShotPretraining` trains the fit's network on those pairs with ``train.py``
  (``experiment=smore_prior_pretrain``), with the fit's loss and the same one-cycle schedule driven by the fraction
  of the trainer's step or time budget spent. As a checkpoint model it super-resolves with the pretrained network
  alone (no per-volume fit), a diagnostic of what the prior knows.
* :func:`export_prior` turns its checkpoint into the small weights file shipped with the package
  (:data:`mrisr.nets.pretrained.SHIPPED_WEIGHTS`, fp16 state dict plus the network config and provenance);
  ``python -m mrisr.cli.export_prior ckpt=CKPT`` runs it. :mod:`mrisr.nets.pretrained` finds and loads such files.

The network must have a fixed ``shuffle`` (``mrisr.nets.wdsr.WDSR(shuffle=…)``) so that its weights do not depend on
the factor s: pretraining draws s per batch and passes it to the forward call.
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from hydra.utils import get_class
from lightning.pytorch.callbacks import Timer
from torch import nn

from mrisr.core.errors import MrisrInputError
from mrisr.inference import InferenceProtocol
from mrisr.inference.planes import PlaneInferer
from mrisr.io.intensity import IntensityRule
from mrisr.nets.pretrained import WEIGHTS_FORMAT
from mrisr.systems.base import OptimizerFactory, SRSystem
from mrisr.systems.zero_shot import MINMAX, NetFactory, one_cycle_lr
from mrisr.utils.precision import autocast_dtype, check_precision_option

__all__ = ["ZeroShotPretraining", "export_prior"]


class ZeroShotPretraining(SRSystem):
    """Pretrains the per-volume fit's network on random-acquisition self-training pairs (module docstring).

    Batches are those of :class:`mrisr.data.prior.RandomProfilePairsDataModule`: ``lr``, ``hr`` and the batch's
    factor ``scale``. The learning rate follows :func:`~mrisr.systems.zero_shot.one_cycle_lr` at the fraction of the
    trainer's budget spent: the larger of steps / ``trainer.max_steps`` (or the estimated number of steps) and
    elapsed / ``trainer.max_time``, so the schedule completes when the budget does.

    Args:
        net: partial network factory (e.g. WDSR with a fixed ``shuffle``), called with ``scale=reference_scale``.
        optimizer: partial optimizer factory (default Adam).
        max_lr: peak learning rate.
        pct_start: warm-up fraction of the schedule.
        loss: training loss (default L1, the fit's).
        method: label in result tables and sidecars.
        reference_scale: factor the network is built with (its weights do not depend on it with a fixed shuffle).
        channels_last: channels-last memory format (faster convolutions on CPU).
        inference_precision: autocast dtype when super-resolving with the prior alone (``auto``, ``32``, ``bf16``,
            ``16``; :func:`mrisr.utils.precision.autocast_dtype`).
        inference_batch_size: planes per forward pass at inference.
        intensity: intensity rule (min–max to [0, 1], as in the per-volume fit; the data module's).
        weights: weights that ship with mrisr, see :class:`~mrisr.systems.base.SRSystem`.
    """

    inference_protocol = InferenceProtocol.CHECKPOINT
    inference_options = ("inference_batch_size", "inference_precision")

    def __init__(
        self,
        net: NetFactory,
        optimizer: OptimizerFactory | None = None,
        max_lr: float = 1e-3,
        pct_start: float = 0.3,
        loss: nn.Module | None = None,
        method: str | None = None,
        reference_scale: float = 4.0,
        channels_last: bool = True,
        inference_precision: Literal["auto", "32", "bf16", "16"] = "32",
        inference_batch_size: int = 16,
        intensity: IntensityRule | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            loss=loss or nn.L1Loss(),
            method=method,
            intensity=intensity if intensity is not None else MINMAX,
            inference_batch_size=inference_batch_size,
            weights=weights,
        )
        if self.intensity.kind != "minmax":
            raise ValueError(
                "the prior is fine-tuned by the per-volume fit, which scales its input min–max: pretrain with "
                f"intensity=minmax (conf/intensity/minmax.yaml), got {self.intensity}"
            )
        self.max_lr, self.pct_start = max_lr, pct_start
        self.channels_last = channels_last
        self.inference_precision = inference_precision
        check_precision_option("inference_precision", inference_precision)
        self.net = net(scale=reference_scale)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x, scale=scale)

    def _step_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.criterion(self(batch["lr"], scale=float(batch["scale"])), batch["hr"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step_loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step_loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["lr"].shape[0])
        return loss

    def schedule_progress(self) -> float:
        """Fraction of the trainer's budget spent (steps or wall time, whichever is further along)."""
        trainer = self.trainer
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else trainer.estimated_stepping_batches
        progress = trainer.global_step / total if math.isfinite(total) and total > 0 else 0.0
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None:
            remaining, elapsed = timer.time_remaining("train"), timer.time_elapsed("train")
            if remaining is not None and elapsed + remaining > 0:
                progress = max(progress, elapsed / (elapsed + remaining))
        return progress

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        lr = one_cycle_lr(self.schedule_progress(), self.max_lr, self.pct_start)
        for group in self.optimizers().param_groups:
            group["lr"] = lr

    def inferer(self) -> PlaneInferer:
        """The pretrained network alone on a volume (both in-plane orientations averaged; deterministic)."""
        return PlaneInferer(
            predict=lambda planes, geometry: self(planes, scale=geometry.separation_mm / geometry.inplane_spacing_mm),
            intensity=self.intensity,
            rows="input",
            batch_size=int(self.inference_batch_size),
            autocast_dtype=autocast_dtype(str(self.inference_precision), self.device.type),
            device=self.device,
        )


def export_prior(ckpt_path: str | Path, output: str | Path, dtype: torch.dtype = torch.float16) -> dict[str, Any]:
    """Write the network weights of a :class:`ZeroShotPretraining` checkpoint as a small weights file.

    The file holds ``format``, ``state_dict`` (the net's tensors in ``dtype``; fp16 halves the size and its rounding,
    ~1e-3 relative, is far below what the per-volume fine-tuning changes), ``net`` (the network config, without
    ``_partial_``) and ``provenance`` (training sources and ranges, steps, last logged losses, the checkpoint name).

    Returns:
        The payload written.

    Raises:
        MrisrInputError: the checkpoint is not one of a :class:`ZeroShotPretraining` run.
    """
    ckpt_path, output = Path(ckpt_path), Path(output)
    if not ckpt_path.is_file():
        raise MrisrInputError(ckpt_path, "checkpoint file not found", "pass the last.ckpt of the pretraining run")
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    config = checkpoint.get("mrisr_config", {}) if isinstance(checkpoint, dict) else {}
    target = config.get("model", {}).get("_target_", "")
    if target != f"{ZeroShotPretraining.__module__}.{ZeroShotPretraining.__qualname__}":
        raise MrisrInputError(
            ckpt_path,
            f"not a checkpoint of the prior pretraining (model {target or 'unknown'})",
            "pass a checkpoint of `python train.py experiment=smore_prior_pretrain`",
        )
    state = {k.removeprefix("net."): v.to(dtype) for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net_config = {k: v for k, v in config["model"]["net"].items() if k != "_partial_"}
    data = dict(config.get("data", {}))
    try:  # settings left at the data module's code defaults are recorded too
        parameters = inspect.signature(get_class(str(data.get("_target_")))).parameters
        data = {**{k: p.default for k, p in parameters.items() if p.default is not p.empty}, **data}
    except Exception:  # an unknown data module: record what the config states
        pass
    provenance = {
        "checkpoint": ckpt_path.name,
        "global_step": int(checkpoint.get("global_step", 0)),
        "epoch": int(checkpoint.get("epoch", 0)),
        "train_sources": [_source_label(s) for s in data.get("train", [])],
        "val_sources": [_source_label(s) for s in data.get("val", [])],
        "ranges": {k: _plain(data.get(k)) for k in ("profiles", "thickness_mm", "gap_mm", "fwhm_convention")},
        "patch": {k: data.get(k) for k in ("lr_patch_rows", "patch_cols", "batch_size")},
        "seed": config.get("seed"),
        "exported": time.strftime("%Y-%m-%d"),
    }
    payload = {"format": WEIGHTS_FORMAT, "state_dict": state, "net": net_config, "provenance": provenance}
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(output)
    return payload


def _plain(value: Any) -> Any:
    """Tuples as lists (the weights file is read with ``weights_only=True``, which accepts plain containers)."""
    return list(value) if isinstance(value, tuple) else value


def _source_label(source: str) -> str:
    """Source path without the local data root: ``spine_hr/errsm_20/t2.nii.gz`` (or ``mni152``)."""
    parts = Path(str(source)).parts
    return "/".join(parts[-3:]) if len(parts) >= 3 else str(source)
