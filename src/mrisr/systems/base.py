"""The LightningModule base shared by every mrisr training paradigm (docs/architecture.md, "systems").

* :class:`BaseSystem` — what any mrisr LightningModule needs: optimiser and scheduler factories from the config
  (schedulers that take ``total_steps`` / ``T_max`` get the trainer's estimate), the loss as an injectable
  ``nn.Module``, a method label from the config, the resolved run config stored in every checkpoint (so a model is
  rebuilt from the file alone), and whole test volumes kept in host memory.
* :class:`SRSystem` — a super-resolution system: the test-step contract that the evaluation callbacks consume
  (the batch plus ``sr``, the super-resolved :class:`~mrisr.io.nifti.Volume`, ``uncertainty`` and ``method``), the
  inference protocol and inference options of :mod:`mrisr.inference`, the intensity rule
  (:class:`~mrisr.io.intensity.IntensityRule`, shared with the data module through the config) and the inferer the
  system declares (:meth:`SRSystem.inferer`). Systems train; how a volume is super-resolved lives in
  :mod:`mrisr.inference`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn

from mrisr.inference import InferenceProtocol, Inferer
from mrisr.io.intensity import IntensityRule
from mrisr.io.nifti import Volume

__all__ = ["BaseSystem", "OptimizerFactory", "SRSystem", "SchedulerFactory"]

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]

#: Scheduler arguments filled in from the trainer's estimated number of optimiser steps when the config omits them.
_STEP_COUNT_ARGUMENTS = ("total_steps", "T_max")


class BaseSystem(L.LightningModule):
    """Shared plumbing of mrisr LightningModules.

    Args:
        optimizer: partial optimiser factory (Hydra ``_partial_: true``) called with the parameters;
            ``None`` = Adam with lr 1e-3.
        scheduler: optional partial LR-scheduler factory; ``total_steps`` / ``T_max`` are filled in from the
            trainer's estimated number of steps when the scheduler takes them and the config leaves them out.
        scheduler_interval: ``step`` or ``epoch`` (how often Lightning steps the scheduler).
        loss: the training loss, an ``nn.Module`` (``None`` = the paradigm's default).
        method: label of this model in result tables and sidecars (``None`` = the class name); two model
            families that share a network differ by this label.
    """

    #: The validation metric that selects the best checkpoint, and whether lower (``min``) or higher is better.
    monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")

    def __init__(
        self,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        loss: nn.Module | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__()
        if loss is not None and not isinstance(loss, nn.Module):
            raise ValueError(f"loss must be a torch module config such as {{_target_: torch.nn.L1Loss}}, got {loss!r}")
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}")
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.criterion: nn.Module | None = loss
        self.method = method or type(self).__name__
        # Resolved run config, stored in checkpoints so that infer.py can rebuild the model from the file alone.
        self.run_config: dict[str, Any] | None = None

    def configure_optimizers(self) -> Any:
        optimizer = (
            torch.optim.Adam(self.parameters(), lr=1e-3)
            if self.optimizer_factory is None
            else self.optimizer_factory(params=self.parameters())
        )
        if self.scheduler_factory is None:
            return optimizer
        accepted = inspect.signature(self.scheduler_factory).parameters
        keywords = getattr(self.scheduler_factory, "keywords", {})
        fill = {
            name: int(self.trainer.estimated_stepping_batches)
            for name in _STEP_COUNT_ARGUMENTS
            if name in accepted and name not in keywords
        }
        scheduler = self.scheduler_factory(optimizer=optimizer, **fill)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Whole test volumes stay in host memory; systems move slice batches to the device themselves.
        if isinstance(batch, dict) and any(isinstance(value, Volume) for value in batch.values()):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["mrisr_config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "mrisr_config" in checkpoint:
            self.run_config = checkpoint["mrisr_config"]


class SRSystem(BaseSystem):
    """Base of super-resolution systems: test-step contract, inference protocol, intensity rule, inferer.

    Subclasses implement :meth:`inferer` and pass ``weights`` on. A system built with ``weights`` (the name of a
    weights file that ships with mrisr, ``conf/model/zoo/*.yaml``, or a path) loads them, strictly, once the most
    derived constructor has built every module: such a system is ready for inference without a checkpoint.

    Args:
        optimizer, scheduler, scheduler_interval, loss, method: see :class:`BaseSystem`.
        intensity: the intensity rule of the network's input (raw → network scale); the same rule object as the data
            module's (``${intensity}`` in the config), ``None`` = :class:`~mrisr.io.intensity.IntensityRule` defaults.
        inference_batch_size: planes per forward pass when super-resolving a volume.
        weights: the system's weights (:func:`mrisr.nets.pretrained.resolve_weights`), or ``None``.
    """

    inference_protocol: ClassVar[InferenceProtocol] = InferenceProtocol.CHECKPOINT
    inference_options: ClassVar[tuple[str, ...]] = ("inference_batch_size",)

    def __init__(
        self,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        loss: nn.Module | None = None,
        method: str | None = None,
        intensity: IntensityRule | None = None,
        inference_batch_size: int = 16,
        weights: str | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, scheduler_interval, loss, method)
        self.weights = weights
        self.weights_files()  # refuse missing weights before building anything
        self.intensity = intensity if intensity is not None else IntensityRule()
        if not isinstance(self.intensity, IntensityRule):
            raise ValueError(f"intensity must be an IntensityRule, got {self.intensity!r}")
        self.inference_batch_size = inference_batch_size
        self.validate_inference_options()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Load ``weights`` after the most derived constructor, when every module exists (module docstring).
        super().__init_subclass__(**kwargs)
        constructor = cls.__init__

        @functools.wraps(constructor)
        def construct_then_load(self: SRSystem, *args: Any, **kw: Any) -> None:
            constructor(self, *args, **kw)
            if type(self) is cls and self.weights is not None:
                self.load_weights()

        cls.__init__ = construct_then_load  # type: ignore[method-assign]

    def load_weights(self) -> dict[str, Any]:
        """Load ``weights`` strictly into this system (every tensor from the file); returns the file's payload."""
        from mrisr.nets.pretrained import load_net_weights, resolve_weights

        return load_net_weights(self, resolve_weights(str(self.weights)))

    def weights_files(self) -> list[Path]:
        """The weights files this system was built from (for the digest recorded with every output)."""
        from mrisr.nets.pretrained import resolve_weights

        return [] if self.weights is None else [resolve_weights(str(self.weights))]

    def validate_inference_options(self) -> None:
        """Check the inference options (called after construction and after every change at inference)."""
        if int(self.inference_batch_size) < 1:
            raise ValueError(f"inference_batch_size must be ≥ 1, got {self.inference_batch_size}")

    def inferer(self) -> Inferer:
        """How this system super-resolves a volume (an inferer of :mod:`mrisr.inference`, bound to its networks)."""
        raise NotImplementedError

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Super-resolve one whole test volume; evaluation callbacks consume the returned volumes.

        The generator of each volume is seeded by its position in the test set, so results do not depend on the
        order in which processes see the volumes.
        """
        generator = torch.Generator().manual_seed(int(batch_idx))
        output = self.inferer()(batch["lr"], batch["geometry"], batch["grid"], generator)
        return {**batch, "sr": output.sr, "uncertainty": output.uncertainty, "method": self.method}
