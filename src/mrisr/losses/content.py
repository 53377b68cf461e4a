"""PRETTIER content loss L_c = L_perceptual + L_1 (Giraldo et al. 2024, Eq. 2; ``docs/models.md §2.5``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ContentLoss"]


class ContentLoss(nn.Module):
    """``L_c = l1_weight · mean|p − t| + perceptual_weight · L_perceptual(p, t)``; PRETTIER weights both by 1.

    L_c is both the EDSR fine-tuning objective and PRETTIER's model-selection criterion (minimum validation L_c).

    Args:
        perceptual: a perceptual loss module ``(pred, target) -> scalar``, e.g.
            :class:`mrisr.losses.perceptual.PerceptualLoss`.
        l1_weight: weight of the pixel L1 term.
        perceptual_weight: weight of the perceptual term.
    """

    def __init__(self, perceptual: nn.Module, l1_weight: float = 1.0, perceptual_weight: float = 1.0) -> None:
        super().__init__()
        self.perceptual = perceptual
        self.l1_weight = l1_weight
        self.perceptual_weight = perceptual_weight

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, return_parts: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Content loss between ``pred`` and ``target`` ``(B, C, H, W)`` in [0, 1].

        Args:
            pred: network output.
            target: HR reference (never receives gradients).
            return_parts: also return the unweighted, detached parts ``{"l1": …, "perceptual": …}`` for logging.

        Returns:
            The scalar total, or ``(total, parts)``.
        """
        l1 = F.l1_loss(pred, target.detach())
        perceptual = self.perceptual(pred, target)
        total = self.l1_weight * l1 + self.perceptual_weight * perceptual
        if return_parts:
            return total, {"l1": l1.detach(), "perceptual": perceptual.detach()}
        return total
