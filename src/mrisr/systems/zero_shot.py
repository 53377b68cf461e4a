"""Zero-shot (self-supervised) through-plane SR fitted per volume: SMORE / ECLARE family (docs/models.md §1).

``ZeroShotSR`` needs no external training data. For each input volume it
1. derives the slice profile of the acquisition (thickness T, default = separation S; same kernel function as every
   simulation in mrisr), the in-plane spacing Δ and the factor s = S/Δ (non-integer allowed, gaps allowed); with
   ``profile="auto"`` the profile kind (and, when no thickness is known, T) is estimated from the volume itself
   (:func:`mrisr.physics.estimation.estimate_slice_profile`, docs/models.md §1.7);
2. fits a 2-D network, randomly initialised or from pretrained weights (``init_weights``, a prior:
   :mod:`mrisr.systems.zero_shot_prior`), on self-training pairs made from the volume's own in-plane data
   (:class:`mrisr.data.zero_shot.SelfTrainingPairs`) with Lightning, within a wall-time budget that includes the
   final inference: the learning-rate schedule (one cycle) is driven by the fraction of the budget spent, so the
   schedule completes exactly when the budget does;
3. super-resolves every plane containing the thick-slice axis, along both in-plane axes, and averages the two.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import nn

from mrisr.data.zero_shot import PatchGeometry, Sampling, SelfTrainingPairs, SingleVolumeDataModule
from mrisr.inference import InferenceProtocol, OutputGrid
from mrisr.io.geometry import SliceGeometry
from mrisr.io.intensity import IntensityScaling, minmax_scaling
from mrisr.io.nifti import Volume
from mrisr.physics.estimation import SliceProfileEstimate, estimate_slice_profile
from mrisr.physics.profiles import FWHMConvention, ProfileKind, kernel_fwhm_voxels, slice_kernel
from mrisr.physics.resample import resample_affine, resample_axis
from mrisr.systems.base import OptimizerFactory, SRSystem
from mrisr.systems.planes import predict_planes

log = logging.getLogger(__name__)

# Budget reserve for the final inference, as a multiple of its measured network-only estimate, and for the
# Trainer's teardown (seconds).
INFERENCE_SAFETY = 1.5
FIT_TEARDOWN_S = 0.5

NetFactory = Callable[..., nn.Module]

#: Autocast dtype of each ``inference_precision`` (``None``: no autocast, fp32).
INFERENCE_DTYPES: dict[str, torch.dtype | None] = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


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


class ZeroShotSR(SRSystem):
    """Per-volume self-supervised SR with a row-upsampling 2-D network (WDSR by default).

    Args:
        net: partial network factory, called with ``scale=s`` once the volume's factor is known.
        optimizer: partial optimizer factory (default Adam).
        max_lr: peak learning rate of the one-cycle schedule.
        pct_start: fraction of the schedule spent warming up.
        loss: training loss module: L1 (SMORE, the default) or ``torch.nn.MSELoss`` (ECLARE).
        method: label in result tables and sidecars (default: the class name).
        thickness_mm: slice thickness T (FWHM); ``None`` = the slice separation (no gap).
        profile: slice-profile kind (``slr``, ``gaussian``, ``rect``, ``file``), or ``auto``: the kind is estimated from
            the input (:func:`~mrisr.physics.estimation.estimate_slice_profile` over ``auto_profiles``), and so is the
            thickness when ``thickness_mm`` is ``None``; the estimate and its source go into the fit summary.
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
        max_time_s: wall-time budget in seconds for fit + inference (``None`` = steps only).
        precision: Lightning precision of the fit. On CPUs, fp32 training is faster than bf16 autocast (measured:
            bf16 backward passes of small convolutions are several times slower).
        inference_precision: autocast dtype of the final inference (``bf16`` ≈ 1.3–2× faster on CPU with
            channels-last; the cubic skip branch always stays fp32, so only the learned residual is rounded).
        accelerator: Lightning accelerator of the fit (``auto``, ``cpu``, ``gpu``).
        channels_last: channels-last memory format (faster convolutions on CPU).
        inference_batch_size: planes per forward pass at inference.
        init_weights: starting weights of the network: ``None`` (random initialisation, i.e. cubic interpolation),
            the name of a weights file shipped with mrisr (``smore_prior``), or a path to a file written by
            :func:`mrisr.systems.zero_shot_prior.export_prior`. They must match ``net`` exactly.
        seed: seed of the fit (network initialisation, patch sampling) when :meth:`fit_volume` is given no
            generator; with one (as from :func:`mrisr.inference.run_on_volume`), the fit seed is drawn from it.
        progress_bar: show Lightning's progress bar during the fit.
    """

    inference_protocol = InferenceProtocol.PER_VOLUME
    inference_options = (
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
        inference_precision: Literal["32", "bf16", "16"] = "bf16",
        accelerator: str = "auto",
        channels_last: bool = True,
        inference_batch_size: int = 16,
        init_weights: str | None = None,
        seed: int = 0,
        progress_bar: bool = True,
    ) -> None:
        self.max_steps, self.max_time_s = max_steps, max_time_s
        self.thickness_mm, self.profile = thickness_mm, profile
        self.inference_precision = inference_precision
        super().__init__(
            optimizer=optimizer, loss=loss or nn.L1Loss(), method=method, inference_batch_size=inference_batch_size
        )
        self.net_factory = net
        self.max_lr, self.pct_start = max_lr, pct_start
        self.thickness_mm, self.profile, self.fwhm_convention = thickness_mm, profile, fwhm_convention
        self.kernel_file = kernel_file
        self.auto_profiles = tuple(auto_profiles)
        self.init_weights = init_weights
        if init_weights is not None:
            from mrisr.systems.zero_shot_prior import read_weights, resolve_weights

            read_weights(resolve_weights(str(init_weights)))  # refuse a missing or foreign file before any fit
        self.profile_estimate: SliceProfileEstimate | None = None
        self._estimated_for: tuple[int, tuple[int, ...], float, float] | None = None
        self.lr_patch_rows, self.patch_cols, self.batch_size = lr_patch_rows, patch_cols, batch_size
        self.sampling, self.sampling_sigma = sampling, sampling_sigma
        self.precision, self.accelerator = precision, accelerator
        self.inference_precision = inference_precision
        self.channels_last = channels_last
        self.seed, self.progress_bar = seed, progress_bar
        self.net: nn.Module | None = None
        self.kernel: np.ndarray | None = None
        self.fit_log: list[dict[str, float]] = []
        self.fit_summary: dict[str, Any] = {}
        self._scaling = IntensityScaling(0.0, 1.0)
        self._fitted_on: tuple[int, ...] | None = None
        self._fit_deadline = math.inf
        self._fit_started = 0.0
        self._fit_seconds = math.inf

    def validate_inference_options(self) -> None:
        """Budgets must be positive; a thickness, when given, too."""
        super().validate_inference_options()
        if self.max_time_s is not None and not float(self.max_time_s) > 0:
            raise ValueError(f"max_time_s (budget.max_time) must be > 0 seconds or null, got {self.max_time_s}")
        if int(self.max_steps) < 1:
            raise ValueError(f"max_steps (budget.max_steps) must be ≥ 1, got {self.max_steps}")
        if self.thickness_mm is not None and not float(self.thickness_mm) > 0:
            raise ValueError(f"thickness_mm must be > 0 mm or null, got {self.thickness_mm}")
        if self.profile not in ("slr", "gaussian", "rect", "file", "auto"):
            raise ValueError(f"profile must be slr, gaussian, rect, file or auto, got {self.profile!r}")
        if str(self.inference_precision) not in INFERENCE_DTYPES:
            raise ValueError(
                f"inference_precision must be one of {list(INFERENCE_DTYPES)}, got {self.inference_precision}"
            )

    # ---------------------------------------------------------------- Lightning hooks
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.net is not None, "fit_volume() builds the network"
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.criterion(self(batch["lr"]), batch["hr"])
        self.log("fit/loss", loss, prog_bar=True)
        self.fit_log.append(
            {
                "step": float(self.global_step),
                "loss": float(loss.detach()),
                "lr": float(self.optimizers().param_groups[0]["lr"]),
                "seconds": time.perf_counter() - self._fit_started,
            }
        )
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        elapsed = time.perf_counter() - self._fit_started
        progress = max(self.global_step / max(self.max_steps, 1), elapsed / self._fit_seconds)
        if progress >= 1.0:
            return -1  # budget spent: end the epoch (and, with the endless stream, the fit)
        for group in self.optimizers().param_groups:
            group["lr"] = one_cycle_lr(progress, self.max_lr, self.pct_start)
        return None

    # ---------------------------------------------------------------- fit on one volume
    def intensity_scaling(self, volume: Volume) -> IntensityScaling:
        """Min–max to [0, 1] (SMORE's rule)."""
        return minmax_scaling(volume.data, source=volume.path)

    def _autocast_dtype(self) -> torch.dtype | None:
        """Autocast dtype of inference (and of its timing estimate): ``inference_precision``, not the fit's."""
        return INFERENCE_DTYPES[str(self.inference_precision)]

    def build_net(self, scale: float) -> nn.Module:
        """The network for factor ``scale``, with the ``init_weights`` loaded when given."""
        net = self.net_factory(scale=scale)
        if self.init_weights is not None:
            from mrisr.systems.zero_shot_prior import load_net_weights, resolve_weights

            load_net_weights(net, resolve_weights(str(self.init_weights)))
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    def estimate_profile(self, volume: Volume, geometry: SliceGeometry) -> SliceProfileEstimate:
        """Slice profile (kind and thickness) of ``volume`` estimated from the image (``profile="auto"``).

        The estimate is kept for the next fit on the same volume, so the thickness chain of
        :func:`mrisr.inference.run_on_volume` (which calls this as its estimator) and the fit share one estimate.
        """
        key = (id(volume.data), tuple(volume.shape), float(geometry.separation_mm), float(geometry.inplane_spacing_mm))
        if self.profile_estimate is None or self._estimated_for != key:
            self.profile_estimate = estimate_slice_profile(
                volume.data,
                axis=geometry.axis,
                separation_mm=geometry.separation_mm,
                inplane_spacing_mm=geometry.inplane_spacing_mm,
                shapes=self.auto_profiles,
                convention=self.fwhm_convention,
            )
            self._estimated_for = key
        return self.profile_estimate

    def _profile(self, volume: Volume, geometry: SliceGeometry) -> tuple[str, float, dict[str, Any]]:
        """Profile kind, thickness T (mm) and their provenance for the fit on ``volume``.

        Provenance keys of the fit summary: ``profile_source`` (``given`` or ``estimate``), ``thickness_source``
        (``thickness_mm``: the model's option, whose own origin :func:`~mrisr.inference.run_on_volume` records;
        ``separation``; ``estimate``) and, for ``profile="auto"``, ``profile_estimate`` (kind, FWHM, spread,
        per-kind mismatch and FWHM, seconds).
        """
        separation = geometry.separation_mm
        if self.profile != "auto":
            thickness = separation if self.thickness_mm is None else float(self.thickness_mm)
            source = "separation" if self.thickness_mm is None else "thickness_mm"
            return str(self.profile), thickness, {"profile_source": "given", "thickness_source": source}
        estimate = self.estimate_profile(volume, geometry)
        given = self.thickness_mm is not None
        thickness = float(self.thickness_mm) if given else estimate.fwhm_mm
        # run_on_volume passes this very estimate on as thickness_mm when no argument or sidecar gives one.
        from_estimate = not given or thickness == estimate.fwhm_mm
        record = {
            "profile_source": "estimate",
            "thickness_source": "estimate" if from_estimate else "thickness_mm",
            "profile_estimate": {
                "shape": estimate.shape,
                "fwhm_mm": estimate.fwhm_mm,
                "fwhm_spread_mm": estimate.fwhm_spread_mm,
                "mismatch": {k: f.mismatch for k, f in estimate.fits.items()},
                "fwhm_mm_by_shape": {k: f.fwhm_mm for k, f in estimate.fits.items()},
                "seconds": round(estimate.seconds, 2),
            },
        }
        log.info("profile=auto: %s (thickness from %s)", estimate.summary(), record["thickness_source"])
        return estimate.shape, thickness, record

    def _moved(self, volume: Volume, axis: int) -> torch.Tensor:
        self._scaling = self.intensity_scaling(volume)
        data = self._scaling.apply(volume.data.astype(np.float32))
        return torch.from_numpy(np.moveaxis(data, axis, -1).astype(np.float32, copy=False).copy())

    def fit_volume(
        self,
        volume: Volume,
        geometry: SliceGeometry,
        grid: OutputGrid | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Fit the network on ``volume``'s own in-plane data (Lightning ``Trainer.fit`` on a one-volume datamodule).

        Randomness (network initialisation, patch sampling) comes from one seed: drawn from ``generator`` when given,
        else :attr:`seed`. The global random state is left as it was.

        Returns:
            A summary (kernel, patch sizes, steps, seconds, final loss) also kept in ``fit_summary``.
        """
        seed = self.seed if generator is None else int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._fit(volume, geometry, seed)

    def _fit(self, volume: Volume, geometry: SliceGeometry, seed: int) -> dict[str, Any]:
        started = time.perf_counter()
        spacing, separation = geometry.inplane_spacing_mm, geometry.separation_mm
        kind, thickness, provenance = self._profile(volume, geometry)
        scale = separation / spacing
        fwhm = kernel_fwhm_voxels(thickness, spacing, self.fwhm_convention)
        self.kernel = slice_kernel(fwhm, kind, kernel_file=self.kernel_file)  # type: ignore[arg-type]
        hr_rows = max(1, round(scale * self.lr_patch_rows))
        patch = PatchGeometry(self.lr_patch_rows, hr_rows, self.patch_cols, scale)
        self.net = self.build_net(scale)
        data = self._moved(volume, geometry.axis)
        pairs = self.training_pairs(data, patch)
        datamodule = SingleVolumeDataModule(pairs, self.batch_size, seed=seed)

        # Budget: what remains after set-up and the (measured) cost of the final inference.
        inference_estimate = self.estimate_inference_seconds(data, geometry)
        budget = math.inf if self.max_time_s is None else self.max_time_s - (time.perf_counter() - started)
        # The estimate times the network alone; gathering, un-normalising and the plane layout add ~30-50 % on CPU.
        self._fit_seconds = max(budget - INFERENCE_SAFETY * inference_estimate - FIT_TEARDOWN_S, 1.0)
        self.fit_log = []
        self._fit_started = time.perf_counter()  # Trainer set-up counts against the budget too
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
        trainer.fit(self, datamodule=datamodule)
        self._fitted_on = tuple(volume.shape)
        losses = [row["loss"] for row in self.fit_log]
        head = float(np.mean(losses[: max(1, len(losses) // 10)])) if losses else math.nan
        tail = float(np.mean(losses[-max(1, len(losses) // 10) :])) if losses else math.nan
        self.fit_summary = {
            "scale": scale,
            "thickness_mm": thickness,
            "profile": kind,
            **provenance,
            "init_weights": self.init_weights,
            "separation_mm": separation,
            "inplane_spacing_mm": spacing,
            "kernel_fwhm_voxels": fwhm,
            "kernel": self.kernel.tolist(),
            "lr_patch_rows": patch.lr_rows,
            "hr_patch_rows": patch.hr_rows,
            "patch_cols": patch.cols,
            "steps": len(losses),
            "fit_seconds": round(time.perf_counter() - self._fit_started, 2),
            "inference_estimate_seconds": round(inference_estimate, 2),
            "loss_first_10pct": head,
            "loss_last_10pct": tail,
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "seed": seed,
        }
        log.info(
            "zero-shot fit: s=%.4g, T=%.3g mm, kernel FWHM %.3f voxels (%d taps), %d steps in %.1f s, loss %.4g → %.4g",
            scale,
            thickness,
            fwhm,
            len(self.kernel),
            len(losses),
            self.fit_summary["fit_seconds"],
            head,
            tail,
        )
        return self.fit_summary

    def training_pairs(self, data: torch.Tensor, patch: PatchGeometry) -> SelfTrainingPairs:
        """Self-training pairs from the normalised volume ``(X, Y, Z)`` (Z = thick-slice axis); override to change
        where pairs come from (e.g. diagnostics that train on other data with the same schedule)."""
        assert self.kernel is not None
        return SelfTrainingPairs(data, self.kernel, patch, self.sampling, self.sampling_sigma)

    @torch.inference_mode()
    def estimate_inference_seconds(self, data: torch.Tensor, geometry: SliceGeometry) -> float:
        """Time one batch of real planes through the (untrained) network and extrapolate to the whole volume."""
        assert self.net is not None
        self.net.eval()
        z = data.shape[-1]
        planes = data.permute(0, 2, 1)[: self.inference_batch_size].unsqueeze(1).contiguous()  # (B, 1, Z, Y)
        dtype = self._autocast_dtype()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            timings = []
            for _ in range(3):  # the first call includes one-off kernel selection
                start = time.perf_counter()
                self(planes)
                timings.append(time.perf_counter() - start)
        per_batch = min(timings[1:])
        self.net.train()
        pixels_per_batch = planes.shape[0] * z * data.shape[1]
        total_pixels = 2 * data.shape[0] * data.shape[1] * z
        return per_batch * total_pixels / pixels_per_batch

    # ---------------------------------------------------------------- inference
    def super_resolve(
        self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid, generator: torch.Generator | None = None
    ) -> Volume:
        """Super-resolve the volume this model was fitted on onto ``grid`` (both in-plane orientations, averaged).

        Deterministic: ``generator`` is not used.
        """
        if self.net is None or self._fitted_on != tuple(volume.shape):
            raise RuntimeError("ZeroShotSR.super_resolve needs fit_volume() on this volume first")
        self.net.eval()
        data = self._moved(volume, geometry.axis).to(self.device)
        pred = predict_planes(
            self, data, axis=2, batch_size=int(self.inference_batch_size), autocast_dtype=self._autocast_dtype()
        )
        n_net = pred.shape[-1]
        if n_net != grid.length:  # target spacing other than the in-plane spacing: same-FOV resize of the net grid
            net_spacing = geometry.separation_mm * volume.shape[geometry.axis] / n_net
            pred = resample_axis(pred.double(), axis=2, step=grid.spacing_mm / net_spacing, n_out=grid.length)
        out = self._scaling.invert(np.moveaxis(pred.float().cpu().numpy(), -1, geometry.axis))
        affine = resample_affine(volume.affine, geometry.axis, grid.step, volume.shape[geometry.axis], grid.length)
        return Volume(data=out.astype(np.float32), affine=affine, header=volume.header.copy(), path=None)
