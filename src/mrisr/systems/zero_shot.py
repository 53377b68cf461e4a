"""Zero-shot (self-supervised) through-plane SR fitted per volume: SMORE / ECLARE family (docs/models.md §1).

No external training data: each input volume is its own training set. The work is split by job:

* :class:`ZeroShotSR` — the recipe (network factory, optimiser, schedule, patches, budget, slice-profile settings) and
  its per-volume fit, :meth:`ZeroShotSR.fit_volume`: given the input's resolved acquisition
  (:mod:`mrisr.inference.acquisition`: thickness and profile kind with their sources), it builds the slice kernel (the
  same :func:`~mrisr.physics.profiles.slice_kernel` as every simulation), the self-training pairs of the volume's own
  in-plane data (:class:`mrisr.data.zero_shot.SelfTrainingPairs`) and a fresh network (randomly initialised, or from
  pretrained weights ``init_weights``: a prior, :mod:`mrisr.systems.zero_shot_prior`), measures what the final
  inference will cost, and fits the network with a Lightning ``Trainer`` within the step / wall-time budget. The
  recipe is never changed by a fit; the fitted network comes back as a :class:`~mrisr.inference.FittedModel`.
* :class:`SelfTrainingSystem` — the LightningModule of that fit (training only): the loss, and a one-cycle learning
  rate driven by the fraction of the budget spent, so the schedule completes exactly when the budget does.
* the fitted model's inferer is :class:`mrisr.inference.planes.PlaneInferer` on the input grid (the network upsamples
  the thick-slice axis itself; both in-plane orientations averaged).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning as L
import numpy as np
import torch
from torch import nn

from mrisr.data.zero_shot import PatchGeometry, Sampling, SelfTrainingPairs, SingleVolumeDataModule
from mrisr.inference import FittedModel, InferenceProtocol
from mrisr.inference.acquisition import Acquisition, AcquisitionRequest
from mrisr.inference.planes import PlaneInferer
from mrisr.io.geometry import SliceGeometry
from mrisr.io.intensity import IntensityRule
from mrisr.io.nifti import Volume
from mrisr.nets.pretrained import load_net_weights, read_weights, resolve_weights
from mrisr.physics.profiles import FWHMConvention, ProfileKind, kernel_fwhm_voxels, slice_kernel
from mrisr.utils.precision import autocast_dtype, check_precision_option

__all__ = ["SelfTrainingSystem", "ZeroShotSR", "one_cycle_lr"]

log = logging.getLogger(__name__)

# Budget reserve for the final inference, as a multiple of its measured network-only estimate, and for the
# Trainer's teardown (seconds).
INFERENCE_SAFETY = 1.5
FIT_TEARDOWN_S = 0.5
#: A time-bounded fit that reaches fewer than this fraction of the steps its budget was measured to allow is starved
#: (another process took the CPU, or the machine is slower than it seemed): it is flagged in the record and logged.
STARVED_FRACTION = 0.25
#: Per-step cost of the optimiser update and Lightning's loop on top of a measured forward + backward pass.
STEP_OVERHEAD = 1.3

NetFactory = Callable[..., nn.Module]
OptimizerFactory = Callable[..., torch.optim.Optimizer]


#: SMORE's intensity rule: the input's minimum → 0 and maximum → 1.
MINMAX = IntensityRule(kind="minmax")


def one_cycle_lr(
    progress: float, max_lr: float, pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4
) -> float:
    """One-cycle learning rate (Smith & Topin 2019, cosine annealing) at ``progress`` ∈ [0, 1] of the schedule."""
    progress = min(max(progress, 0.0), 1.0)
    initial, final = max_lr / div_factor, max_lr / div_factor / final_div_factor
    if progress < pct_start:
        phase = progress / pct_start
        return initial + (max_lr - initial) * (1 - math.cos(math.pi * phase)) / 2
    phase = (progress - pct_start) / (1 - pct_start)
    return final + (max_lr - final) * (1 + math.cos(math.pi * phase)) / 2


def channels_last_net(net: nn.Module, channels_last: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``net`` as a function that feeds it channels-last inputs when asked (faster convolutions on CPU)."""
    if not channels_last:
        return net
    return lambda x: net(x.contiguous(memory_format=torch.channels_last))


class SelfTrainingSystem(L.LightningModule):
    """The LightningModule of one per-volume fit: training only (module docstring).

    Args:
        net: the network to fit ``(B, 1, r, c) → (B, 1, s·r, c)``.
        loss: training loss.
        optimizer: partial optimiser factory (``None`` = Adam, lr 1e-3; the rate is set every step anyway).
        max_lr: peak learning rate of the one-cycle schedule.
        pct_start: fraction of the schedule spent warming up.
        max_steps: step budget.
        fit_seconds: wall-time budget of the optimisation (s); ``math.inf`` = steps only.
        channels_last: channels-last inputs.

    Attributes:
        log_rows: one row per optimiser step (``step``, ``loss``, ``lr``, ``seconds``).
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory | None,
        max_lr: float,
        pct_start: float,
        max_steps: int,
        fit_seconds: float,
        channels_last: bool,
    ) -> None:
        super().__init__()
        self.criterion = loss
        self.net = net
        self.optimizer_factory = optimizer
        self.max_lr, self.pct_start = max_lr, pct_start
        self.max_steps, self.fit_seconds = max_steps, fit_seconds
        self.forward_net = channels_last_net(net, channels_last)
        self.log_rows: list[dict[str, float]] = []
        self.started = time.perf_counter()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_net(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_factory is None:
            return torch.optim.Adam(self.parameters(), lr=1e-3)
        return self.optimizer_factory(params=self.parameters())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.criterion(self(batch["lr"]), batch["hr"])
        self.log("fit/loss", loss, prog_bar=True)
        self.log_rows.append(
            {
                "step": float(self.global_step),
                "loss": float(loss.detach()),
                "lr": float(self.optimizers().param_groups[0]["lr"]),
                "seconds": time.perf_counter() - self.started,
            }
        )
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        elapsed = time.perf_counter() - self.started
        progress = max(self.global_step / max(self.max_steps, 1), elapsed / self.fit_seconds)
        if progress >= 1.0:
            return -1  # budget spent: end the epoch (and, with the endless stream, the fit)
        for group in self.optimizers().param_groups:
            group["lr"] = one_cycle_lr(progress, self.max_lr, self.pct_start)
        return None


class ZeroShotSR:
    """Per-volume self-supervised SR with a row-upsampling 2-D network (WDSR by default): the recipe and its fit.

    Args:
        net: partial network factory, called with ``scale=s`` once the volume's factor is known.
        optimizer: partial optimizer factory (default Adam).
        max_lr: peak learning rate of the one-cycle schedule.
        pct_start: fraction of the schedule spent warming up.
        loss: training loss module: L1 (SMORE, the default) or ``torch.nn.MSELoss`` (ECLARE).
        method: label in result tables and sidecars (default: the class name).
        thickness_mm: slice thickness T (FWHM); ``None`` = resolved from the input (sidecar, estimate, separation).
        profile: slice-profile kind (``slr``, ``gaussian``, ``rect``, ``file``), or ``auto``: the kind is estimated from
            the input over ``auto_profiles``, and so is the thickness when no argument or sidecar gives it.
        auto_profiles: candidate kinds of ``profile="auto"`` (the first is preferred unless another fits clearly
            better).
        fwhm_convention: ``variance`` (f = √(T² − Δ²)/Δ) or ``absolute`` (f = T/Δ) (docs/physics.md §2.2).
        kernel_file: 1-D kernel (.npy, in-plane voxels) for ``profile="file"``, e.g. an ESPRESO estimate.
        lr_patch_rows: LR rows per training patch (HR rows = round(s · lr_patch_rows)).
        patch_cols: columns per training patch.
        batch_size: patches per step.
        sampling: ``gradient`` (joint gradient-weighted centres) or ``uniform``.
        sampling_sigma: Gaussian σ (voxels) before the gradient.
        max_steps: optimiser steps at most.
        max_time_s: wall-time budget in seconds for fit + inference (``None`` = steps only, reproducible).
        precision: Lightning precision of the fit. On CPUs, fp32 training is faster than bf16 autocast (measured:
            bf16 backward passes of small convolutions are several times slower).
        inference_precision: autocast dtype of the final inference: ``auto`` (bf16 where the device computes it
            natively, ≈ 1.3–2× faster on such CPUs with channels-last; float32 elsewhere, where emulated bf16 is
            ~20× slower: :mod:`mrisr.utils.precision`), ``32``, ``bf16`` or ``16``; the cubic skip branch always stays
            fp32, so only the learned residual is rounded.
        accelerator: Lightning accelerator of the fit (``auto``, ``cpu``, ``gpu``).
        channels_last: channels-last memory format (faster convolutions on CPU).
        inference_batch_size: planes per forward pass at inference.
        init_weights: starting weights of the network: ``None`` (random initialisation, i.e. cubic interpolation),
            the name of a weights file shipped with mrisr (``smore_prior``), or a path to a file written by
            :func:`mrisr.systems.zero_shot_prior.export_prior`. They must match ``net`` exactly.
        seed: seed of the fit (network initialisation, patch sampling) when :meth:`fit_volume` is given no
            generator; with one (as from :func:`mrisr.inference.run_on_volume`), the fit seed is drawn from it.
        progress_bar: show Lightning's progress bar during the fit.
        intensity: intensity rule (SMORE: min–max to [0, 1]).
    """

    inference_protocol: ClassVar[InferenceProtocol] = InferenceProtocol.PER_VOLUME
    inference_options: ClassVar[tuple[str, ...]] = (
        "thickness_mm",
        "profile",
        "fwhm_convention",
        "kernel_file",
        "max_steps",
        "max_time_s",
        "inference_precision",
        "inference_batch_size",
        "progress_bar",
    )

    def __init__(
        self,
        net: NetFactory,
        optimizer: OptimizerFactory | None = None,
        max_lr: float = 1e-3,
        pct_start: float = 0.3,
        loss: nn.Module | None = None,
        method: str | None = None,
        thickness_mm: float | None = None,
        profile: ProfileKind | Literal["auto"] = "slr",
        auto_profiles: tuple[str, ...] = ("slr", "gaussian", "rect"),
        fwhm_convention: FWHMConvention = "variance",
        kernel_file: str | None = None,
        lr_patch_rows: int = 16,
        patch_cols: int = 48,
        batch_size: int = 32,
        sampling: Sampling = "gradient",
        sampling_sigma: float = 1.0,
        max_steps: int = 2000,
        max_time_s: float | None = 300.0,
        precision: str = "32-true",
        inference_precision: Literal["auto", "32", "bf16", "16"] = "auto",
        accelerator: str = "auto",
        channels_last: bool = True,
        inference_batch_size: int = 16,
        init_weights: str | None = None,
        seed: int = 0,
        progress_bar: bool = True,
        intensity: IntensityRule | None = None,
    ) -> None:
        self.net_factory = net
        self.optimizer_factory = optimizer
        self.max_lr, self.pct_start = max_lr, pct_start
        if loss is not None and not isinstance(loss, nn.Module):
            raise ValueError(f"loss must be a torch module config such as {{_target_: torch.nn.L1Loss}}, got {loss!r}")
        self.criterion = loss or nn.L1Loss()
        self.method = method or type(self).__name__
        self.thickness_mm, self.profile, self.fwhm_convention = thickness_mm, profile, fwhm_convention
        self.auto_profiles = tuple(auto_profiles)
        self.kernel_file = kernel_file
        self.lr_patch_rows, self.patch_cols, self.batch_size = lr_patch_rows, patch_cols, batch_size
        self.sampling, self.sampling_sigma = sampling, sampling_sigma
        self.max_steps, self.max_time_s = max_steps, max_time_s
        self.precision, self.accelerator = precision, accelerator
        self.inference_precision = inference_precision
        self.channels_last = channels_last
        self.inference_batch_size = inference_batch_size
        self.init_weights = init_weights
        self.seed, self.progress_bar = seed, progress_bar
        self.intensity = intensity if intensity is not None else MINMAX
        if init_weights is not None:
            read_weights(resolve_weights(str(init_weights)))  # refuse a missing or foreign file before any fit
        self.validate_inference_options()

    def validate_inference_options(self) -> None:
        """Budgets must be positive; a thickness, when given, too."""
        if int(self.inference_batch_size) < 1:
            raise ValueError(f"inference_batch_size must be ≥ 1, got {self.inference_batch_size}")
        if self.max_time_s is not None and not float(self.max_time_s) > 0:
            raise ValueError(f"max_time_s (budget.max_time) must be > 0 seconds or null, got {self.max_time_s}")
        if int(self.max_steps) < 1:
            raise ValueError(f"max_steps (budget.max_steps) must be ≥ 1, got {self.max_steps}")
        if self.thickness_mm is not None and not float(self.thickness_mm) > 0:
            raise ValueError(f"thickness_mm must be > 0 mm or null, got {self.thickness_mm}")
        if self.profile not in ("slr", "gaussian", "rect", "file", "auto"):
            raise ValueError(f"profile must be slr, gaussian, rect, file or auto, got {self.profile!r}")
        check_precision_option("inference_precision", self.inference_precision)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r})"

    # ---------------------------------------------------------------- what the fit needs to know
    def acquisition_request(self) -> AcquisitionRequest:
        """The model's thickness and profile settings, resolved per input by :func:`run_on_volume`."""
        return AcquisitionRequest(
            thickness_mm=None if self.thickness_mm is None else float(self.thickness_mm),
            profile=str(self.profile),
            candidates=self.auto_profiles,
            fwhm_convention=str(self.fwhm_convention),
        )

    def weights_files(self) -> list[Path]:
        """The weights files the fit starts from (``init_weights``), for the recipe's digest."""
        return [] if self.init_weights is None else [resolve_weights(str(self.init_weights))]

    def autocast_dtype(self) -> torch.dtype | None:
        """Autocast dtype of inference (and of its timing estimate): ``inference_precision``, not the fit's."""
        on_gpu = self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available())
        return autocast_dtype(str(self.inference_precision), "cuda" if on_gpu else "cpu")

    def build_net(self, scale: float) -> nn.Module:
        """The network for factor ``scale``, with the ``init_weights`` loaded when given."""
        net = self.net_factory(scale=scale)
        if self.init_weights is not None:
            load_net_weights(net, resolve_weights(str(self.init_weights)))
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    def training_pairs(self, data: torch.Tensor, kernel: np.ndarray, patch: PatchGeometry) -> SelfTrainingPairs:
        """Self-training pairs from the normalised volume ``(X, Y, Z)`` (Z = thick-slice axis); override to change
        where pairs come from (e.g. diagnostics that train on other data with the same schedule)."""
        return SelfTrainingPairs(data, kernel, patch, self.sampling, self.sampling_sigma)

    def estimate_step_seconds(self, net: nn.Module, pairs: SelfTrainingPairs) -> float:
        """Seconds one optimiser step of the fit takes here and now: forward + backward passes of a real batch, timed.

        The batch comes from its own generator and the gradients are discarded, so the fit is unchanged.
        """
        forward = channels_last_net(net, self.channels_last)
        lr, hr = pairs.batch(self.batch_size, torch.Generator().manual_seed(0))
        timings = []
        for _ in range(3):  # the first pass includes one-off kernel selection
            start = time.perf_counter()
            self.criterion(forward(lr), hr).backward()
            timings.append(time.perf_counter() - start)
        net.zero_grad(set_to_none=True)
        return STEP_OVERHEAD * min(timings[1:])

    @torch.inference_mode()
    def estimate_inference_seconds(self, net: nn.Module, data: torch.Tensor) -> float:
        """Time one batch of real planes of ``data`` ``(X, Y, Z)`` through ``net`` and extrapolate to the volume."""
        net.eval()
        forward = channels_last_net(net, self.channels_last)
        z = data.shape[-1]
        planes = data.permute(0, 2, 1)[: self.inference_batch_size].unsqueeze(1).contiguous()  # (B, 1, Z, Y)
        dtype = self.autocast_dtype()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            timings = []
            for _ in range(3):  # the first call includes one-off kernel selection
                start = time.perf_counter()
                forward(planes)
                timings.append(time.perf_counter() - start)
        per_batch = min(timings[1:])
        net.train()
        pixels_per_batch = planes.shape[0] * z * data.shape[1]
        total_pixels = 2 * data.shape[0] * data.shape[1] * z
        return per_batch * total_pixels / pixels_per_batch

    # ---------------------------------------------------------------- the fit on one volume
    def fit_volume(
        self,
        volume: Volume,
        geometry: SliceGeometry,
        acquisition: Acquisition,
        generator: torch.Generator | None = None,
    ) -> FittedModel:
        """Fit a fresh network on ``volume``'s own in-plane data (module docstring); the recipe is not changed.

        Randomness (network initialisation, patch sampling) comes from one seed: drawn from ``generator`` when given,
        else :attr:`seed`. The global random state is left as it was.
        """
        seed = self.seed if generator is None else int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._fit(volume, geometry, acquisition, seed)

    def _fit(self, volume: Volume, geometry: SliceGeometry, acquisition: Acquisition, seed: int) -> FittedModel:
        started = time.perf_counter()
        spacing, separation = geometry.inplane_spacing_mm, geometry.separation_mm
        scale = separation / spacing
        fwhm = kernel_fwhm_voxels(acquisition.thickness_mm, spacing, self.fwhm_convention)
        kernel = slice_kernel(fwhm, acquisition.profile, kernel_file=self.kernel_file)  # type: ignore[arg-type]
        hr_rows = max(1, round(scale * self.lr_patch_rows))
        patch = PatchGeometry(self.lr_patch_rows, hr_rows, self.patch_cols, scale)
        net = self.build_net(scale)
        scaling = self.intensity.scaling(volume.data, source=volume.path)
        normalised = scaling.apply(volume.data.astype(np.float32))
        data = torch.from_numpy(np.moveaxis(normalised, geometry.axis, -1).astype(np.float32, copy=False).copy())
        pairs = self.training_pairs(data, kernel, patch)
        datamodule = SingleVolumeDataModule(pairs, self.batch_size, seed=seed)

        # Budget: what remains after set-up and the (measured) cost of the final inference.
        inference_estimate = self.estimate_inference_seconds(net, data)
        budget = math.inf if self.max_time_s is None else self.max_time_s - (time.perf_counter() - started)
        # The estimate times the network alone; gathering, un-normalising and the plane layout add ~30-50 % on CPU.
        fit_seconds = max(budget - INFERENCE_SAFETY * inference_estimate - FIT_TEARDOWN_S, 1.0)
        expected_steps = int(self.max_steps)
        if math.isfinite(fit_seconds):  # time-bounded: how many steps the budget allows on this machine, now
            step_seconds = self.estimate_step_seconds(net, pairs)
            expected_steps = min(expected_steps, int(fit_seconds / step_seconds))
        system = SelfTrainingSystem(  # its clock starts now: Trainer set-up counts against the budget too
            net,
            self.criterion,
            self.optimizer_factory,
            self.max_lr,
            self.pct_start,
            int(self.max_steps),
            fit_seconds,
            self.channels_last,
        )
        trainer = L.Trainer(
            accelerator=self.accelerator,
            devices=1,
            precision=self.precision,
            max_steps=self.max_steps,
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=self.progress_bar,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            deterministic=False,
        )
        trainer.fit(system, datamodule=datamodule)
        net.eval()
        losses = [row["loss"] for row in system.log_rows]
        warnings = []
        starved = len(losses) < STARVED_FRACTION * expected_steps
        if starved:
            warnings.append(
                f"the per-volume fit reached {len(losses)} optimiser steps, fewer than {STARVED_FRACTION:.0%} of the "
                f"{expected_steps} its {self.max_time_s:g} s budget allows on this machine (measured before the fit): "
                "another process probably took the CPU, and the output is worse than the model's usual; rerun on a "
                "quiet machine, or bound the fit by steps alone (budget.max_steps=N) for load-independent results"
            )
            log.warning("%s", warnings[-1])
        head = float(np.mean(losses[: max(1, len(losses) // 10)])) if losses else math.nan
        tail = float(np.mean(losses[-max(1, len(losses) // 10) :])) if losses else math.nan
        record = {
            **acquisition.as_record(),  # what this fit trained on, so the fit summary stands alone
            "scale": scale,
            "init_weights": self.init_weights,
            "separation_mm": separation,
            "inplane_spacing_mm": spacing,
            "kernel_fwhm_voxels": fwhm,
            "kernel": kernel.tolist(),
            "lr_patch_rows": patch.lr_rows,
            "hr_patch_rows": patch.hr_rows,
            "patch_cols": patch.cols,
            "steps": len(losses),
            "expected_steps": expected_steps,
            "starved": starved,
            "max_steps": int(self.max_steps),
            "max_time_s": self.max_time_s,
            "fit_seconds": round(time.perf_counter() - system.started, 2),
            "inference_estimate_seconds": round(inference_estimate, 2),
            "loss_first_10pct": head,
            "loss_last_10pct": tail,
            "parameters": sum(p.numel() for p in net.parameters()),
            "seed": seed,
        }
        log.info(
            "zero-shot fit: s=%.4g, T=%.3g mm, kernel FWHM %.3f voxels (%d taps), %d steps in %.1f s, loss %.4g → %.4g",
            scale,
            acquisition.thickness_mm,
            fwhm,
            len(kernel),
            len(losses),
            record["fit_seconds"],
            head,
            tail,
        )
        forward = channels_last_net(net, self.channels_last)
        inferer = PlaneInferer(
            predict=lambda planes, geometry: forward(planes),
            intensity=self.intensity,
            rows="input",
            batch_size=int(self.inference_batch_size),
            autocast_dtype=self.autocast_dtype(),
            device=next(net.parameters()).device,
        )
        return FittedModel(inferer=inferer, record=record, log=system.log_rows, warnings=warnings)
