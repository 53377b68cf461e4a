"""Pure physics of thick-slice MRI: slice profiles, forward model, same-FOV resampling (docs/physics.md)."""

from __future__ import annotations

from mrisr.physics.forward import (
    ThickSliceResult,
    blur_axis,
    parse_dewey_notation,
    simulate_thick_slices,
    upsample_to_grid,
)
from mrisr.physics.profiles import (
    Discretization,
    FWHMConvention,
    ProfileKind,
    continuous_profile,
    discrete_fwhm,
    kernel_fwhm_voxels,
    slice_kernel,
    slr_profile_table,
)
from mrisr.physics.resample import (
    interpolation_matrix,
    output_length,
    resample_affine,
    resample_axis,
    same_fov_positions,
)

__all__ = [
    "Discretization",
    "FWHMConvention",
    "ProfileKind",
    "ThickSliceResult",
    "blur_axis",
    "continuous_profile",
    "discrete_fwhm",
    "interpolation_matrix",
    "kernel_fwhm_voxels",
    "output_length",
    "parse_dewey_notation",
    "resample_affine",
    "resample_axis",
    "same_fov_positions",
    "simulate_thick_slices",
    "slice_kernel",
    "slr_profile_table",
    "upsample_to_grid",
]
