"""Cord segmentation system: the LightningModule that trains the cord U-Net (``python train.py experiment=cordseg``).

Its test step segments the held-out subject's whole volumes (HR and thick-slice versions) and logs their Dice
(``test/dice_<variant>``). The network is :func:`mrisr.nets.cord_unet.build_cord_unet`; the volume prediction is
shared with the ``segmenter=unet`` backend (:func:`mrisr.segmentation.unet.predict_cord_mask`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mrisr.eval.lesions import dice
from mrisr.nets.cord_unet import DEFAULT_FEATURES, build_cord_unet
from mrisr.segmentation.unet import predict_cord_mask
from mrisr.systems.base import BaseSystem, OptimizerFactory

__all__ = ["CordSegUNet"]

log = logging.getLogger(__name__)


class CordSegUNet(BaseSystem):
    """2-D cord U-Net trained on axial crops with Dice + cross-entropy.

    Args:
        features: ``BasicUNet`` feature widths (6 numbers).
        optimizer: Partial optimizer factory (Hydra ``_partial_: true``); default Adam, lr 1e-3.
        loss: Training loss on ``(logits (B, 2, H, W), labels (B, 1, H, W))``; default MONAI ``DiceCELoss``
            (one-hot labels, softmax).
        method: Label of the model (default: the class name).
        patch_size: Crop side used at test time (must match the data).
    """

    def __init__(
        self,
        features: Sequence[int] = DEFAULT_FEATURES,
        optimizer: OptimizerFactory | None = None,
        loss: nn.Module | None = None,
        method: str | None = None,
        patch_size: int = 64,
    ) -> None:
        if loss is None:
            from monai.losses import DiceCELoss

            loss = DiceCELoss(to_onehot_y=True, softmax=True)
        super().__init__(optimizer=optimizer, loss=loss, method=method)
        self.save_hyperparameters(ignore=["optimizer", "loss"])
        self.net = build_cord_unet(features)
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.criterion(self(batch["image"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        n = batch["image"].shape[0]
        self.log("val/loss", self.criterion(logits, batch["label"]), prog_bar=True, batch_size=n)
        pred = logits.argmax(1, keepdim=True)
        inter = (pred * batch["label"]).sum().float()
        total = (pred.sum() + batch["label"].sum()).float().clamp_min(1)
        self.log("val/dice", 2 * inter / total, prog_bar=True, batch_size=n)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        mask = predict_cord_mask(self.net, batch["image"], self.patch_size, self.device)
        value = dice(mask.data, batch["mask"].data)
        self.log(f"test/dice_{batch['variant']}", value, batch_size=1)
        log.info("cord U-Net: %s %s Dice %.3f", batch["name"], batch["variant"], value)
        return {"name": batch["name"], "variant": batch["variant"], "dice": value, "method": self.method}
