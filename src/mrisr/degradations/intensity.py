"""Intensity degradations: noise, bias field, brightness/contrast jitter, Gaussian blur.

docs/physics.md §6 rows 5, 8–11.

Intensities are expected normalised so that bright tissue ≈ 1 (the stack normalises whole volumes by their 99.5th
foreground percentile; training planes come normalised from the data module), so noise levels are fractions of the
tissue intensity as in Graf et al. (images in [0, 1]). Graf et al. clip to [0, 1] after noise, bias field and
jitter; with percentile normalisation the brightest 0.5 % exceed 1, so we clamp below at 0 only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch

from mrisr.degradations.base import (
    AcquisitionGeometry,
    IntensityDegradation,
    RandomIntensityDegradation,
    _check_range,
    draw_seed,
    draw_uniform,
)
from mrisr.degradations.functional import (
    NoiseKind,
    bias_field,
    bias_field_exponents,
    gaussian_blur,
    intensity_jitter,
    noise,
)

__all__ = [
    "BiasField",
    "GaussianBlur",
    "IntensityJitter",
    "Noise",
    "RandomBiasField",
    "RandomGaussianBlur",
    "RandomIntensityJitter",
    "RandomNoise",
]


class Noise(IntensityDegradation):
    """Additive Gaussian, Rician or (parity) uniform noise of level ``sigma`` with a fixed realisation seed.

    Physics.md §1 (noise model) and §6 rows 5 (noise between down- and upsampling, on the LR grid) and 9 (train-only
    augmentation). The realisation is a pure function of ``seed`` (a generator on the tensor's device).

    Args:
        sigma: noise level in normalised intensity units (SD per real channel; amplitude for ``uniform``).
        kind: ``gaussian``, ``rician`` or ``uniform`` (see :func:`mrisr.degradations.functional.noise`).
        seed: seed of the noise realisation; None = torch's global generator (not reproducible).
        clip_min: lower clamp after adding noise (None = none).
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    preserves_flat_field = False
    preserves_alignment = False

    def __init__(
        self,
        sigma: float,
        kind: NoiseKind = "gaussian",
        seed: int | None = None,
        clip_min: float | None = 0.0,
        axis: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__(axis=axis, train_only=train_only)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
        if kind not in ("gaussian", "rician", "uniform"):
            raise ValueError(f"unknown noise kind {kind!r}; use 'gaussian', 'rician' or 'uniform'")
        self.sigma = float(sigma)
        self.kind = kind
        self.seed = seed
        self.clip_min = clip_min
        self.args_names = ["sigma", "kind", "seed", "clip_min", "axis", "train_only"]

    @property
    def is_random(self) -> bool:  # type: ignore[override]
        return self.seed is None and self.sigma > 0

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        return {"sigma": self.sigma, "kind": self.kind, "seed": self.seed, "clip_min": self.clip_min}

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        generator = None
        if params["seed"] is not None:
            generator = torch.Generator(device=x.device)
            generator.manual_seed(int(params["seed"]))
        return noise(x, params["sigma"], params["kind"], generator, params["clip_min"])


class RandomNoise(RandomIntensityDegradation):
    """Noise with level σ ~ U(``sigma_range``) and a fresh realisation seed per sample.

    Graf et al.: σ ~ U(0, 0.05) between down- and upsampling (always; their code draws uniform noise U(0, a)) and
    again as a train-only augmentation with p = 0.3, clipped to [0, 1].

    Args:
        sigma_range: (min, max) noise level in normalised intensity units.
        kind: ``gaussian`` (default), ``rician`` or ``uniform``.
        clip_min: lower clamp (None = none).
        prob: probability of adding noise.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    op_class = Noise

    def __init__(
        self,
        sigma_range: Sequence[float] = (0.0, 0.05),
        kind: NoiseKind = "gaussian",
        clip_min: float | None = 0.0,
        prob: float = 1.0,
        axis: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__(prob=prob, axis=axis, train_only=train_only)
        self.sigma_range = _check_range("sigma_range", sigma_range, 0.0)
        if kind not in ("gaussian", "rician", "uniform"):
            raise ValueError(f"unknown noise kind {kind!r}; use 'gaussian', 'rician' or 'uniform'")
        self.kind = kind
        self.clip_min = clip_min
        self.args_names = ["sigma_range", "kind", "clip_min", "prob", "axis", "train_only"]

    @property
    def is_random(self) -> bool:  # type: ignore[override]
        return self.prob > 0 and self.sigma_range[1] > 0

    def randomize(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> dict[str, Any]:
        return {
            "sigma": draw_uniform(generator, *self.sigma_range),
            "kind": self.kind,
            "seed": draw_seed(generator),
            "clip_min": self.clip_min,
        }


class BiasField(IntensityDegradation):
    """Multiplicative smooth bias field exp(Σ c_k·monomial_k) of total degree ``order`` (docs/physics.md §6 row 10).

    Args:
        coefficients: one coefficient per monomial, in the order of
            :func:`mrisr.degradations.functional.bias_field_exponents` (10 in 2-D, 20 in 3-D for order 3); all
            zero = identity.
        order: total polynomial degree.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    changes_gain: ClassVar[bool] = True

    preserves_flat_field = False
    preserves_alignment = False

    def __init__(
        self, coefficients: Sequence[float], order: int = 3, axis: int | None = None, train_only: bool = False
    ) -> None:
        super().__init__(axis=axis, train_only=train_only)
        self.coefficients = [float(c) for c in coefficients]
        self.order = int(order)
        self.args_names = ["coefficients", "order", "axis", "train_only"]

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        expected = len(bias_field_exponents(len(geometry.spatial_shape), self.order))
        if len(self.coefficients) != expected:
            raise ValueError(
                f"a {len(geometry.spatial_shape)}-D bias field of order {self.order} needs {expected} coefficients"
            )
        return {"order": self.order, "coefficients": list(self.coefficients)}

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        x = x if torch.is_floating_point(x) else x.to(torch.get_default_dtype())
        if not any(params["coefficients"]):
            return x
        field = bias_field(x.shape[2:], params["coefficients"], params["order"], device=x.device, dtype=x.dtype)
        return x * field


class RandomBiasField(RandomIntensityDegradation):
    """Bias field with coefficients ~ U(``coefficient_range``) (Graf et al.: p = 0.3, equivalent to TorchIO
    ``RandomBiasField(coefficients=(−0.5, 0), order=3)``; docs/physics.md §6 row 10).

    The field is evaluated as one tensor contraction: 0.07 s against 4.5 s for TorchIO's on a 256×256×64 volume
    (one thread, ``experiments/benchmarks/degradation_throughput.py``).

    Args:
        coefficient_range: (min, max) of every coefficient.
        order: total polynomial degree.
        prob: probability of applying a field.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    op_class = BiasField

    def __init__(
        self,
        coefficient_range: Sequence[float] = (-0.5, 0.0),
        order: int = 3,
        prob: float = 1.0,
        axis: int | None = None,
        train_only: bool = True,
    ) -> None:
        super().__init__(prob=prob, axis=axis, train_only=train_only)
        self.coefficient_range = _check_range("coefficient_range", coefficient_range)
        self.order = int(order)
        self.args_names = ["coefficient_range", "order", "prob", "axis", "train_only"]

    def randomize(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> dict[str, Any]:
        count = len(bias_field_exponents(len(geometry.spatial_shape), self.order))
        low, high = self.coefficient_range
        u = torch.rand(count, generator=generator, dtype=torch.float64, device=generator.device if generator else "cpu")
        return {"coefficients": (low + (high - low) * u).tolist(), "order": self.order}


class IntensityJitter(IntensityDegradation):
    """Brightness and contrast jitter (Graf et al.'s colour jitter, docs/physics.md §6 row 11).

    ``y = b·x``, then ``c·y + (1 − c)·mean(y)`` (mean over the image), clamped below at ``clip_min``.

    Args:
        brightness: factor b (1 = unchanged).
        contrast: factor c (1 = unchanged).
        clip_min: lower clamp (None = none).
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    changes_gain: ClassVar[bool] = True

    preserves_flat_field = False
    preserves_alignment = False

    def __init__(
        self,
        brightness: float = 1.0,
        contrast: float = 1.0,
        clip_min: float | None = 0.0,
        axis: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__(axis=axis, train_only=train_only)
        if not (brightness > 0 and contrast > 0):
            raise ValueError(f"brightness and contrast must be > 0, got {brightness}, {contrast}")
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.clip_min = clip_min
        self.args_names = ["brightness", "contrast", "clip_min", "axis", "train_only"]

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        return {"brightness": self.brightness, "contrast": self.contrast, "clip_min": self.clip_min}

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        return intensity_jitter(x, params["brightness"], params["contrast"], params["clip_min"])


class RandomIntensityJitter(RandomIntensityDegradation):
    """Brightness b ~ U(``brightness_range``) and contrast c ~ U(``contrast_range``) (Graf et al.: 0.8–1.2, p = 1,
    also at validation).

    Args:
        brightness_range: (min, max) brightness factor.
        contrast_range: (min, max) contrast factor.
        clip_min: lower clamp (None = none).
        prob: probability of jittering.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    op_class = IntensityJitter

    def __init__(
        self,
        brightness_range: Sequence[float] = (0.8, 1.2),
        contrast_range: Sequence[float] = (0.8, 1.2),
        clip_min: float | None = 0.0,
        prob: float = 1.0,
        axis: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__(prob=prob, axis=axis, train_only=train_only)
        self.brightness_range = _check_range("brightness_range", brightness_range, 1e-6)
        self.contrast_range = _check_range("contrast_range", contrast_range, 1e-6)
        self.clip_min = clip_min
        self.args_names = ["brightness_range", "contrast_range", "clip_min", "prob", "axis", "train_only"]

    def randomize(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> dict[str, Any]:
        return {
            "brightness": draw_uniform(generator, *self.brightness_range),
            "contrast": draw_uniform(generator, *self.contrast_range),
            "clip_min": self.clip_min,
        }


class GaussianBlur(IntensityDegradation):
    """Isotropic Gaussian blur of standard deviation ``sigma_px`` voxels over every spatial axis (§6 row 8).

    Args:
        sigma_px: standard deviation (voxels of the image it is applied to; 0 = identity).
        support: ``default`` (2⌈3σ⌉ + 1 taps) or an odd number of taps (Graf et al.'s code: 9).
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    def __init__(
        self,
        sigma_px: float,
        support: Literal["default"] | int = "default",
        axis: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__(axis=axis, train_only=train_only)
        if not (math.isfinite(sigma_px) and sigma_px >= 0):
            raise ValueError(f"sigma_px must be finite and >= 0, got {sigma_px!r}")
        self.sigma_px = float(sigma_px)
        self.support = support
        self.args_names = ["sigma_px", "support", "axis", "train_only"]

    def resolve(self, geometry: AcquisitionGeometry) -> dict[str, Any]:
        return {"sigma_px": self.sigma_px, "support": self.support}

    def apply_tensor(self, x: torch.Tensor, axis: int, params: dict[str, Any], nearest: bool = False) -> torch.Tensor:
        return gaussian_blur(x, params["sigma_px"], support=params["support"])


class RandomGaussianBlur(RandomIntensityDegradation):
    """Gaussian blur with σ ~ U(``sigma_range_px``) (Graf et al.: 0.5–4 px, p = 0.3; docs/physics.md §6 row 8).

    Args:
        sigma_range_px: (min, max) standard deviation in voxels.
        support: see :class:`GaussianBlur`.
        prob: probability of blurring.
        axis: see :class:`~mrisr.degradations.base.DegradationTransform`.
        train_only: see :class:`~mrisr.degradations.base.DegradationTransform`.
    """

    op_class = GaussianBlur

    def __init__(
        self,
        sigma_range_px: Sequence[float] = (0.5, 4.0),
        support: Literal["default"] | int = "default",
        prob: float = 1.0,
        axis: int | None = None,
        train_only: bool = True,
    ) -> None:
        super().__init__(prob=prob, axis=axis, train_only=train_only)
        self.sigma_range_px = _check_range("sigma_range_px", sigma_range_px, 0.0)
        self.support = support
        self.args_names = ["sigma_range_px", "support", "prob", "axis", "train_only"]

    def randomize(self, generator: torch.Generator | None, geometry: AcquisitionGeometry) -> dict[str, Any]:
        return {"sigma_px": draw_uniform(generator, *self.sigma_range_px), "support": self.support}
