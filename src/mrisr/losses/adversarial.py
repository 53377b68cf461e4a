"""Vanilla (non-saturating) GAN loss on logits, as used to fine-tune RealESRGAN in PRETTIER.

PRETTIER's adversarial term is "the binary cross entropy with sigmoid function" (Giraldo et al. 2024) with weight
λ = 0.05 in L_RealESRGAN = L_c + λ·L_GAN (Eq. 2; Real-ESRGAN's own default is 0.1). Labels: real 1, fake 0. The
discriminator returns per-pixel logits (:class:`mrisr.nets.discriminator.UNetDiscriminatorSN`); BCE is averaged over
all of them. ``docs/models.md §2.5`` gives the order per iteration: generator step with D frozen, then D step on
``D(HR)`` and ``D(SR.detach())``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VanillaGANLoss"]


class VanillaGANLoss(nn.Module):
    """Binary cross-entropy on discriminator logits, with generator and discriminator helpers.

    Args:
        weight: λ applied to the generator's adversarial term only (PRETTIER: 0.05); the discriminator loss is
            unweighted, as in Real-ESRGAN.
    """

    def __init__(self, weight: float = 0.05) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """Unweighted ``BCEWithLogits(logits, 1 if target_is_real else 0)``, mean over all elements.

        Args:
            logits: discriminator output, any shape (per-pixel ``(B, 1, H, W)`` here).
            target_is_real: label of every element.
        """
        target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
        return F.binary_cross_entropy_with_logits(logits, target)

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """``λ · BCE(D(SR), 1)``: the generator is rewarded when D calls its output real."""
        return self.weight * self(fake_logits, True)

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """``BCE(D(HR), 1) + BCE(D(SR.detach()), 0)``; pass logits of a detached SR so G gets no gradient."""
        return self(real_logits, True) + self(fake_logits, False)
