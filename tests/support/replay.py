"""A LightningModule that replays prepared test items, for testing callbacks without a model."""

from __future__ import annotations

import lightning as L
import torch


class ReplayModule(L.LightningModule):
    """Returns each prepared test item as the ``test_step`` output (the contract of the SR systems)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return batch

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        return batch  # whole volumes stay on the host, as in the SR systems
