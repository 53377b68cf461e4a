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

from mrisr.inference import OutputGrid, interpolate_volume
from mrisr.io.geometry import SliceGeometry
from mrisr.io.intensity import DEFAULT_PERCENTILE
from mrisr.io.nifti import Volume
from mrisr.systems.base import OptimizerFactory, SchedulerFactory, SRSystem
from mrisr.systems.planes import predict_planes


class SupervisedSR(SRSystem):
    """LightningModule for a 2-D SR network trained with a pixel (or any content) loss.

    Args:
        net: the network ``(B, 1, H, W) → (B, 1, H, W)`` operating on slices already on the target grid.
        optimizer: partial optimizer factory (Hydra ``_partial_: true``), called with the parameters.
        scheduler: optional partial LR scheduler factory (see :class:`~mrisr.systems.base.BaseSystem`).
        scheduler_interval: ``step`` or ``epoch``.
        loss: the training loss module (default L1, ``torch.nn.L1Loss``).
        method: label in result tables (default: the class name).
        percentile: intensity-normalisation percentile used at inference (must match the data module).
        inference_batch_size: slices per forward pass when super-resolving a volume.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        loss: nn.Module | None = None,
        method: str | None = None,
        percentile: float = DEFAULT_PERCENTILE,
        inference_batch_size: int = 16,
    ) -> None:
        super().__init__(
            optimizer, scheduler, scheduler_interval, loss or nn.L1Loss(), method, percentile, inference_batch_size
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
    def super_resolve(
        self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid, generator: torch.Generator | None = None
    ) -> Volume:
        """Cubic B-spline onto ``grid``, then the network over both plane orientations (intensities restored).

        Deterministic: ``generator`` is not used.
        """
        scaling = self.intensity_scaling(volume)
        upsampled = interpolate_volume(volume, grid, order=3)
        was_training = self.training
        self.eval()
        x = torch.from_numpy(scaling.apply(upsampled.data)).to(self.device, torch.float32)
        pred = predict_planes(self, x, grid.axis, int(self.inference_batch_size)).cpu().numpy()
        self.train(was_training)
        return self.restored(pred, scaling, upsampled)
