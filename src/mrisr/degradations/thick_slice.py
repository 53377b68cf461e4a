"""Thick-slice acquisition of a whole NIfTI volume: the physics forward model with exact geometry."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from mrisr.io.nifti import Volume
from mrisr.physics import simulate_thick_slices
from mrisr.physics.profiles import Discretization, FWHMConvention, ProfileKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThickSlice:
    """Simulate a 2-D multi-slice acquisition of slice thickness T and separation S along one voxel axis.

    ``y = S_s(k_f ⊛_a x) [+ n]`` (docs/physics.md §1): blur along ``axis`` with the slice profile of FWHM T (mm), then
    same-FOV resampling with step ``s = S / Δ`` HR voxels; the output affine places every LR voxel centre at the
    centre of the HR block it samples. Optional additive Gaussian noise is drawn from a seeded generator.

    Args:
        thickness_mm: slice thickness T = FWHM of the slice profile (mm).
        separation_mm: centre-to-centre slice separation S (mm); ``None`` = T (no gap). Gap G = S − T.
        axis: voxel axis along which slices are stacked (0, 1 or 2).
        profile: slice-profile kind (``gaussian``, ``rect``, ``slr`` Shinnar–Le Roux, ``file``).
        fwhm_convention: ``variance`` (f = √(T² − Δ²)/Δ, for HR images with their own PSF) or ``absolute``.
        discretization: kernel discretisation (``None`` = the profile kind's default).
        kernel_file: 1-D kernel (.npy) for ``profile="file"``.
        noise_std: SD of additive Gaussian noise in units of the input intensity (0 = off).
        order: spline order of the resampling (3 = cubic B-spline).
    """

    thickness_mm: float
    separation_mm: float | None = None
    axis: int = 2
    profile: ProfileKind = "slr"
    fwhm_convention: FWHMConvention = "variance"
    discretization: Discretization | None = None
    kernel_file: str | None = None
    noise_std: float = 0.0
    order: int = 3

    #: :meth:`__call__` returns the LR volume on its own thick-slice grid.
    output_grid: ClassVar[Literal["lr", "hr"]] = "lr"

    def __post_init__(self) -> None:
        if self.thickness_mm <= 0:
            raise ValueError(f"thickness_mm must be > 0 mm, got {self.thickness_mm}")
        if self.separation_mm is not None and self.separation_mm <= 0:
            raise ValueError(f"separation_mm must be > 0 mm, got {self.separation_mm}")
        if self.axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {self.axis}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be ≥ 0, got {self.noise_std}")

    @property
    def separation(self) -> float:
        """Slice separation S in mm (T when no separation was given)."""
        return self.thickness_mm if self.separation_mm is None else self.separation_mm

    @property
    def gap_mm(self) -> float:
        """Gap G = S − T in mm (negative = overlap)."""
        return self.separation - self.thickness_mm

    @property
    def setting(self) -> str:
        """Short stable name for result tables, e.g. ``T3_S4_slr``."""
        return f"T{self.thickness_mm:g}_S{self.separation:g}_{self.profile}"

    @property
    def is_random(self) -> bool:
        """Whether the output depends on the seed (only through the noise)."""
        return self.noise_std > 0

    def describe(self, seed: int | None = None) -> dict[str, Any]:
        """Parameters of :meth:`__call__` with ``seed`` (JSON-ready; the acquisition itself is deterministic)."""
        return {
            "setting": self.setting,
            "seed": seed,
            "axis": self.axis,
            "output_grid": self.output_grid,
            "thickness_mm": self.thickness_mm,
            "separation_mm": self.separation,
            "gap_mm": self.gap_mm,
            "profile": self.profile,
            "fwhm_convention": self.fwhm_convention,
            "discretization": self.discretization,
            "kernel_file": self.kernel_file,
            "noise_std": self.noise_std,
            "order": self.order,
        }

    def as_stack(self) -> Any:
        """The same acquisition as a :class:`~mrisr.degradations.stack.DegradationStack` (slice profile → sampling →
        noise), used for training pairs."""
        from mrisr.degradations.acquisition import Downsample, SliceProfile
        from mrisr.degradations.intensity import RandomNoise
        from mrisr.degradations.stack import DegradationStack

        steps: list[Any] = [
            SliceProfile(
                thickness_mm=self.thickness_mm,
                separation_mm=self.separation,
                profile=self.profile,
                fwhm_convention=self.fwhm_convention,
                discretization=self.discretization,
                kernel_file=self.kernel_file,
            ),
            Downsample(order=self.order),
        ]
        if self.noise_std > 0:
            steps.append(RandomNoise(sigma_range=(self.noise_std, self.noise_std), clip_min=None))
        return DegradationStack(steps=steps, axis=self.axis, setting=self.setting, intensity_percentile=None)

    def sample_pair(
        self, hr_plane: torch.Tensor, spacing_mm: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pair from one 2-D plane ``(1, H, W)`` (rows = through-plane axis, ``spacing_mm`` along them).

        The plane is blurred with the slice profile, sampled at the same-FOV LR positions, given noise of SD
        ``noise_std`` (in the plane's intensity units) and brought back onto the HR grid (cubic B-spline).

        Returns:
            ``(hr, lr_on_hr_grid)``, both ``(1, H, W)`` float32 on the plane's device.
        """
        return self.as_stack().sample_pair(hr_plane, spacing_mm, generator)

    def sample_pair_with_reference(
        self, hr_plane: torch.Tensor, spacing_mm: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`sample_pair` plus its gain reference (the LR side itself: this acquisition has no gain step)."""
        return self.as_stack().sample_pair_with_reference(hr_plane, spacing_mm, generator)

    def __call__(self, volume: Volume, seed: int | None = None) -> Volume:
        """Apply the acquisition model to ``volume`` (data ``(X, Y, Z)``, spacing from its affine).

        Returns:
            The thick-slice volume on its own grid, with the updated affine and a copy of the input header.
        """
        spacing_mm = float(volume.zooms[self.axis])
        result = simulate_thick_slices(
            volume.data.astype(np.float64),
            axis=self.axis,
            spacing_mm=spacing_mm,
            thickness_mm=self.thickness_mm,
            separation_mm=self.separation,
            profile=self.profile,
            fwhm_convention=self.fwhm_convention,
            discretization=self.discretization,
            kernel_file=self.kernel_file,
            affine=volume.affine,
            order=self.order,
        )
        lr = np.asarray(result.lr)
        if self.noise_std > 0:
            rng = np.random.default_rng(seed)
            lr = lr + rng.normal(0.0, self.noise_std, size=lr.shape)
        log.debug(
            "thick slice T=%.3f mm S=%.3f mm on Δ=%.4f mm: f=%.3f voxels, %d taps, step %.4f",
            self.thickness_mm,
            self.separation,
            spacing_mm,
            result.fwhm_voxels,
            len(result.kernel),
            result.step,
        )
        return Volume(data=lr.astype(np.float32), affine=result.affine, header=volume.header.copy(), path=None)
