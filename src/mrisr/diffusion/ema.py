"""Exponential moving average (EMA) of network weights for diffusion training (docs/models.md §3.4).

After every ``every``-th call of :meth:`EMA.update`, each floating-point parameter θ̄ of the averaged copy becomes
θ̄ ← d_k·θ̄ + (1 − d_k)·θ (Graf et al.: d = 0.999; their reference updates on every 8th batch, reproduced with
``every=8``). Buffers are copied, not averaged. Validation, renders and inference use the averaged weights.

Warm-up: with a fixed d = 0.999 the initial weights keep a share d^k of the average after k updates (37 % after
1,000, 14 % after 2,000), so a short run is sampled from weights dominated by the initialisation. By default the
decay of the k-th averaging update (k = 0, 1, … counted from the start of training) is
d_k = min(d, (1 + k)/(10 + k)), the ``num_updates`` schedule of TensorFlow's ``ExponentialMovingAverage``: 0.1 at
the first update (the average almost jumps to the current weights), 0.5 at k = 8, 0.9 at k = 80, 0.99 at k = 890,
and d itself from k = 8,990 on for d = 0.999, after which the rule is the plain EMA.

The averaged copy is an ``nn.Module`` attribute, so an :class:`EMA` registered on a LightningModule moves with it
between devices and is saved in its checkpoint (``state_dict`` holds the averaged weights and the update counter).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from mrisr.core.errors import MrisrInputError

__all__ = ["EMA"]


class EMA(nn.Module):
    """Averaged copy of a model.

    Args:
        model: the trained network; deep-copied once as the initial average (gradients off).
        decay: d in θ̄ ← d·θ̄ + (1 − d)·θ, in [0, 1).
        every: apply the rule on every ``every``-th :meth:`update` call only (1 = every optimiser step).
        warmup: use d_k = min(d, (1 + k)/(10 + k)) for the k-th averaging update (k from 0); ``False`` = d throughout.

    Attributes:
        module: the averaged network (can be called directly for inference).
        num_updates: ``update`` calls so far (a buffer, so it is checkpointed; the warm-up position is derived from
            it, so a resumed run continues the schedule where it stopped).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, every: int = 1, warmup: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise MrisrInputError(None, f"EMA decay must be in [0, 1), got {decay}", "use e.g. 0.999")
        if every < 1:
            raise MrisrInputError(None, f"EMA every must be >= 1, got {every}", "use 1, or 8 for Graf parity")
        self.decay = float(decay)
        self.every = int(every)
        self.warmup = bool(warmup)
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._stored: dict[str, torch.Tensor] | None = None

    def _pairs(self, model: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        averaged = dict(self.module.named_parameters())
        names = [name for name, _ in model.named_parameters()]
        if sorted(names) != sorted(averaged):
            raise MrisrInputError(
                None, "model parameters differ from the EMA copy", "use the model the EMA was made from"
            )
        for name, param in model.named_parameters():
            yield averaged[name], param

    def decay_at(self, k: int) -> float:
        """Decay of the ``k``-th averaging update (k = 0 for the first)."""
        if k < 0:
            raise MrisrInputError(None, f"averaging update index must be >= 0, got {k}", "count updates from 0")
        return min(self.decay, (1.0 + k) / (10.0 + k)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> bool:
        """Count one optimiser step and, on every ``every``-th, average ``model`` into the copy.

        Returns:
            True when the average was updated on this call.
        """
        self.num_updates += 1
        calls = int(self.num_updates)
        if calls % self.every:
            return False
        decay = self.decay_at(calls // self.every - 1)
        for average, param in self._pairs(model):
            if average.is_floating_point():
                average.mul_(decay).add_(param.detach().to(average.dtype), alpha=1.0 - decay)
            else:
                average.copy_(param)
        for (_, average), (_, buffer) in zip(self.module.named_buffers(), model.named_buffers(), strict=True):
            average.copy_(buffer)
        return True

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s parameters with the averaged ones (buffers too)."""
        for average, param in self._pairs(model):
            param.copy_(average)
        for (_, average), (_, buffer) in zip(self.module.named_buffers(), model.named_buffers(), strict=True):
            buffer.copy_(average)

    @torch.no_grad()
    def store(self, model: nn.Module) -> None:
        """Keep a copy of ``model``'s current parameters and buffers for :meth:`restore`."""
        self._stored = {name: value.detach().clone() for name, value in model.state_dict().items()}

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        """Put back the parameters saved by :meth:`store`."""
        if self._stored is None:
            raise MrisrInputError(None, "EMA.restore called without a matching store", "call store(model) first")
        model.load_state_dict(self._stored)
        self._stored = None

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Context in which ``model`` holds the averaged weights; its own weights are restored on exit."""
        self.store(model)
        self.copy_to(model)
        try:
            yield model
        finally:
            self.restore(model)
