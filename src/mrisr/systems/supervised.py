"""Supervised through-plane SR: a 2-D network trained on (interpolated LR, HR) slice pairs.

Training pairs come from :class:`mrisr.data.pairs.SimulatedPairsDataModule`: thick slices simulated from HR volumes,
brought back onto the HR grid by cubic B-spline interpolation. The network sees 2-D planes that contain the
through-plane axis (rows) and one in-plane axis (columns) and predicts the HR plane. At inference the volume is
processed as stacks of such planes along both in-plane axes and the two predictions are averaged (the two
orthogonal orientations of SMORE, Zhao et al. 2021).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics import MeanMetric

from mrisr.inference import OutputGrid, interpolate_volume
from mrisr.io.geometry import SliceGeometry
from mrisr.io.nifti import Volume
from mrisr.systems.planes import predict_planes

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def intensity_scale(data: np.ndarray, percentile: float = 99.5) -> float:
    """Scale that maps the ``percentile`` of the foreground (voxels > 0) of ``data`` to 1.

    The same rule is applied to training volumes and to inference inputs, so a network always sees inputs in the
    range it was trained on (evaluation.md §1 intensity rule).
    """
    foreground = data[data > 0]
    if foreground.size == 0:
        raise ValueError("the volume has no voxel > 0: cannot normalise its intensity")
    value = float(np.percentile(foreground, percentile))
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"intensity percentile {percentile} is {value}: cannot normalise")
    return value


class SupervisedSR(L.LightningModule):
    """LightningModule for a 2-D SR network trained with a pixel loss.

    Args:
        net: the network ``(B, 1, H, W) → (B, 1, H, W)`` operating on slices already on the target grid.
        optimizer: partial optimizer factory (Hydra ``_partial_: true``), called with the parameters.
        scheduler: optional partial LR scheduler factory; ``total_steps`` / ``T_max`` are filled in from the trainer's
            estimated number of steps when the scheduler takes them and the config leaves them out.
        loss: pixel loss, ``l1`` or ``mse``.
        percentile: intensity-normalisation percentile used at inference (must match the data module).
        inference_batch_size: slices per forward pass when super-resolving a volume.
    """

    fits_per_volume = False

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        loss: Literal["l1", "mse"] = "l1",
        percentile: float = 99.5,
        inference_batch_size: int = 16,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        if loss not in ("l1", "mse"):
            raise ValueError(f"loss must be 'l1' or 'mse', got {loss!r}")
        self.criterion: nn.Module = nn.L1Loss() if loss == "l1" else nn.MSELoss()
        self.percentile = percentile
        self.inference_batch_size = inference_batch_size
        self.val_mse, self.val_mse_input = MeanMetric(), MeanMetric()
        # Resolved run config, stored in checkpoints so that infer.py can rebuild the model from the file alone.
        self.run_config: dict[str, Any] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.criterion(self(batch["lr"]), batch["hr"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["lr"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        pred = self(batch["lr"]).float()
        hr = batch["hr"].float()
        batch_size = batch["lr"].shape[0]
        self.log("val/loss", self.criterion(pred, hr), prog_bar=True, batch_size=batch_size, sync_dist=True)
        # PSNR is computed from the mean squared error over all validation pixels of all processes (a mean of
        # per-batch PSNRs would depend on batching and on the number of processes).
        self.val_mse.update(torch.mean((pred.clamp(0, 1) - hr.clamp(0, 1)) ** 2), weight=batch_size)
        self.val_mse_input.update(
            torch.mean((batch["lr"].float().clamp(0, 1) - hr.clamp(0, 1)) ** 2), weight=batch_size
        )

    def on_validation_epoch_end(self) -> None:
        for name, metric in (("val/psnr", self.val_mse), ("val/psnr_input", self.val_mse_input)):
            self.log(name, -10 * torch.log10(metric.compute().clamp_min(1e-12)))
            metric.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Super-resolve one whole test volume; evaluation callbacks consume the returned volumes."""
        lr: Volume = batch["lr"]
        geometry: SliceGeometry = batch["geometry"]
        grid = batch["grid"]
        sr = self.super_resolve(lr, geometry, grid)
        return {**batch, "sr": sr, "method": type(self.net).__name__}

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Whole test volumes stay in host memory; super_resolve moves slice batches to the device itself.
        if isinstance(batch, dict) and "geometry" in batch:
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        accepted = inspect.signature(self.scheduler_factory).parameters
        fill: dict[str, Any] = {}
        keywords = getattr(self.scheduler_factory, "keywords", {})
        for name in ("total_steps", "T_max"):
            if name in accepted and name not in keywords:
                fill[name] = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, **fill)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["mrisr_config"] = self.run_config

    # ---------------------------------------------------------------- inference on whole volumes
    def super_resolve(self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid) -> Volume:
        """Cubic B-spline onto ``grid``, then the network over both plane orientations (intensities restored)."""
        scale = intensity_scale(volume.data, self.percentile)
        upsampled = interpolate_volume(volume, grid, order=3)
        was_training = self.training
        self.eval()
        x = torch.from_numpy(upsampled.data / scale).to(self.device, torch.float32)
        pred = predict_planes(self, x, grid.axis, self.inference_batch_size).cpu().numpy() * scale
        self.train(was_training)
        return Volume(data=pred.astype(np.float32), affine=upsampled.affine, header=upsampled.header, path=None)
