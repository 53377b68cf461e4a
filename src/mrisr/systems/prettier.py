"""PRETTIER: supervised fine-tuning of natural-image ×4 SR networks on thick-slice MRI (Giraldo et al. 2024).

docs/models.md §2. Two systems:

* :class:`PrettierSR` — a ×4 network (EDSR-L) trained with the content loss L_c = L_1 + L_perceptual (Eq. 2). The
  net runs at its native factor on the LR patch (16 × 96 → 64 × 384); the output is resized with antialiased bilinear
  to the HR patch (96 × 96) before the loss (§2.6).
* :class:`AdversarialSR` — the same plus a discriminator (RealESRGAN: RRDBNet + UNetDiscriminatorSN), Lightning
  manual optimisation: generator step with D frozen (L_c + λ·BCE(D(SR), 1)), then discriminator step
  BCE(D(HR), 1) + BCE(D(SR.detach()), 0) (§2.5); optional EMA of the generator.

Volume reconstruction is PRETTIER's three-slice inferer (:class:`mrisr.inference.prettier.ThreeSliceInferer`).

The frozen perceptual backbone is held outside the registered modules, so checkpoints hold only the trained nets.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mrisr.inference.prettier import CHANNEL_WEIGHTS, ThreeSliceInferer
from mrisr.io.intensity import PRETTIER_RULE, IntensityRule
from mrisr.losses.adversarial import VanillaGANLoss
from mrisr.losses.content import ContentLoss
from mrisr.losses.perceptual import PerceptualLoss
from mrisr.nets.pretrained import load_pretrained
from mrisr.systems.base import OptimizerFactory, SchedulerFactory, SRSystem

__all__ = ["AdversarialSR", "PrettierSR", "resize_patch"]


def resize_patch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of ``(B, C, H, W)`` to ``size`` (same field of view, ``align_corners=False``)."""
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


class _Unregistered:
    """Holds a module outside ``nn.Module`` registration (excluded from ``state_dict`` and ``parameters``)."""

    def __init__(self, module: nn.Module | None) -> None:
        self.module = module


class PrettierSR(SRSystem):
    """Supervised PRETTIER fine-tuning of a ×``native_scale`` network with the content loss (docs/models.md §2.6).

    Args:
        net: ``(B, C, h, w) → (B, C, native_scale·h, native_scale·w)`` with ``C`` = ``in_channels``
            (e.g. :class:`mrisr.nets.edsr.EDSR` with ``upscale=4``).
        loss: the content loss (default: :class:`~mrisr.losses.content.ContentLoss` on a random-init VGG-19, which
            warns). Held outside the registered modules: its frozen backbone is never checkpointed.
        optimizer, scheduler, scheduler_interval, method: see :class:`~mrisr.systems.base.BaseSystem`
            (PRETTIER: Adam; CosineAnnealingWarmRestarts stepped per ``epoch``).
        intensity: the intensity rule of the network input, the data module's (PRETTIER: 1.25 × the LR foreground
            P99.5, ``conf/intensity/prettier.yaml``).
        inference_batch_size: items per forward pass in :meth:`super_resolve`.
        in_channels: contiguous slices per item (1 or 3); must equal the net's channels and the data's.
        native_scale: the net's upsampling factor.
        net_range: the net sees ``x · net_range`` and its output is divided by it (EDSR weights: 255).
        merge: channel merge at inference (``weighted`` or ``center``).
        pretrained: local weights file loaded into ``net`` with :func:`~mrisr.nets.pretrained.load_pretrained`
            when fitting starts (not at inference: checkpoints carry the weights).
        pretrained_key: ``checkpoint_key`` of :func:`~mrisr.nets.pretrained.load_pretrained`.
        adapt_channels: adapt RGB ↔ 1-channel convs when loading ``pretrained``.
        weights: the whole system's weights that ship with mrisr (``model=zoo/…``; not the fine-tuning start,
            ``pretrained``), see :class:`~mrisr.systems.base.SRSystem`.

    Logged: ``train/loss``, ``train/l1``, ``train/perceptual``, ``val/content_loss`` (the selection criterion, also
    as ``val/loss``), ``val/l1``, ``val/perceptual``, ``val/psnr``. ``validation_step`` returns
    ``{"sr", "hr"}``: the ``(B, C, P, P)`` SR and HR patches on the normalised scale (SR not clipped).
    """

    inference_options: ClassVar[tuple[str, ...]] = ("inference_batch_size", "merge")
    monitor: ClassVar[tuple[str, str]] = ("val/content_loss", "min")

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        method: str | None = None,
        intensity: IntensityRule | None = None,
        inference_batch_size: int = 6,
        in_channels: int = 3,
        native_scale: int = 4,
        net_range: float = 1.0,
        merge: str = "weighted",
        pretrained: str | None = None,
        pretrained_key: str | None = "auto",
        adapt_channels: bool = True,
        weights: str | None = None,
    ) -> None:
        self.merge = merge
        self.in_channels = in_channels
        super().__init__(
            optimizer,
            scheduler,
            scheduler_interval,
            None,
            method,
            intensity if intensity is not None else PRETTIER_RULE,
            inference_batch_size,
            weights,
        )
        if in_channels not in CHANNEL_WEIGHTS:
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if net_range <= 0 or native_scale < 1:
            raise ValueError("net_range must be > 0 and native_scale ≥ 1")
        self.save_hyperparameters(
            ignore=["net", "loss", "optimizer", "scheduler", "discriminator", "gan_loss", "d_optimizer", "d_scheduler"]
        )
        self.net = net
        self.native_scale = native_scale
        self.net_range = net_range
        self.pretrained = pretrained
        self.pretrained_key = pretrained_key
        self.adapt_channels = adapt_channels
        self.pretrained_record: dict[str, Any] | None = None
        self._content = _Unregistered(loss if loss is not None else ContentLoss(PerceptualLoss()))
        perceptual = getattr(self._content.module, "perceptual", None)
        self.features_description = getattr(perceptual, "features_description", None)
        self.hparams["features_description"] = self.features_description

    # ---------------------------------------------------------------- plumbing
    @property
    def content_loss(self) -> nn.Module:
        """The content loss L_c (not a registered submodule)."""
        return self._content.module

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> PrettierSR:
        # Device / dtype moves reach the unregistered loss too.
        super()._apply(fn, recurse)
        self._content.module._apply(fn)
        return self

    def validate_inference_options(self) -> None:
        super().validate_inference_options()
        if self.merge not in ("weighted", "center"):
            raise ValueError(f"merge must be 'weighted' or 'center', got {self.merge!r}")

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.pretrained and self.pretrained_record is None:
            self.load_pretrained_weights()

    def load_weights(self) -> dict[str, Any]:
        """Load ``weights``: a weights file of mrisr (the whole system), or natural-image generator weights.

        A name of :data:`mrisr.nets.pretrained.NCNN_WEIGHTS` (``realesrgan_x4plus``) is loaded into the generator
        only, as it would be before fine-tuning: the model then runs without fine-tuning (PRETTIER's baseline,
        ``model=zoo/realesrgan_x4plus``).
        """
        from mrisr.nets.pretrained import NCNN_WEIGHTS

        if str(self.weights) in NCNN_WEIGHTS:
            self.pretrained_record = load_pretrained(
                self.generator(), str(self.weights), checkpoint_key="auto", adapt_channels=self.adapt_channels
            )
            return self.pretrained_record
        return super().load_weights()

    def weights_files(self) -> list[Any]:
        """The weights files the system was built from (ncnn generator weights: the ``.param`` and ``.bin`` files)."""
        from mrisr.nets.pretrained import NCNN_WEIGHTS, ncnn_files

        if self.weights is not None and str(self.weights) in NCNN_WEIGHTS:
            return list(ncnn_files(str(self.weights)))
        return super().weights_files()

    def load_pretrained_weights(self) -> dict[str, Any]:
        """Load ``pretrained`` into the generator; the record goes to hparams and checkpoints."""
        self.pretrained_record = load_pretrained(
            self.net, self.pretrained, checkpoint_key=self.pretrained_key, adapt_channels=self.adapt_channels
        )
        self.hparams["pretrained_record"] = self.pretrained_record
        if self.run_config is not None:
            self.run_config["pretrained_record"] = self.pretrained_record
        return self.pretrained_record

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["mrisr_prettier"] = {
            "pretrained": self.pretrained_record,
            "features_description": self.features_description,
        }

    # ---------------------------------------------------------------- forward and losses
    def generator(self) -> nn.Module:
        """The network used for validation and inference."""
        return self.net

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """Native-scale prediction ``(B, C, s·h, s·w)`` of normalised LR items ``(B, C, h, w)``."""
        if lr.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels}-channel items, got shape {tuple(lr.shape)}")
        return self.generator()(lr * self.net_range) / self.net_range

    def _predict_patch(self, net: nn.Module, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return resize_patch(net(lr * self.net_range) / self.net_range, size)

    def _content_terms(self, pred: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self.content_loss
        if isinstance(loss, ContentLoss):
            return loss(pred, hr, return_parts=True)
        return loss(pred, hr), {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pred = self._predict_patch(self.net, batch["lr"], tuple(batch["hr"].shape[-2:]))
        loss, parts = self._content_terms(pred, batch["hr"])
        n = batch["lr"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Log the validation losses; return the SR and HR patches (for patch-metric callbacks)."""
        hr = batch["hr"].float()
        pred = self._predict_patch(self.generator(), batch["lr"], tuple(hr.shape[-2:])).float()
        loss, parts = self._content_terms(pred, hr)
        n = batch["lr"].shape[0]
        self.log("val/content_loss", loss, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/loss", loss, batch_size=n, sync_dist=True)
        for name, value in parts.items():
            self.log(f"val/{name}", value, batch_size=n, sync_dist=True)
        mse = torch.mean((pred.clamp(0, 1) - hr.clamp(0, 1)) ** 2)
        self.log("val/psnr", -10 * torch.log10(mse.clamp_min(1e-12)), batch_size=n, sync_dist=True)
        return {"sr": pred.detach(), "hr": hr}

    # ---------------------------------------------------------------- inference on whole volumes
    def inferer(self) -> ThreeSliceInferer:
        """PRETTIER v1 reconstruction (:func:`~mrisr.inference.prettier.reconstruct_volume`); deterministic."""
        return ThreeSliceInferer(
            predict=self.forward,
            intensity=self.intensity,
            in_channels=self.in_channels,
            native_scale=self.native_scale,
            batch_size=int(self.inference_batch_size),
            merge=self.merge,
            device=self.device,
        )


class AdversarialSR(PrettierSR):
    """PRETTIER RealESRGAN fine-tuning: content loss + λ·GAN loss, alternating G and D (manual optimisation).

    Args:
        net: the generator (e.g. :class:`mrisr.nets.rrdbnet.RRDBNet`, scale 4).
        discriminator: per-pixel logit discriminator on HR patches (e.g.
            :class:`mrisr.nets.discriminator.UNetDiscriminatorSN`).
        loss: content loss L_c (see :class:`PrettierSR`).
        gan_loss: adversarial loss (default :class:`~mrisr.losses.adversarial.VanillaGANLoss`, λ = 0.05).
        optimizer, scheduler: generator optimiser / scheduler factories (PRETTIER: Adam 1e-4; warm restarts T0 6,
            Tmult 1).
        d_optimizer, d_scheduler: discriminator factories (PRETTIER: Adam 5e-6; warm restarts T0 8, Tmult 2).
        scheduler_interval: ``epoch`` or ``step`` (both schedulers are stepped manually).
        ema_decay: keep an exponential moving average of the generator with this decay (Real-ESRGAN 0.999) and use
            it for validation and inference; ``None`` = off (PRETTIER parity).
        other arguments: see :class:`PrettierSR`.

    Logged in addition: ``train/g_gan``, ``train/d_loss``, ``train/d_real``, ``train/d_fake`` (mean logits).
    """

    def __init__(
        self,
        net: nn.Module,
        discriminator: nn.Module,
        loss: nn.Module | None = None,
        gan_loss: VanillaGANLoss | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        d_optimizer: OptimizerFactory | None = None,
        d_scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        ema_decay: float | None = None,
        method: str | None = None,
        intensity: IntensityRule | None = None,
        inference_batch_size: int = 6,
        in_channels: int = 3,
        native_scale: int = 4,
        net_range: float = 1.0,
        merge: str = "weighted",
        pretrained: str | None = None,
        pretrained_key: str | None = "auto",
        adapt_channels: bool = True,
        pretrained_discriminator: str | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__(
            net,
            loss,
            optimizer,
            scheduler,
            scheduler_interval,
            method,
            intensity,
            inference_batch_size,
            in_channels,
            native_scale,
            net_range,
            merge,
            pretrained,
            pretrained_key,
            adapt_channels,
            weights,
        )
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay}")
        self.automatic_optimization = False
        self.discriminator = discriminator
        self.gan_loss = gan_loss if gan_loss is not None else VanillaGANLoss()
        self.d_optimizer_factory = d_optimizer
        self.d_scheduler_factory = d_scheduler
        self.ema_decay = ema_decay
        self.pretrained_discriminator = pretrained_discriminator
        self.net_ema = copy.deepcopy(net).requires_grad_(False) if ema_decay is not None else None

    def generator(self) -> nn.Module:
        return self.net_ema if self.net_ema is not None else self.net

    def load_pretrained_weights(self) -> dict[str, Any]:
        record = super().load_pretrained_weights()
        if self.net_ema is not None:
            self.net_ema.load_state_dict(self.net.state_dict())
        return record

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.pretrained_discriminator and "pretrained_discriminator_record" not in self.hparams:
            self.hparams["pretrained_discriminator_record"] = load_pretrained(
                self.discriminator, self.pretrained_discriminator, checkpoint_key="auto", adapt_channels=True
            )

    def configure_optimizers(self) -> Any:
        def build(factory: OptimizerFactory | None, params: Any, lr: float) -> torch.optim.Optimizer:
            return torch.optim.Adam(params, lr=lr) if factory is None else factory(params=params)

        opt_g = build(self.optimizer_factory, self.net.parameters(), 1e-4)
        opt_d = build(self.d_optimizer_factory, self.discriminator.parameters(), 5e-6)
        schedulers = [
            factory(optimizer=opt)
            for factory, opt in ((self.scheduler_factory, opt_g), (self.d_scheduler_factory, opt_d))
            if factory is not None
        ]
        return [opt_g, opt_d], schedulers

    def _backward(self, loss: torch.Tensor) -> None:
        if self._trainer is not None:
            self.manual_backward(loss)
        else:
            loss.backward()

    def generator_step(
        self, batch: dict[str, torch.Tensor], opt_g: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One generator update with the discriminator frozen; returns SR patches (detached) and loss terms."""
        self.discriminator.requires_grad_(False)
        pred = self._predict_patch(self.net, batch["lr"], tuple(batch["hr"].shape[-2:]))
        content, parts = self._content_terms(pred, batch["hr"])
        g_gan = self.gan_loss.generator_loss(self.discriminator(pred))
        loss = content + g_gan
        opt_g.zero_grad(set_to_none=True)
        self._backward(loss)
        opt_g.step()
        self.discriminator.requires_grad_(True)
        if self.net_ema is not None:
            with torch.no_grad():
                for ema, p in zip(self.net_ema.parameters(), self.net.parameters(), strict=True):
                    ema.lerp_(p.detach(), 1.0 - self.ema_decay)
                for ema, b in zip(self.net_ema.buffers(), self.net.buffers(), strict=True):
                    ema.copy_(b)
        return pred.detach(), {"loss": loss.detach(), "content": content.detach(), "g_gan": g_gan.detach(), **parts}

    def discriminator_step(self, hr: torch.Tensor, sr: torch.Tensor, opt_d: Any) -> dict[str, torch.Tensor]:
        """One discriminator update on ``D(HR)`` (real) and ``D(SR.detach())`` (fake)."""
        real, fake = self.discriminator(hr), self.discriminator(sr.detach())
        d_loss = self.gan_loss.discriminator_loss(real, fake)
        opt_d.zero_grad(set_to_none=True)
        self._backward(d_loss)
        opt_d.step()
        return {"d_loss": d_loss.detach(), "d_real": real.detach().mean(), "d_fake": fake.detach().mean()}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        sr, g_terms = self.generator_step(batch, opt_g)
        d_terms = self.discriminator_step(batch["hr"], sr, opt_d)
        n = batch["lr"].shape[0]
        self.log("train/loss", g_terms.pop("loss"), prog_bar=True, batch_size=n)
        for name, value in {**g_terms, **d_terms}.items():
            self.log(f"train/{name}", value, batch_size=n)
        if self.scheduler_interval == "step":
            self._step_schedulers()

    def on_train_epoch_end(self) -> None:
        if self.scheduler_interval == "epoch":
            self._step_schedulers()

    def _step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()
