"""Python API mirroring the command-line tools, for notebooks: works on nibabel images, paths or Volumes.

>>> import mrisr
>>> lr = mrisr.simulate("HR.nii.gz", thickness_mm=3, gap_mm=1, axis=2)      # nibabel image
>>> sr = mrisr.super_resolve(lr, model="cubic")                           # nibabel image on the isotropic grid
>>> mrisr.evaluate(sr, "HR.nii.gz")                                       # {"psnr": ..., "ssim": ...}
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import nibabel as nib
import numpy as np

from mrisr.core.errors import MrisrInputError
from mrisr.degradations.thick_slice import ThickSlice
from mrisr.eval.image import image_metrics
from mrisr.inference import InferenceSettings, VolumeSuperResolver, run_on_volume
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.intensity import foreground_percentile
from mrisr.io.nifti import Volume, as_volume
from mrisr.physics.profiles import FWHMConvention, ProfileKind

log = logging.getLogger(__name__)

ImageLike = str | os.PathLike | nib.Nifti1Image | Volume


def simulation_axis(volume: Volume, axis: int | Literal["auto"]) -> int:
    """Axis along which thick slices are simulated.

    ``auto``: an anisotropic input is re-thickened along its own slice axis (docs/physics.md §4 detection). An isotropic
    input has no slice axis; the header's ``dim_info`` slice dimension is used when set, otherwise the axis with the
    fewest voxels (the slab direction of most 3-D acquisitions), with a warning naming the choice.
    """
    if axis != "auto":
        return detect_slice_axis(volume, axis=int(axis)).axis
    try:
        return detect_slice_axis(volume).axis
    except MrisrInputError:
        pass
    slice_dim = volume.header.get_dim_info()[2]
    if slice_dim is not None:
        chosen, reason = int(slice_dim), "the header's dim_info slice dimension"
    else:
        chosen, reason = int(np.argmin(volume.shape)), "the axis with the fewest voxels"
    log.warning(
        "%s: isotropic input; simulating slices along axis %d (%s, direction %s). Pass axis=0|1|2 to choose.",
        volume.path or "input",
        chosen,
        reason,
        nib.aff2axcodes(volume.affine)[chosen],
    )
    return chosen


def simulate(
    image: ImageLike,
    thickness_mm: float,
    gap_mm: float = 0.0,
    separation_mm: float | None = None,
    axis: int | Literal["auto"] = "auto",
    profile: ProfileKind = "slr",
    fwhm_convention: FWHMConvention = "variance",
    kernel_file: str | None = None,
    noise_std: float = 0.0,
    seed: int = 0,
) -> nib.Nifti1Image:
    """Simulate a thick-slice acquisition of ``image`` (docs/physics.md §1) with an exact affine.

    Args:
        image: HR volume.
        thickness_mm: slice thickness T (FWHM of the slice profile), mm.
        gap_mm: gap G (mm); the separation is T + G unless ``separation_mm`` is given.
        separation_mm: slice separation S (mm).
        axis: through-plane axis or ``auto`` (:func:`simulation_axis`).
        profile: slice profile kind.
        fwhm_convention: ``variance`` or ``absolute`` (docs/physics.md §2.2).
        kernel_file: 1-D kernel (.npy) for ``profile="file"``.
        noise_std: additive Gaussian noise SD as a fraction of the 99.5th foreground percentile.
        seed: noise seed.

    Returns:
        The LR image (float32) with the header of the input and the updated affine.
    """
    volume = as_volume(image)
    separation = thickness_mm + gap_mm if separation_mm is None else separation_mm
    if separation <= 0:
        raise MrisrInputError(volume.path, f"slice separation {separation} mm is not positive", "check thickness/gap")
    chosen = simulation_axis(volume, axis)
    spacing = float(volume.zooms[chosen])
    if separation < spacing - 1e-9:
        raise MrisrInputError(
            volume.path,
            f"slice separation {separation:g} mm is finer than the input spacing {spacing:g} mm along axis {chosen}",
            "a thick-slice simulation needs separation ≥ the HR spacing; choose another axis or larger slices",
        )
    noise = 0.0
    if noise_std > 0:
        noise = noise_std * foreground_percentile(volume.data, source=volume.path)
    model = ThickSlice(
        thickness_mm=thickness_mm,
        separation_mm=separation,
        axis=chosen,
        profile=profile,
        fwhm_convention=fwhm_convention,
        kernel_file=kernel_file,
        noise_std=noise,
    )
    return model(volume, seed=seed).to_nifti()


def super_resolve(
    image: ImageLike,
    model: str | VolumeSuperResolver = "cubic",
    axis: int | Literal["auto"] = "auto",
    target_spacing_mm: float | None = None,
    allow_anisotropic_inplane: bool = False,
    seed: int = 0,
    estimate_thickness: bool = True,
) -> nib.Nifti1Image:
    """Super-resolve ``image`` through-plane onto the isotropic grid (or ``target_spacing_mm``).

    Args:
        image: thick-slice volume.
        model: any name that ``infer.py model=<name>`` accepts (``cubic``, ``smore_prior``, ``zoo/…``;
            :func:`mrisr.app.models.model_names`), a path to a training checkpoint, or any model of the
            :class:`~mrisr.inference.VolumeSuperResolver` protocol (e.g. a trained system, or a
            :class:`~mrisr.systems.zero_shot.ZeroShotSR`, which is then fitted on ``image``).
        axis: through-plane axis or ``auto`` (refuses near-isotropic input).
        target_spacing_mm: output spacing along the axis (default: the in-plane spacing).
        allow_anisotropic_inplane: accept unequal in-plane spacings (the finer one becomes the target).
        seed: seed of the generator that per-volume fits and stochastic models draw from.
        estimate_thickness: estimate an unknown slice thickness from the image (per-volume models).
    """
    from mrisr.app.models import load_model

    resolver = load_model(model) if isinstance(model, str) else model
    settings = InferenceSettings(
        axis=axis,
        target_spacing_mm=target_spacing_mm,
        allow_anisotropic_inplane=allow_anisotropic_inplane,
        seed=seed,
        estimate_thickness=estimate_thickness,
    )
    return run_on_volume(resolver, as_volume(image), settings).sr.to_nifti()


def evaluate(sr: ImageLike, hr: ImageLike, mask: ImageLike | None = None, percentile: float = 99.5) -> dict[str, Any]:
    """PSNR and mean SSIM of ``sr`` against ``hr`` on the HR grid (docs/evaluation.md §1); masked with ``mask``."""
    mask_volume = as_volume(mask, allow_constant=True) if mask is not None else None
    return image_metrics(as_volume(sr), as_volume(hr), mask=mask_volume, percentile=percentile)
