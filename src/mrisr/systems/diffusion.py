"""Conditional diffusion super-resolution in the style of Palette / Graf et al. (MIDL 2024), docs/models.md §3.

Training (docs/models.md §3.4): 2-D planes that contain the through-plane axis (rows) are taken from HR volumes and
degraded on the fly onto the HR grid (:class:`mrisr.data.pairs.SimulatedPairsDataModule`); both images are mapped to
[−1, 1]. The interpolated LR plane is the condition c, concatenated with the noisy HR plane as U-Net input
(:class:`mrisr.nets.diffusion_unet.ConditionalUNet`). Two formulations share the system:

- ``"ddpm"``: discrete DDPM (Ho et al. 2020), t ~ U{0, …, T − 1}, x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε and MSE on ε (Graf);
  sampled with any :mod:`mrisr.diffusion.schedulers` sampler (DDIM-20 in the paper). ``ddpm_target="residual"``
  diffuses the residual x₀ = HR − c instead of the HR plane (SRDiff, Li et al. 2022) and adds c back to every sample:
  the same conditional DDPM, but the net no longer has to rebuild the whole plane from its condition channel.
  ``ddpm_residual_scale`` s multiplies that residual (RMS ≈ 0.17 on the spines' [−1, 1] scale, 0.30 for the image) so
  that the linear noise schedule meets data of at least an image's spread (Chen 2023, input scaling).
- ``"residual"``: InDI (Delbracio & Milanfar 2023), x_t = (1 − t)·x + t·(y + σ·n), regression of x (or the velocity)
  by a network that sees x_t and t only (``net.in_channels`` = 1; ``residual_condition`` adds y for old checkpoints,
  see :mod:`mrisr.diffusion.residual` for why that objective is degenerate); sampled in 1–4 Euler steps from the LR
  plane itself (:class:`ResidualSampler`).

An exponential moving average of the weights (:class:`mrisr.diffusion.ema.EMA`, with warm-up by default) is updated
after every optimiser step and used for validation, testing and inference; it is part of the checkpoint.

Validation logs, besides the EMA loss and the PSNR of sampled planes, the error of the EMA network at fixed noise
levels against a trivial predictor, in ``val_time_bins`` equal bins of t (:meth:`DiffusionSR.time_bin_errors`):
``val/eps_mse_t0-250`` … (DDPM: MSE of the implied ε̂ against ε; the trivial ε̂ = 0 scores E[ε²] ≈ 1) and
``val/x0_mse_t0-250`` … or ``val/x0_mse_t0.00-0.25`` … (DDPM and residual: MSE of the implied, clipped clean image x̂
against HR; the trivial x̂ is the condition itself for DDPM and the network input x_t for the residual path), each
with ``…_trivial_…`` and their ``…_ratio_…`` (< 1: better than trivial).

Volume inference is the diffusion inferer (:class:`mrisr.inference.diffusion.DiffusionPlaneInferer`): one noise map
per volume, orientation and draw; ``samples`` draws whose per-voxel SD is an uncertainty map; one or two passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics import MeanMetric

from mrisr.core.errors import MrisrInputError
from mrisr.diffusion.ema import EMA
from mrisr.diffusion.residual import ResidualPrediction, residual_timesteps, residual_training_target, sample_residual
from mrisr.diffusion.sampling import from_signed, sample, slice_coherent_noise, to_signed
from mrisr.diffusion.schedulers import (
    DDIMSampler,
    PredictionType,
    Sampler,
    ddpm_scheduler,
    diffusion_training_target,
    epsilon_and_sample,
)
from mrisr.inference.diffusion import DiffusionPlaneInferer
from mrisr.io.intensity import IntensityRule
from mrisr.nets.diffusion_unet import ConditionalUNet
from mrisr.systems.base import OptimizerFactory, SchedulerFactory, SRSystem
from mrisr.utils.precision import autocast_dtype as precision_dtype
from mrisr.utils.precision import check_precision_option

__all__ = ["DiffusionSR", "ResidualSampler"]

Formulation = Literal["ddpm", "residual"]
DDPMTarget = Literal["image", "residual"]


@dataclass
class ResidualSampler:
    """Euler integration of the InDI path for the ``"residual"`` formulation (:func:`sample_residual`).

    Args:
        steps: Euler steps from t = 1 (the LR plane) to t = 0 (1–4 is the intended range).
    """

    steps: int = 2


class DiffusionSR(SRSystem):
    """Concatenation-conditioned diffusion SR trained on 2-D planes, applied plane by plane to volumes.

    Args:
        net: the conditional U-Net ``net(x_t (B, 1, H, W), condition (B, 1, H, W), t (B,)) → (B, 1, H, W)``.
        sampler: sampler config (:class:`~mrisr.diffusion.schedulers.DDIMSampler` … for ``"ddpm"``,
            :class:`ResidualSampler` for ``"residual"``), or a Hydra config mapping of one; default DDIM-20 / 2 Euler
            steps. An inference option (``model.sampler.steps=10``, ``model.sampler._target_=…``).
        formulation: ``"ddpm"`` (Graf et al.) or ``"residual"`` (InDI from the LR plane).
        prediction_type: DDPM target: "epsilon" (Graf), "v_prediction" or "sample".
        ddpm_target: what the DDPM diffuses: ``"image"``, the HR plane (Graf), or ``"residual"``, the HR plane minus
            its condition (SRDiff); samples are the condition plus the sampled residual.
        ddpm_residual_scale: factor s of the diffused residual, x₀ = s·(HR − condition) (``ddpm_target="residual"``
            only); x̂₀ and the samples are clipped to ±s, i.e. the residual to ±1 as an image to [−1, 1].
        num_train_timesteps: T of the DDPM schedule.
        beta_start: β at t = 0 of the linear schedule.
        beta_end: β at t = T − 1.
        residual_sigma: σ of the residual path's noise at t = 1 (0 = deterministic path).
        residual_prediction: residual target, "sample" (x) or "velocity".
        residual_time_power: p of the residual training times t = u^(1/p), u ~ U(0, 1), i.e. the density p·t^(p − 1)
            on [0, 1]: 1 = uniform (InDI), p > 1 trains more often near t = 1, the LR end where every Euler
            sampler starts (a 1-step sample is the network's output at t = 1 alone). Validation bins are unaffected.
        residual_condition: also give the residual network the LR plane as a condition (``net.in_channels`` =
            ``out_channels`` + 1). Off by default (``net.in_channels`` = ``out_channels``): with y known the path
            x_t = (1 − t)·x + t·y can be inverted algebraically, which the objective rewards and sampling cannot use.
        ema_decay: EMA decay d (Graf: 0.999).
        ema_every: EMA update on every ``ema_every``-th optimiser step (8 reproduces the reference).
        ema_warmup: EMA decay min(d, (1 + k)/(10 + k)) at the k-th update (:class:`~mrisr.diffusion.ema.EMA`), so
            that short runs are not sampled from weights dominated by the initialisation.
        val_time_bins: number of equal bins of t for the per-noise-level validation errors (0 = none).
        samples: independent draws per volume; > 1 returns their mean and their per-voxel standard deviation as the
            uncertainty of the inference output.
        passes: 1 = one plane orientation (sagittal planes when the input has an L–R in-plane axis, as in training),
            2 = both orientations containing the through-plane axis, averaged.
        precision: network autocast at inference: None/"32" (float32), "bf16", "16" or "auto" (bf16 where the
            device computes it natively, else float32; :mod:`mrisr.utils.precision`).
        progress: show a progress bar over the planes of a volume.
        optimizer: partial optimiser factory (default Adam, lr 1e-4, as in the reference).
        scheduler, scheduler_interval, method, intensity, inference_batch_size: see
            :class:`~mrisr.systems.base.SRSystem`; the intensity rule's scale is the robust maximum of the per-volume
            normalisation (the data module's rule).
        weights: weights that ship with mrisr (``model=zoo/…``), see :class:`~mrisr.systems.base.SRSystem`.
        loss: training loss between network output and target (default MSE).

    Attributes:
        ema: the averaged network (:class:`~mrisr.diffusion.ema.EMA`), used by validation, testing and inference.
    """

    #: The best checkpoint is the one whose EMA samples score best against HR on the validation crops: the training
    #: loss ranks variants and checkpoints in the reverse order of their samples (docs/models.md §3.4, §3.7).
    monitor: ClassVar[tuple[str, str]] = ("val/psnr", "max")

    inference_options: ClassVar[tuple[str, ...]] = (
        "inference_batch_size",
        "sampler",
        "samples",
        "passes",
        "precision",
        "progress",
    )

    def __init__(
        self,
        net: ConditionalUNet,
        sampler: Sampler | ResidualSampler | Mapping[str, Any] | None = None,
        formulation: Formulation = "ddpm",
        prediction_type: PredictionType = "epsilon",
        ddpm_target: DDPMTarget = "image",
        ddpm_residual_scale: float = 1.0,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        residual_sigma: float = 0.0,
        residual_prediction: ResidualPrediction = "sample",
        residual_time_power: float = 1.0,
        residual_condition: bool = False,
        ema_decay: float = 0.999,
        ema_every: int = 1,
        ema_warmup: bool = True,
        val_time_bins: int = 4,
        samples: int = 1,
        passes: int = 1,
        precision: str | None = None,
        progress: bool = True,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        loss: nn.Module | None = None,
        method: str | None = None,
        intensity: IntensityRule | None = None,
        inference_batch_size: int = 16,
        weights: str | None = None,
    ) -> None:
        if formulation not in ("ddpm", "residual"):
            raise MrisrInputError(None, f"formulation {formulation!r} is not supported", "use 'ddpm' or 'residual'")
        if ddpm_target not in ("image", "residual"):
            raise MrisrInputError(None, f"ddpm_target {ddpm_target!r} is not supported", "use 'image' or 'residual'")
        if ddpm_target == "residual" and formulation != "ddpm":
            raise MrisrInputError(
                None,
                "ddpm_target='residual' applies to the DDPM formulation only",
                "drop model.ddpm_target (the residual formulation starts from the LR plane already)",
            )
        if not ddpm_residual_scale > 0 or (ddpm_residual_scale != 1.0 and ddpm_target != "residual"):
            raise MrisrInputError(
                None,
                f"ddpm_residual_scale must be > 0 and applies to ddpm_target='residual', got {ddpm_residual_scale} "
                f"with ddpm_target={ddpm_target!r}",
                "set model.ddpm_target=residual or drop model.ddpm_residual_scale",
            )
        if residual_sigma < 0:
            raise MrisrInputError(None, f"residual_sigma must be >= 0, got {residual_sigma}", "use 0 or e.g. 0.01")
        if not residual_time_power > 0:
            raise MrisrInputError(
                None, f"residual_time_power must be > 0, got {residual_time_power}", "use 1 (uniform t) or e.g. 3"
            )
        if formulation == "residual" and hasattr(net, "in_channels") and hasattr(net, "out_channels"):
            wanted = int(net.out_channels) + (1 if residual_condition else 0)
            if int(net.in_channels) != wanted:
                raise MrisrInputError(
                    None,
                    f"the residual formulation with residual_condition={residual_condition} needs a net with "
                    f"in_channels = {wanted}, got {net.in_channels}",
                    f"set net.in_channels={wanted} (model=palette_residual does); a residual checkpoint written before "
                    "residual_condition existed needs model.residual_condition=true",
                )
        if not 0 <= val_time_bins <= num_train_timesteps:
            raise MrisrInputError(
                None, f"val_time_bins must be in [0, {num_train_timesteps}], got {val_time_bins}", "use e.g. 4"
            )
        self.formulation = formulation
        if sampler is None:
            sampler = DDIMSampler() if formulation == "ddpm" else ResidualSampler()
        self.sampler = sampler
        self.samples = samples
        self.passes = passes
        self.precision = precision
        self.progress = progress
        super().__init__(
            optimizer,
            scheduler,
            scheduler_interval,
            loss or nn.MSELoss(),
            method,
            intensity,
            inference_batch_size,
            weights,
        )
        self.save_hyperparameters(ignore=["net", "sampler", "optimizer", "scheduler", "loss"])
        self.net = net
        self.ema = EMA(net, decay=ema_decay, every=ema_every, warmup=ema_warmup)
        self.ddpm_residual_scale = float(ddpm_residual_scale)
        self.train_scheduler = ddpm_scheduler(
            num_train_timesteps,
            beta_start,
            beta_end,
            prediction_type,
            clip_sample_range=self.ddpm_residual_scale,
        )
        self.ddpm_target: DDPMTarget = ddpm_target
        self.residual_sigma = float(residual_sigma)
        self.residual_prediction: ResidualPrediction = residual_prediction
        self.residual_condition = bool(residual_condition)
        self.residual_time_power = float(residual_time_power)
        self.val_mse, self.val_mse_input = MeanMetric(), MeanMetric()
        self.val_time_bins = int(val_time_bins)
        # Per quantity of time_bin_errors and bin: running means of the model's and of the trivial predictor's MSE.
        self.val_bins = nn.ModuleDict(
            {
                f"{name}_{kind}": nn.ModuleList(MeanMetric() for _ in range(self.val_time_bins))
                for name in self.time_bin_quantities()
                for kind in ("model", "trivial")
            }
        )

    # ---------------------------------------------------------------- options
    def validate_inference_options(self) -> None:
        """Check the inference options; a sampler given as a config mapping is instantiated here."""
        super().validate_inference_options()
        if isinstance(self.sampler, Mapping) or hasattr(self.sampler, "_target_"):
            self.sampler = instantiate(self.sampler)
        residual = isinstance(self.sampler, ResidualSampler)
        if residual != (self.formulation == "residual"):
            wanted = "ResidualSampler" if self.formulation == "residual" else "a mrisr.diffusion.schedulers sampler"
            raise ValueError(f"the {self.formulation} formulation is sampled with {wanted}, got {self.sampler!r}")
        if not residual and not isinstance(self.sampler, Sampler):
            raise ValueError(f"sampler {self.sampler!r} has no build/step (use mrisr.diffusion.schedulers)")
        if int(self.sampler.steps) < 1:
            raise ValueError(f"sampler.steps must be ≥ 1, got {self.sampler.steps}")
        if int(self.samples) < 1:
            raise ValueError(f"samples must be ≥ 1, got {self.samples}")
        if int(self.passes) not in (1, 2):
            raise ValueError(f"passes must be 1 or 2, got {self.passes}")
        if self.precision is not None:
            check_precision_option("precision", self.precision)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """Autocast dtype of the network at inference (from ``precision``)."""
        return precision_dtype(None if self.precision is None else str(self.precision), self.device.type)

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            # Reference optimiser (docs/models.md §3.4); the EMA copy is not optimised.
            return torch.optim.Adam(self.net.parameters(), lr=1e-4)
        return super().configure_optimizers()

    # ---------------------------------------------------------------- training
    def forward(self, x_t: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, condition, timesteps)

    def training_pair(
        self,
        batch: dict[str, torch.Tensor],
        generator: torch.Generator | None = None,
        t: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Network input and target of one training step on a batch of [0, 1] (HR, LR) planes ``(B, 1, H, W)``.

        Args:
            batch: ``hr`` and ``lr`` planes in [0, 1].
            generator: source of the noise and of t (validation); ``None`` = global RNG (training, seeded by
                Lightning).
            t: times per sample, (B,), instead of drawing them: integers in [0, T − 1] for ``"ddpm"``, floats in
                [0, 1] for ``"residual"`` (drawn: u^(1/``residual_time_power``), u ~ U(0, 1)).

        Returns:
            ``x_t``, ``condition``, ``timesteps`` (what the network gets; the condition has zero channels for the
            residual formulation without ``residual_condition``), ``target`` (what it regresses), and ``hr``,
            ``lr``, ``noise``, ``t`` (signed HR and LR planes, the noise drawn, the times).
        """
        hr, lr = to_signed(batch["hr"].float()), to_signed(batch["lr"].float())
        batch_size = hr.shape[0]
        device = generator.device if generator is not None else hr.device
        noise = torch.randn(hr.shape, generator=generator, device=device).to(hr)
        if self.formulation == "ddpm":
            total = int(self.train_scheduler.config.num_train_timesteps)
            if t is None:
                t = torch.randint(0, total, (batch_size,), generator=generator, device=noise.device)
            t = t.to(hr.device)
            x_t, target = diffusion_training_target(self.train_scheduler, self.ddpm_clean(hr, lr), noise, t)
            timesteps = t
        else:
            if t is None:
                t = torch.rand((batch_size,), generator=generator, device=noise.device)
                if self.residual_time_power != 1.0:
                    t = t.pow(1.0 / self.residual_time_power)
            t = t.to(hr.device)
            x_t, target = residual_training_target(
                hr, lr, t, noise if self.residual_sigma > 0 else None, self.residual_sigma, self.residual_prediction
            )
            timesteps = residual_timesteps(t)
        condition = lr if self.formulation == "ddpm" or self.residual_condition else lr[:, :0]
        return {
            "x_t": x_t,
            "condition": condition,
            "timesteps": timesteps,
            "target": target,
            "hr": hr,
            "lr": lr,
            "noise": noise,
            "t": t,
        }

    def ddpm_clean(self, hr: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """What the DDPM diffuses for HR planes and their conditions in [−1, 1]: HR, or s·(HR − condition)."""
        return (hr - condition) * self.ddpm_residual_scale if self.ddpm_target == "residual" else hr

    def ddpm_image(self, clean: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """HR estimate in [−1, 1] from a (clipped) estimate of what the DDPM diffuses: inverse of :meth:`ddpm_clean`."""
        if self.ddpm_target == "image":
            return clean
        return (clean / self.ddpm_residual_scale + condition).clamp(-1.0, 1.0)

    def objective(
        self, net: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Training loss of ``net`` on a batch of [0, 1] (HR, LR) planes ``(B, 1, H, W)``.

        Noise and times are drawn from ``generator`` (validation) or the global RNG (training, seeded by Lightning).
        """
        pair = self.training_pair(batch, generator)
        return self.criterion(net(pair["x_t"], pair["condition"], pair["timesteps"]).float(), pair["target"])

    def time_bin_names(self) -> list[str]:
        """Labels of the validation time bins: ``t0-250`` … (DDPM, integer t) or ``t0.00-0.25`` … (residual)."""
        bins = self.val_time_bins
        if self.formulation == "ddpm":
            total = int(self.train_scheduler.config.num_train_timesteps)
            return [f"t{k * total // bins}-{(k + 1) * total // bins}" for k in range(bins)]
        return [f"t{k / bins:.2f}-{(k + 1) / bins:.2f}" for k in range(bins)]

    def time_bin_quantities(self) -> tuple[str, ...]:
        """What :meth:`time_bin_errors` scores: ``("eps", "x0")`` for DDPM, ``("x0",)`` for the residual path."""
        return ("eps", "x0") if self.formulation == "ddpm" else ("x0",)

    @torch.no_grad()
    def time_bin_errors(
        self, net: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, list[tuple[float, float]]]:
        """Errors of ``net`` and of a trivial predictor in each of ``val_time_bins`` equal bins of t.

        Every sample of the batch is evaluated once per bin, at a t drawn uniformly inside the bin. Quantities:

        - ``"eps"`` (DDPM): the output turned into ε̂ (:func:`~mrisr.diffusion.schedulers.epsilon_and_sample`, any
          prediction type); error MSE(ε̂, ε), trivial predictor ε̂ = 0 with MSE(0, ε) ≈ 1. Near t = T − 1, where
          x_t ≈ ε, a small ratio is easy to reach and says little about sampling.
        - ``"x0"``: the clean-image estimate x̂ (DDPM: from ε̂, clipped to [−1, 1] as the samplers clip it, plus the
          condition for ``ddpm_target="residual"``, so the last bin scores what a one-step sample from t ≈ T − 1
          returns; residual: x̂ = output for ``"sample"``,
          x_t − t·v̂ for ``"velocity"``); error MSE(x̂, HR). Trivial predictor: DDPM x̂ = the condition (the
          interpolated LR plane), MSE(LR, HR); residual x̂ = x_t, the network's own input (zero velocity), MSE
          t²·MSE(LR, HR) for σ = 0. The residual input holds a (1 − t) share of HR, so against the LR plane a net
          that returns its input would score a ratio of E[t²] (0.77 in the bin [0.75, 1]) and look as if it
          restored; against x_t the ratio at t = 1 is the 1-step sample's MSE relative to the input's.

        Args:
            net: the network to score (validation passes the EMA copy).
            batch: ``hr`` and ``lr`` planes in [0, 1], (B, 1, H, W).
            generator: seeded source of the noise and of t.

        Returns:
            Per quantity (:meth:`time_bin_quantities`), one ``(model MSE, trivial MSE)`` pair per bin, lowest t first;
            images in the signed [−1, 1] scale.
        """
        batch_size, bins = batch["hr"].shape[0], self.val_time_bins
        out: dict[str, list[tuple[float, float]]] = {name: [] for name in self.time_bin_quantities()}
        for k in range(bins):
            u = torch.rand((batch_size,), generator=generator, device=generator.device)
            if self.formulation == "ddpm":
                total = int(self.train_scheduler.config.num_train_timesteps)
                low, high = k * total // bins, (k + 1) * total // bins
                t = (low + (u * (high - low)).floor().long()).clamp(low, high - 1)
            else:
                t = ((k + u) / bins).clamp(0.0, 1.0)
            pair = self.training_pair(batch, generator, t)
            output = net(pair["x_t"], pair["condition"], pair["timesteps"]).float()
            if self.formulation == "ddpm":
                alpha_bar = self.train_scheduler.alphas_cumprod.to(output.device)[pair["t"]].view(-1, 1, 1, 1)
                prediction_type = self.train_scheduler.config.prediction_type
                eps_hat, x_hat = epsilon_and_sample(output, pair["x_t"], alpha_bar, prediction_type)
                bound = float(self.train_scheduler.config.clip_sample_range)  # as the samplers clip x̂₀
                x_hat = self.ddpm_image(x_hat.clamp(-bound, bound), pair["lr"])
                out["eps"].append(
                    (float(torch.mean((eps_hat - pair["noise"]) ** 2)), float(torch.mean(pair["noise"] ** 2)))
                )
                trivial = torch.mean((pair["lr"] - pair["hr"]) ** 2)
            else:
                tt = pair["t"].view(-1, 1, 1, 1).to(output)
                x_hat = output if self.residual_prediction == "sample" else pair["x_t"] - tt * output
                # The residual net sees x_t = (1 − t)·HR + t·LR, which holds a (1 − t) share of HR: the trivial
                # x̂ is x_t itself (zero velocity), with MSE t²·MSE(LR, HR) for σ = 0, not the LR plane.
                trivial = torch.mean((pair["x_t"] - pair["hr"]) ** 2)
            out["x0"].append((float(torch.mean((x_hat - pair["hr"]) ** 2)), float(trivial)))
        return out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.objective(self.net, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["hr"].shape[0])
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ema.update(self.net)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """EMA loss with noise fixed per batch, and PSNR of EMA samples against HR (both in [0, 1])."""
        batch_size = batch["hr"].shape[0]
        generator = torch.Generator().manual_seed(int(batch_idx))
        with torch.no_grad():
            loss = self.objective(self.ema.module, batch, generator)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=True)
        condition = to_signed(batch["lr"].float())
        pred = from_signed(self.sample_planes(condition, self.plane_noise(condition.shape[2:], generator), generator))
        hr = batch["hr"].float().clamp(0, 1)
        self.val_mse.update(torch.mean((pred - hr) ** 2), weight=batch_size)
        self.val_mse_input.update(torch.mean((batch["lr"].float().clamp(0, 1) - hr) ** 2), weight=batch_size)
        if self.val_time_bins:
            for name, errors in self.time_bin_errors(self.ema.module, batch, generator).items():
                for k, (model, trivial) in enumerate(errors):
                    self.val_bins[f"{name}_model"][k].update(model, weight=batch_size)
                    self.val_bins[f"{name}_trivial"][k].update(trivial, weight=batch_size)

    def on_validation_epoch_end(self) -> None:
        for name, metric in (("val/psnr", self.val_mse), ("val/psnr_input", self.val_mse_input)):
            self.log(name, -10 * torch.log10(metric.compute().clamp_min(1e-12)))
            metric.reset()
        for name in self.time_bin_quantities() if self.val_time_bins else ():
            for k, label in enumerate(self.time_bin_names()):
                model_metric, trivial_metric = self.val_bins[f"{name}_model"][k], self.val_bins[f"{name}_trivial"][k]
                model, trivial = model_metric.compute(), trivial_metric.compute()
                self.log(f"val/{name}_mse_{label}", model)
                self.log(f"val/{name}_mse_trivial_{label}", trivial)
                self.log(f"val/{name}_mse_ratio_{label}", model / trivial.clamp_min(1e-12))
                model_metric.reset()
                trivial_metric.reset()

    # ---------------------------------------------------------------- sampling
    @staticmethod
    def plane_noise(shape_hw: tuple[int, ...] | torch.Size, generator: torch.Generator) -> torch.Tensor:
        """One (1, 1, H, W) standard-normal map from ``generator``, shared by every plane it is used for."""
        return slice_coherent_noise((int(shape_hw[0]), int(shape_hw[1])), 1, generator)

    def sample_planes(
        self, condition: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """HR estimate in [−1, 1] of a batch of conditions ``(B, 1, H, W)`` in [−1, 1] with the EMA network.

        Args:
            condition: interpolated LR planes (H, W multiples of the U-Net's ``size_multiple``).
            noise: starting noise ``(1 or B, 1, H, W)``.
            generator: for stochastic sampler steps only.
        """
        condition = condition.to(self.device, torch.float32)
        if isinstance(self.sampler, ResidualSampler):
            return sample_residual(
                self.ema.module,
                condition,
                steps=int(self.sampler.steps),
                noise=noise if self.residual_sigma > 0 else None,
                sigma=self.residual_sigma,
                prediction=self.residual_prediction,
                autocast_dtype=self.autocast_dtype,
                conditioned=self.residual_condition,
            )
        clean = sample(
            self.ema.module,
            condition,
            self.sampler,
            noise,
            self.train_scheduler.config,
            generator,
            self.autocast_dtype,
        )
        return self.ddpm_image(clean, condition)

    def inferer(self) -> DiffusionPlaneInferer:
        """Conditional sampling of every plane containing the through-plane axis (module docstring)."""
        return DiffusionPlaneInferer(
            sample=self.sample_planes,
            noise=self.plane_noise,
            intensity=self.intensity,
            size_multiple=int(getattr(self.net, "size_multiple", 1)),
            samples=int(self.samples),
            passes=int(self.passes),
            batch_size=int(self.inference_batch_size),
            progress=bool(self.progress),
            label=self.method,
        )
