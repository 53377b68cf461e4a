"""Image similarity between a super-resolved volume and its high-resolution reference (docs/evaluation.md §1).

Rules:

* **Grid**: always the HR grid. A volume on another grid is resampled onto it by world coordinates
  (cubic B-spline, edge-replicating boundary, never zero padding).
* **Intensity**: every image is divided by the HR 99.5th percentile inside the mask (or, without a
  mask, inside the HR foreground: voxels > 0) and clipped to [0, 1]; data range L = 1.
* **PSNR** = 10·log10(L² / MSE); masked PSNR uses the MSE over mask voxels only.
* **SSIM** is the mean of the 3-D (or 2-D) SSIM map (Wang et al. 2004; the "MSSIM" of Dewey et al.,
  not multi-scale SSIM): Gaussian window σ = 1.5 voxels (11 voxels wide), population covariances,
  averaged over all voxels or over the mask.

Masks given as arrays are binarised: boolean arrays are used as they are, numeric arrays as
``mask > 0.5`` (soft masks at half, label maps as "any label").
"""

from __future__ import annotations

import logging
import math

import numpy as np
from skimage.metrics import structural_similarity

from mrisr.core.errors import MrisrInputError
from mrisr.io.intensity import foreground_percentile
from mrisr.io.nifti import Volume
from mrisr.io.regrid import field_of_view_mask, resample_to_reference, same_grid

__all__ = ["check_coverage", "image_metrics", "normalize_intensity", "psnr", "ssim"]

_LOG = logging.getLogger(__name__)

_SSIM_SIGMA = 1.5


def _bool_mask(mask: np.ndarray | None, shape: tuple[int, ...], name: str = "mask") -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise MrisrInputError(None, f"{name} shape {m.shape} differs from image shape {tuple(shape)}", "resample it")
    m = m if m.dtype == np.bool_ else m > 0.5
    if not m.any():
        raise MrisrInputError(None, f"{name} is empty (no voxel > 0.5)", "check the mask or omit it")
    return m


def _check_pair(x: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x)
    b = np.asarray(reference)
    if a.shape != b.shape:
        raise MrisrInputError(
            None,
            f"image shapes differ: {a.shape} vs reference {b.shape}",
            "resample onto the reference grid first",
        )
    if a.size == 0:
        raise MrisrInputError(None, "empty images", "pass non-empty arrays")
    return a, b


def normalize_intensity(
    reference: np.ndarray,
    *others: np.ndarray,
    mask: np.ndarray | None = None,
    percentile: float = 99.5,
    clip: bool = True,
) -> tuple[np.ndarray, ...]:
    """Scale images by the reference's intensity percentile (docs/evaluation.md §1 intensity rule).

    All images are divided by the same value p, the ``percentile``-th percentile of ``reference``
    inside ``mask`` or, when ``mask`` is ``None``, inside the reference foreground (voxels > 0). With
    ``clip`` the results are clipped to [0, 1]. The percentile is computed in float64 with numpy's
    linear interpolation.

    Args:
        reference: Reference (HR) image, any shape.
        *others: Images of the same shape scaled by the same value (e.g. SR, LR-on-HR-grid).
        mask: Region for the percentile, same shape, or ``None`` for ``reference > 0``.
        percentile: Percentile in [0, 100].
        clip: Clip the scaled images to [0, 1].

    Returns:
        ``(reference_scaled, *others_scaled)``; float32 for float32/integer inputs, float64 for float64.

    Raises:
        MrisrInputError: Shape mismatch, empty mask/foreground, or a percentile value ≤ 0 (or not
            finite), which cannot scale the images.
    """
    ref = np.asarray(reference)
    for i, o in enumerate(others):
        if np.shape(o) != ref.shape:
            raise MrisrInputError(
                None, f"image {i + 1} has shape {np.shape(o)}, reference {ref.shape}", "resample it first"
            )
    region = None if mask is None else _bool_mask(mask, ref.shape)
    p = foreground_percentile(ref, percentile, region=region)
    _LOG.debug("normalize_intensity: dividing by reference p%g = %.6g", percentile, p)
    out: list[np.ndarray] = []
    for img in (ref, *others):
        a = np.asarray(img)
        dt = np.float64 if a.dtype == np.float64 else np.float32
        scaled = (a.astype(np.float64) / p).astype(dt, copy=False)
        if clip:
            np.clip(scaled, 0.0, 1.0, out=scaled)
        out.append(scaled)
    return tuple(out)


def psnr(x: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio 10·log10(L² / MSE) in dB.

    Args:
        x: Test image, any shape.
        reference: Reference image, same shape.
        mask: Optional region (same shape); the MSE is taken over its voxels only.
        data_range: Peak value L.

    Returns:
        PSNR in dB; ``inf`` when the images are identical (in the region).
    """
    a, b = _check_pair(x, reference)
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    m = _bool_mask(mask, a.shape)
    diff = a.astype(np.float64) - b.astype(np.float64)
    if m is not None:
        diff = diff[m]
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def ssim(x: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Mean structural similarity (MSSIM of Wang et al. 2004; not multi-scale SSIM).

    The SSIM map comes from :func:`skimage.metrics.structural_similarity` with a Gaussian window
    (σ = 1.5 voxels, 11 voxels wide, the same in voxels along every axis whatever the spacing),
    population covariances and ``data_range``; its mean is taken over all voxels (no border crop) or
    over ``mask``.

    Args:
        x: Test image, 2-D or 3-D; every axis at least 11 voxels long.
        reference: Reference image, same shape.
        mask: Optional region (same shape) over which the map is averaged.
        data_range: Dynamic range L of the images.

    Returns:
        Mean SSIM (1.0 for identical images).
    """
    a, b = _check_pair(x, reference)
    if a.ndim not in (2, 3):
        raise MrisrInputError(None, f"SSIM needs a 2-D or 3-D image, got shape {a.shape}", "pass a single volume")
    win = 2 * int(3.5 * _SSIM_SIGMA + 0.5) + 1
    if min(a.shape) < win:
        raise MrisrInputError(
            None,
            f"image shape {a.shape} has an axis shorter than the {win}-voxel SSIM window",
            "compare on a larger grid (e.g. the HR grid)",
        )
    m = _bool_mask(mask, a.shape)
    _, smap = structural_similarity(
        a.astype(np.float64),
        b.astype(np.float64),
        data_range=data_range,
        gaussian_weights=True,
        sigma=_SSIM_SIGMA,
        use_sample_covariance=False,
        full=True,
    )
    return float(np.mean(smap[m])) if m is not None else float(np.mean(smap))


def check_coverage(image: Volume, reference: Volume, min_coverage: float = 0.9) -> None:
    """Refuse ``image`` when its field of view covers less than ``min_coverage`` of ``reference``'s voxels.

    Raises:
        MrisrInputError: the coverage is below ``min_coverage`` (volumes of different subjects or spaces).
    """
    coverage = float(field_of_view_mask(image, reference).mean())
    if coverage < min_coverage:
        raise MrisrInputError(
            image.path,
            f"the image covers only {100 * coverage:.1f} % of the reference field of view",
            "compare volumes of the same subject in the same space (check both affines)",
        )


def image_metrics(
    sr: Volume,
    hr: Volume,
    mask: Volume | None = None,
    percentile: float = 99.5,
    normalization_mask: Volume | None = None,
    min_coverage: float = 0.9,
) -> dict[str, float | str]:
    """PSNR and mean SSIM of a super-resolved volume against its HR reference, on the HR grid.

    ``sr`` (cubic B-spline) and ``mask`` (nearest neighbour, then ``> 0.5``) are resampled onto the HR
    grid by world coordinates when their grids differ. Intensities follow the rule of
    :func:`normalize_intensity`: both divided by the HR ``percentile`` inside ``normalization_mask`` (a
    foreground/brain mask; default the HR foreground, voxels > 0), clipped to [0, 1], data range 1. The
    region of interest ``mask`` (e.g. a cord mask) only selects the voxels of the masked metrics: normalising
    by an ROI's own percentile would clip everything brighter than the ROI (CSF around a T2w cord).

    Args:
        sr: Super-resolved (or interpolated, LR) volume.
        hr: High-resolution reference; its grid is the evaluation grid.
        mask: Optional region of interest (e.g. brain or cord mask) for ``psnr_mask``/``ssim_mask``.
        percentile: HR intensity percentile mapped to 1.
        normalization_mask: Optional foreground mask inside which the percentile is taken.
        min_coverage: smallest fraction of HR voxels that must lie inside the SR field of view.

    Returns:
        ``{"psnr", "ssim"}`` over the whole volume (dB and unitless), ``"psnr_mask"``/``"ssim_mask"``
        when a mask is given, ``"grid": "hr"``, ``"resampled"`` (whether ``sr`` was resampled),
        ``"normalization"`` (e.g. ``"hr_p99.5"``) and ``"normalization_region"`` (``"mask"`` or
        ``"foreground"``).
    """
    resampled = not same_grid(sr, hr)
    if resampled:
        check_coverage(sr, hr, min_coverage)
    sr_data = resample_to_reference(sr, hr, order=3) if resampled else sr.data
    mask_arr: np.ndarray | None = None
    if mask is not None:
        m = mask.data
        if not same_grid(mask, hr):  # outside its own field of view a mask is background, not an edge copy
            m = resample_to_reference(mask, hr, order=0) * field_of_view_mask(mask, hr)
        if not np.any(np.asarray(m) > 0.5):
            raise MrisrInputError(
                mask.path, "the mask has no voxel inside the reference image", "pass the mask of this image"
            )
        mask_arr = _bool_mask(m, hr.shape, name="mask on the HR grid")
    norm_arr: np.ndarray | None = None
    if normalization_mask is not None:
        m = (
            resample_to_reference(normalization_mask, hr, order=0)
            if not same_grid(normalization_mask, hr)
            else normalization_mask.data
        )
        norm_arr = _bool_mask(m, hr.shape, name="normalization mask on the HR grid")
    hr_n, sr_n = normalize_intensity(hr.data, sr_data, mask=norm_arr, percentile=percentile, clip=True)
    result: dict[str, float | str] = {
        "psnr": psnr(sr_n, hr_n),
        "ssim": ssim(sr_n, hr_n),
    }
    if mask_arr is not None:
        result["psnr_mask"] = psnr(sr_n, hr_n, mask=mask_arr)
        result["ssim_mask"] = ssim(sr_n, hr_n, mask=mask_arr)
    result["grid"] = "hr"
    result["resampled"] = resampled
    result["normalization"] = f"hr_p{percentile:g}"
    result["normalization_region"] = "normalization_mask" if norm_arr is not None else "foreground"
    _LOG.info(
        "image metrics on the HR grid (resampled=%s, normalisation hr_p%g inside the %s): %s",
        resampled,
        percentile,
        result["normalization_region"],
        {k: v for k, v in result.items() if isinstance(v, float)},
    )
    return result
