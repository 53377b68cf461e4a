"""Supervised through-plane SR: a 2-D network trained on (interpolated LR, HR) slice pairs.

Training pairs come from :class:`mrisr.data.pairs.SimulatedPairsDataModule`: thick slices simulated from HR volumes,
brought back onto the HR grid by cubic B-spline interpolation. The network sees 2-D planes that contain the
through-plane axis (rows) and one in-plane axis (columns) and predicts the HR plane. At inference the volume is
processed as stacks of such planes along both in-plane axes and the two predictions are averaged (the two
orthogonal orientations of SMORE, Zhao et al. 2021).
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric

from mrisr.inference.planes import PlaneInferer
from mrisr.io.intensity import IntensityRule
from mrisr.systems.base import OptimizerFactory, SchedulerFactory, SRSystem


class SupervisedSR(SRSystem):
    """LightningModule for a 2-D SR network trained with a pixel (or any content) loss.

    Args:
        net: the network ``(B, 1, H, W) → (B, 1, H, W)`` operating on slices already on the target grid.
        optimizer: partial optimizer factory (Hydra ``_partial_: true``), called with the parameters.
        scheduler: optional partial LR scheduler factory (see :class:`~mrisr.systems.base.BaseSystem`).
        scheduler_interval: ``step`` or ``epoch``.
        loss: the training loss module (default L1, ``torch.nn.L1Loss``).
        method: label in result tables (default: the class name).
        intensity: the intensity rule of the network input (the data module's, ``${intensity}``).
        inference_batch_size: slices per forward pass when super-resolving a volume.
        weights: weights that ship with mrisr (``model=zoo/…``), see :class:`~mrisr.systems.base.SRSystem`.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        loss: nn.Module | None = None,
        method: str | None = None,
        intensity: IntensityRule | None = None,
        inference_batch_size: int = 16,
        weights: str | None = None,
    ) -> None:
        super().__init__(
            optimizer,
            scheduler,
            scheduler_interval,
            loss or nn.L1Loss(),
            method,
            intensity,
            inference_batch_size,
            weights,
        )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "loss"])
        self.net = net
        self.val_mse, self.val_mse_input = MeanMetric(), MeanMetric()

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

    # ---------------------------------------------------------------- inference on whole volumes
    def inferer(self) -> PlaneInferer:
        """Cubic B-spline onto the output grid, then the network over both plane orientations (deterministic)."""
        return PlaneInferer(
            predict=lambda planes, geometry: self.net(planes),
            intensity=self.intensity,
            rows="output",
            batch_size=int(self.inference_batch_size),
            device=self.device,
        )
