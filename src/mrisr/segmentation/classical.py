"""Classical T2w cord segmentation: dark cord inside bright CSF, no learned weights (docs/evaluation.md §4 backend 2).

Pipeline (every image is processed on its own grid, reoriented losslessly to RAS so that axial planes are
``[:, :, z]``; distances are in mm through the voxel sizes, so thick slices and anisotropic pixels are handled):

1. **Normalise** every plane by its 99th intensity percentile (smoothed along z): removes the coil drift.
2. **Score**: per plane, mean intensity in a 4-8 mm annulus minus mean in a 2.5 mm disk — high on a dark tube
   surrounded by bright CSF (FFT convolution with normalised kernels). Positions outside the per-plane convex
   hull of the CSF column (:func:`canal_region`) are excluded: the dark tissue just behind the CSF scores as
   high as the cord in the thoracic spine, where the cord lies against the anterior wall.
3. **Centerline**: dynamic programming over every pixel links the planes (maximise
   Σ tanh(score / 0.2) − λ·(‖Δposition‖ / slice spacing)² with a bounded slope); weak planes at the ends are
   dropped, weak planes inside are interpolated; median + Gaussian filtering along z.
4. **Boundary** (sub-voxel, partial-volume aware): 72 rays from the centre (bilinear samples every 0.1 mm);
   on each ray the edge is the crossing of the level between the darkest cord value before the ray's CSF
   peak and that peak (``level_fraction``; 0.5 is the half maximum), interpolated linearly between samples.
   Rays without CSF contrast or far beyond the median edge (a missing CSF rim) are interpolated from their
   neighbours; rays are cast again from the contour's centroid. ``boundary="contour"`` instead takes the
   closed iso-contour (:func:`skimage.measure.find_contours`) at the level between I_cord (median in a 2 mm
   disk) and the median CSF peak that encloses the centre; each method is the other's fallback.
5. **QC**: areas outside ``area_range_mm2``, eccentricity above ``max_eccentricity`` or areas far from the
   running median along z are rejected; a rejected plane takes the shape of the nearest accepted plane.
6. **Mask**: the fraction of each voxel inside the contour (its sum is the contour's shoelace area),
   binarised at 0.5 unless ``soft``.

The default ``level_fraction`` of 0.43 (instead of the half maximum, 0.5) matches the manual masks of the
shared 1 mm spines, which are drawn slightly inside the half-maximum edge (the half maximum gives areas about
5 % larger). Failure modes: stenosis or CSF effacement, flow voids, nerve roots, motion, very thick slices
(thin CSF layers blurred across thick voxels lower the CSF peak and pull the edge inwards).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage, signal
from skimage.draw import polygon2mask
from skimage.measure import find_contours, points_in_poly
from skimage.morphology import convex_hull_image

from mrisr.core.errors import MrisrInputError
from mrisr.io.nifti import Volume
from mrisr.io.regrid import reorient_axial, restore_orientation

__all__ = [
    "ClassicalSegmenter",
    "SliceContour",
    "canal_region",
    "cord_contour",
    "dark_core_score",
    "polygon_coverage",
    "track_centerline",
]

_LOG = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Centerline


def _ring_kernel(spacing_xy: tuple[float, float], r_in_mm: float, r_out_mm: float) -> np.ndarray:
    """Normalised 2-D kernel of the pixels whose centre lies at r_in ≤ r ≤ r_out mm (a disk when r_in = 0)."""
    px, py = spacing_xy
    hx, hy = math.ceil(r_out_mm / px), math.ceil(r_out_mm / py)
    x = np.arange(-hx, hx + 1)[:, None] * px
    y = np.arange(-hy, hy + 1)[None, :] * py
    r = np.hypot(x, y)
    k = ((r >= r_in_mm) & (r <= r_out_mm)).astype(np.float64)
    if k.sum() == 0:  # radius smaller than a pixel: the central pixel
        k[hx, hy] = 1.0
    return k / k.sum()


def dark_core_score(
    image: np.ndarray,
    spacing_xy: tuple[float, float],
    core_radius_mm: float = 2.5,
    annulus_mm: tuple[float, float] = (4.0, 8.0),
) -> np.ndarray:
    """ "Dark core in a bright annulus" score of every pixel of every axial plane.

    Args:
        image: RAS intensities ``(X, Y, Z)``, normalised (e.g. to a high percentile).
        spacing_xy: In-plane voxel sizes (px, py) in mm.
        core_radius_mm: Radius of the central disk (mm).
        annulus_mm: Inner and outer radius of the annulus (mm).

    Returns:
        Score ``(X, Y, Z)``: mean in the annulus minus mean in the disk (same intensity unit).
    """
    img = np.asarray(image, dtype=np.float32)
    core = _ring_kernel(spacing_xy, 0.0, core_radius_mm).astype(np.float32)[:, :, None]
    ring = _ring_kernel(spacing_xy, *annulus_mm).astype(np.float32)[:, :, None]
    mean_ring = signal.fftconvolve(img, ring, mode="same", axes=(0, 1))
    mean_core = signal.fftconvolve(img, core, mode="same", axes=(0, 1))
    return (mean_ring - mean_core).astype(np.float32)


def track_centerline(
    score: np.ndarray,
    spacing_mm: tuple[float, float, float],
    saturation: float = 0.2,
    max_slope: float = 1.5,
    transition_weight: float = 0.02,
    grid_mm: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Most consistent path of high score along z, by dynamic programming over every pixel (Viterbi).

    Maximises Σ_z tanh(score(z, p_z) / saturation) − λ·Σ_z (‖p_z − p_{z−1}‖ / pz)² with
    ‖p_z − p_{z−1}‖ ≤ max_slope · pz (positions p in mm, pz the slice spacing). The saturation makes the path
    prefer *continuous* evidence over locally stronger but interrupted structures (a dark region behind the
    CSF column is as contrasted as the cord in the thoracic spine, but does not continue into the neck).
    Planes with pixels smaller than ``grid_mm`` are tracked on a grid of about ``grid_mm`` (block means).

    Args:
        score: Score ``(X, Y, Z)`` of :func:`dark_core_score`.
        spacing_mm: Voxel sizes (px, py, pz) in mm.
        saturation: Score at which the evidence saturates (tanh scale, intensity units).
        max_slope: Largest in-plane displacement per mm along z (mm/mm).
        transition_weight: λ (per (mm / slice spacing)²).
        grid_mm: Tracking grid (mm).

    Returns:
        ``(x, y, s)``: voxel coordinates of the path and the raw score there, each ``(Z,)``.
    """
    px, py, pz = spacing_mm
    fx, fy = max(1, int(grid_mm // px)), max(1, int(grid_mm // py))
    nx, ny, nz = score.shape[0] // fx, score.shape[1] // fy, score.shape[2]
    if nx == 0 or ny == 0:
        fx, fy, nx, ny = 1, 1, score.shape[0], score.shape[1]
    coarse = score[: nx * fx, : ny * fy].reshape(nx, fx, ny, fy, nz).mean(axis=(1, 3))
    evidence = np.tanh(coarse / saturation)
    cpx, cpy = px * fx, py * fy
    reach = max_slope * pz
    rx, ry = math.ceil(reach / cpx), math.ceil(reach / cpy)
    offsets = [
        (dx, dy)
        for dx in range(-rx, rx + 1)
        for dy in range(-ry, ry + 1)
        if (dx * cpx) ** 2 + (dy * cpy) ** 2 <= reach**2 + 1e-9
    ]
    if (0, 0) not in offsets:
        offsets.append((0, 0))
    penalty = [transition_weight * ((dx * cpx) ** 2 + (dy * cpy) ** 2) / pz**2 for dx, dy in offsets]
    total = evidence[:, :, 0].copy()
    back = np.zeros((nz, nx, ny), dtype=np.int16)
    for z in range(1, nz):
        best = np.full((nx, ny), -np.inf)
        arg = np.zeros((nx, ny), dtype=np.int16)
        for k, (dx, dy) in enumerate(offsets):
            # State (i, j) at z reached from (i − dx, j − dy) at z − 1.
            cand = np.full((nx, ny), -np.inf)
            src = total[max(0, -dx) : nx - max(0, dx), max(0, -dy) : ny - max(0, dy)]
            cand[max(0, dx) : nx - max(0, -dx), max(0, dy) : ny - max(0, -dy)] = src - penalty[k]
            better = cand > best
            best[better] = cand[better]
            arg[better] = k
        back[z] = arg
        total = evidence[:, :, z] + best
    i, j = np.unravel_index(int(np.argmax(total)), total.shape)
    path = np.zeros((nz, 2), dtype=int)
    for z in range(nz - 1, -1, -1):
        path[z] = (i, j)
        if z > 0:
            dx, dy = offsets[back[z, i, j]]
            i, j = i - dx, j - dy
    x = path[:, 0] * fx + (fx - 1) / 2.0
    y = path[:, 1] * fy + (fy - 1) / 2.0
    xi = np.clip(np.rint(x).astype(int), 0, score.shape[0] - 1)
    yi = np.clip(np.rint(y).astype(int), 0, score.shape[1] - 1)
    return x.astype(np.float64), y.astype(np.float64), score[xi, yi, np.arange(nz)].astype(np.float64)


def canal_region(
    image: np.ndarray,
    threshold: float = 0.95,
    min_threshold: float = 0.55,
    min_coverage: float = 0.9,
) -> np.ndarray:
    """Per-plane convex hull of the CSF column: the region that contains the cord.

    The CSF column is the 3-D connected component of ``image > t`` that spans the most planes (ties: the
    largest), for the highest t from ``threshold`` down to ``min_threshold`` (steps of 0.1) whose column
    reaches at least ``min_coverage`` of the planes: a high threshold keeps fat and other bright tissue out of
    the column. The cord lies inside the column's convex hull in every plane, while dark tissue just behind the
    CSF (ligaments, laminae), which the centerline score also likes, lies outside. Planes that the column does
    not reach, and every plane when no threshold qualifies (e.g. very thick slices that break 3-D connectivity),
    are left unrestricted.

    Args:
        image: RAS intensities ``(X, Y, Z)`` from :meth:`ClassicalSegmenter.normalize` (plane 99th
            percentile = 1).
        threshold: Highest CSF threshold tried (normalised intensity).
        min_threshold: Lowest threshold tried.
        min_coverage: Least fraction of planes the column must reach.

    Returns:
        Boolean ``(X, Y, Z)``: allowed cord-centre positions.
    """
    allowed = np.ones(image.shape, dtype=bool)
    t = threshold
    while t >= min_threshold - 1e-9:
        labels, n = ndimage.label(image > t)
        if n:
            objects = ndimage.find_objects(labels)
            extent = np.array([o[2].stop - o[2].start for o in objects])
            sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
            best = int(np.lexsort((sizes, extent))[-1]) + 1
            column = labels == best
            reached = column.any(axis=(0, 1))
            if reached.mean() >= min_coverage:
                for z in np.flatnonzero(reached):
                    xs, ys = np.nonzero(column[:, :, z])
                    x0, x1 = max(0, xs.min() - 1), xs.max() + 2
                    y0, y1 = max(0, ys.min() - 1), ys.max() + 2
                    hull = np.zeros(image.shape[:2], dtype=bool)
                    hull[x0:x1, y0:y1] = convex_hull_image(column[x0:x1, y0:y1, z])
                    allowed[:, :, z] = ndimage.binary_dilation(hull, iterations=1)
                _LOG.debug("CSF column at threshold %.2f reaches %d of %d planes", t, reached.sum(), reached.size)
                return allowed
        t -= 0.1
    _LOG.info("no continuous CSF column found: the cord search is not restricted to the canal")
    return allowed


# --------------------------------------------------------------------------------------------------
# Boundary


@dataclass(frozen=True)
class SliceContour:
    """Cord boundary in one axial plane.

    Attributes:
        polygon: Closed contour ``(N, 2)`` in voxel coordinates (x, y) of the plane; empty when failed.
        area_mm2: Shoelace area of the contour (mm²); ``NaN`` when failed.
        eccentricity: Eccentricity of the enclosed region (0 = circle), ``NaN`` when failed.
        method: ``"contour"`` (closed iso-contour), ``"rays"`` (star-shaped fallback), ``"copied"`` (shape of
            a neighbouring plane) or ``"failed"``.
        level: Iso-intensity level used.
    """

    polygon: np.ndarray
    area_mm2: float
    eccentricity: float
    method: str
    level: float


_FAILED = SliceContour(np.zeros((0, 2)), math.nan, math.nan, "failed", math.nan)


def _shoelace(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _polygon_centroid(poly: np.ndarray) -> tuple[float, float]:
    """Area centroid of a closed polygon ``(N, 2)`` (vertex mean for degenerate polygons)."""
    x, y = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    a = 0.5 * cross.sum()
    if abs(a) < 1e-12:
        return float(x.mean()), float(y.mean())
    return float(((x + x1) * cross).sum() / (6 * a)), float(((y + y1) * cross).sum() / (6 * a))


def _polygon_eccentricity(poly_mm: np.ndarray) -> float:
    """Eccentricity of the uniform region inside a closed polygon (from its second area moments)."""
    x, y = poly_mm[:, 0], poly_mm[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    a = 0.5 * cross.sum()
    if abs(a) < 1e-12:
        return math.nan
    cx = ((x + x1) * cross).sum() / (6 * a)
    cy = ((y + y1) * cross).sum() / (6 * a)
    ixx = ((x**2 + x * x1 + x1**2) * cross).sum() / (12 * a) - cx**2
    iyy = ((y**2 + y * y1 + y1**2) * cross).sum() / (12 * a) - cy**2
    ixy = ((x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y) * cross).sum() / (24 * a) - cx * cy
    ev = np.linalg.eigvalsh(np.array([[ixx, ixy], [ixy, iyy]]))
    if ev[1] <= 0:
        return math.nan
    return float(math.sqrt(max(0.0, 1.0 - ev[0] / ev[1])))


def _finish(poly: np.ndarray, spacing_xy: tuple[float, float], method: str, level: float) -> SliceContour:
    poly_mm = poly * np.asarray(spacing_xy)
    return SliceContour(poly, _shoelace(poly_mm), _polygon_eccentricity(poly_mm), method, level)


def _sub_voxel_grid(
    shape: tuple[int, int], centre: tuple[float, float], spacing_xy: tuple[float, float], half_mm: float, step_mm: float
) -> tuple[tuple[int, int, int, int], tuple[int, int], np.ndarray, np.ndarray]:
    """Voxel box around ``centre`` and the sub-voxel sample coordinates aligned with it."""
    boxes, factors, coords = [], [], []
    for c, sp, n in zip(centre, spacing_xy, shape, strict=True):
        lo = max(0, math.floor(c - half_mm / sp))
        hi = min(n, math.ceil(c + half_mm / sp) + 1)
        f = max(1, round(sp / step_mm))
        boxes.append((lo, hi))
        factors.append(f)
        coords.append(lo - 0.5 + (np.arange((hi - lo) * f) + 0.5) / f)
    box = (boxes[0][0], boxes[0][1], boxes[1][0], boxes[1][1])
    return box, (factors[0], factors[1]), coords[0], coords[1]


def cord_contour(
    plane: np.ndarray,
    centre: tuple[float, float],
    spacing_xy: tuple[float, float],
    level_fraction: float = 0.5,
    core_radius_mm: float = 2.0,
    fill_radius_mm: float = 12.0,
    min_contrast: float = 0.3,
    max_radius_ratio: float = 2.0,
    ray_minimum: bool = True,
    step_mm: float = 0.25,
    method: Literal["rays", "contour"] = "rays",
) -> SliceContour:
    """Sub-voxel boundary of the dark cord around ``centre`` in one axial plane.

    Args:
        plane: Intensities ``(X, Y)`` of the plane.
        centre: Cord centre (x, y) in voxel coordinates.
        spacing_xy: Pixel sizes (px, py) in mm.
        level_fraction: Position of the edge level between the cord (0) and the CSF peak (1); 0.5 = half
            maximum.
        core_radius_mm: Disk radius of the cord intensity I_cord (median), mm.
        fill_radius_mm: Ray length, i.e. largest distance from the centre searched for the edge (mm).
        min_contrast: Least relative CSF/cord contrast for a ray to count (0.3 = CSF peak 30 % above I_cord).
        max_radius_ratio: Rays whose edge lies beyond this multiple of the median edge distance are treated
            as leaks and interpolated from their neighbours (``rays`` only).
        ray_minimum: Use the darkest value before the peak of each ray as its cord level (else I_cord).
        step_mm: Sub-voxel sampling step of the ``contour`` method (mm).
        method: ``"rays"`` (star-shaped, per-ray level) or ``"contour"`` (closed iso-contour enclosing the
            centre at one level per plane).

    Returns:
        A :class:`SliceContour` (``method="failed"`` when fewer than half of the rays show CSF contrast or
        no closed contour encloses the centre).
    """
    px, py = spacing_xy
    src = np.asarray(plane, dtype=np.float64)
    # Radial profiles from the centre (bilinear), 0.1 mm steps up to the fill radius.
    n_rays = 72
    theta = np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False)
    dr = 0.1
    radii = np.arange(0.0, fill_radius_mm + 1e-9, dr)
    rx = centre[0] + np.outer(np.cos(theta), radii) / px
    ry = centre[1] + np.outer(np.sin(theta), radii) / py
    prof = ndimage.map_coordinates(src, [rx, ry], order=1, mode="nearest")
    i_cord = float(np.median(prof[:, radii <= core_radius_mm]))
    peaks = prof.max(axis=1)
    contrast = peaks > i_cord * (1.0 + min_contrast) + 1e-9
    if contrast.sum() < n_rays // 2:
        return _FAILED
    i_csf = float(np.median(peaks[contrast]))
    if method == "contour":
        level = i_cord + level_fraction * (i_csf - i_cord)
        half = fill_radius_mm + 2.0
        _, (fx, fy), gx, gy = _sub_voxel_grid(src.shape, centre, spacing_xy, half, step_mm)
        gxx, gyy = np.meshgrid(gx, gy, indexing="ij")
        vals = ndimage.map_coordinates(src, [gxx, gyy], order=1, mode="nearest")
        c_fine = np.array([(centre[0] - gx[0]) * fx, (centre[1] - gy[0]) * fy])
        best: np.ndarray | None = None
        best_area = math.inf
        for contour in find_contours(vals, level):
            if len(contour) < 4 or not np.allclose(contour[0], contour[-1]):
                continue
            if not points_in_poly(c_fine[None, :], contour)[0]:
                continue
            area = _shoelace(contour) * (px / fx) * (py / fy)
            if 2.0 < area < best_area:
                best, best_area = contour, area
        if best is None:
            return _FAILED
        poly = np.stack([gx[0] + best[:, 0] / fx, gy[0] + best[:, 1] / fy], axis=1)
        return _finish(poly[:-1], spacing_xy, "contour", level)
    # Star-shaped contour: per-ray half maximum between the darkest cord value before the ray's peak and the peak.
    k_peak = np.argmax(prof, axis=1)
    before = np.where(np.arange(radii.size)[None, :] <= k_peak[:, None], prof, np.inf)
    low = np.minimum(before.min(axis=1), i_cord) if ray_minimum else np.full(n_rays, i_cord)
    levels = low + level_fraction * (peaks - low)
    above = prof >= levels[:, None]
    above[:, 0] = False
    hit = above.any(axis=1) & contrast
    first = np.argmax(above, axis=1)
    edge = np.full(n_rays, np.nan)
    k = first[hit]
    v0, v1 = prof[hit, k - 1], prof[hit, k]
    frac = np.clip((levels[hit] - v0) / np.where(v1 > v0, v1 - v0, 1.0), 0.0, 1.0)
    edge[hit] = radii[k - 1] + frac * dr
    valid = np.isfinite(edge)
    if valid.sum() < n_rays // 2:
        return _FAILED
    valid &= edge <= max_radius_ratio * np.median(edge[valid])
    if valid.sum() < n_rays // 2:
        return _FAILED
    edge = np.interp(theta, theta[valid], edge[valid], period=2 * np.pi)
    edge = ndimage.median_filter(edge, size=5, mode="wrap")
    poly = np.stack([centre[0] + edge * np.cos(theta) / px, centre[1] + edge * np.sin(theta) / py], axis=1)
    return _finish(poly, spacing_xy, "rays", float(np.median(levels)))


def polygon_coverage(
    polygon: np.ndarray, shape: tuple[int, int], spacing_xy: tuple[float, float], step_mm: float = 0.25
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Fraction of every pixel inside a closed polygon (partial volume), on the polygon's bounding box.

    Args:
        polygon: ``(N, 2)`` vertices in voxel coordinates (x, y).
        shape: Plane shape ``(X, Y)``.
        spacing_xy: Pixel sizes (mm), setting the sub-pixel sampling (``step_mm``).
        step_mm: Sub-pixel sampling step (mm).

    Returns:
        ``((x0, x1, y0, y1), coverage)`` with coverage of shape ``(x1 − x0, y1 − y0)`` in [0, 1].
    """
    fx = max(1, round(spacing_xy[0] / step_mm))
    fy = max(1, round(spacing_xy[1] / step_mm))
    x0 = max(0, math.floor(polygon[:, 0].min()))
    x1 = min(shape[0], math.ceil(polygon[:, 0].max()) + 1)
    y0 = max(0, math.floor(polygon[:, 1].min()))
    y1 = min(shape[1], math.ceil(polygon[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return (0, 0, 0, 0), np.zeros((0, 0))
    # Fine pixel (i, j) has its centre at voxel coordinate x0 − 0.5 + (i + 0.5)/fx.
    fine = np.stack([(polygon[:, 0] - x0 + 0.5) * fx - 0.5, (polygon[:, 1] - y0 + 0.5) * fy - 0.5], axis=1)
    inside = polygon2mask(((x1 - x0) * fx, (y1 - y0) * fy), fine)
    cov = inside.reshape(x1 - x0, fx, y1 - y0, fy).mean(axis=(1, 3))
    return (x0, x1, y0, y1), cov


# --------------------------------------------------------------------------------------------------
# Segmenter


class ClassicalSegmenter:
    """Weight-free T2w cord segmentation (centerline tracking + sub-voxel half-maximum contour).

    Args:
        core_radius_mm: Disk radius of the centerline score (mm).
        annulus_mm: Annulus radii of the centerline score (mm).
        transition_weight: Dynamic-programming smoothness weight λ.
        min_score_fraction: Planes at the ends whose score is below this fraction of the median score are
            outside the cord and left empty; weak planes inside are interpolated.
        csf_threshold: Highest normalised intensity tried for the CSF column whose per-plane convex hull must
            contain the cord centre (:func:`canal_region`); ``None`` disables the restriction.
        boundary: ``rays`` (per-ray half maximum, star-shaped) or ``contour`` (one iso-contour per plane at
            the level between I_cord and the median CSF peak); the other one is the fallback.
        level_fraction: Boundary level between I_cord (0) and I_CSF (1); 0.43 matches the shared manual masks,
            0.5 is the half maximum (about 5 % larger areas).
        fill_radius_mm: Largest distance from the centre searched for the boundary (mm).
        min_contrast: Least relative CSF/cord contrast for a ray to count (0.3 = CSF 30 % brighter).
        max_radius_ratio: Rays whose edge is farther than this multiple of the median edge distance are taken
            as leaks through a missing CSF rim and interpolated from their neighbours.
        recentre: Times the rays are cast again from the centroid of the previous contour.
        area_range_mm2: Accepted cross-section areas (mm²).
        max_eccentricity: Largest accepted eccentricity.
        median_window: Planes of the running median of the area used to reject outliers.
        max_median_deviation: Largest accepted relative deviation from the running median area.
        step_mm: Sub-voxel sampling step (mm).
        soft: Return the partial-volume fraction instead of the mask binarised at 0.5.
    """

    name = "classical"

    def __init__(
        self,
        core_radius_mm: float = 2.5,
        annulus_mm: tuple[float, float] = (4.0, 8.0),
        transition_weight: float = 0.02,
        min_score_fraction: float = 0.25,
        csf_threshold: float | None = 0.95,
        boundary: Literal["rays", "contour"] = "rays",
        level_fraction: float = 0.43,
        fill_radius_mm: float = 12.0,
        min_contrast: float = 0.3,
        max_radius_ratio: float = 2.0,
        recentre: int = 2,
        area_range_mm2: tuple[float, float] = (25.0, 130.0),
        max_eccentricity: float = 0.93,
        median_window: int = 7,
        max_median_deviation: float = 0.3,
        step_mm: float = 0.25,
        soft: bool = False,
    ) -> None:
        if boundary not in ("rays", "contour"):
            raise ValueError(f"boundary must be 'rays' or 'contour', got {boundary!r}")
        self.core_radius_mm = float(core_radius_mm)
        self.annulus_mm = (float(annulus_mm[0]), float(annulus_mm[1]))
        self.transition_weight = float(transition_weight)
        self.min_score_fraction = float(min_score_fraction)
        self.csf_threshold = None if csf_threshold is None else float(csf_threshold)
        self.boundary = boundary
        self.level_fraction = float(level_fraction)
        self.fill_radius_mm = float(fill_radius_mm)
        self.min_contrast = float(min_contrast)
        self.max_radius_ratio = float(max_radius_ratio)
        self.recentre = int(recentre)
        self.area_range_mm2 = (float(area_range_mm2[0]), float(area_range_mm2[1]))
        self.max_eccentricity = float(max_eccentricity)
        self.median_window = int(median_window)
        self.max_median_deviation = float(max_median_deviation)
        self.step_mm = float(step_mm)
        self.soft = bool(soft)
        #: Per-plane boundary method of the last call, per RAS z ("contour", "rays", "copied", "none").
        self.last_methods: list[str] = []

    # ---------------------------------------------------------------- stages
    @staticmethod
    def normalize(image: np.ndarray) -> np.ndarray:
        """Divide every axial plane by its 99th intensity percentile, median-filtered over 9 planes.

        Removes the slow intensity drift along z of surface-coil images so that one contrast threshold fits
        every level. Returns float32 ``(X, Y, Z)``.
        """
        img = np.asarray(image, dtype=np.float32)
        flat = img.reshape(-1, img.shape[2])
        scale = np.array([np.percentile(c[c > 0], 99.0) if np.any(c > 0) else 0.0 for c in flat.T])
        good = scale > 0
        if not good.any():
            raise MrisrInputError(None, "the image has no positive intensities", "pass a T2w image")
        z = np.arange(scale.size)
        scale = np.interp(z, z[good], scale[good])
        scale = ndimage.median_filter(scale, size=min(9, scale.size), mode="nearest")
        return img / scale[None, None, :].astype(np.float32)

    def centerline(self, image: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        """Cord centre (x, y) in voxels for every RAS plane; ``NaN`` outside the detected cord.

        Args:
            image: RAS intensities ``(X, Y, Z)`` from :meth:`normalize`.
            spacing: Voxel sizes (px, py, pz) in mm.

        Returns:
            ``(x, y)``, each ``(Z,)``.
        """
        score = dark_core_score(image, spacing[:2], self.core_radius_mm, self.annulus_mm)
        if self.csf_threshold is not None:
            score = np.where(canal_region(image, self.csf_threshold), score, -1.0).astype(np.float32)
        x, y, s = track_centerline(score, spacing, transition_weight=self.transition_weight)
        good = s > self.min_score_fraction * max(float(np.median(s)), 1e-9)
        if not good.any():
            return np.full(x.shape, np.nan), np.full(y.shape, np.nan)
        first, last = np.flatnonzero(good)[[0, -1]]
        z = np.arange(x.size)
        inside = (z >= first) & (z <= last)
        keep = good & inside
        xs = np.interp(z, z[keep], x[keep])
        ys = np.interp(z, z[keep], y[keep])
        n = int(inside.sum())
        if n >= 3:
            size = min(5, n if n % 2 else n - 1)
            sigma = max(1.0, 2.0 / spacing[2])
            for arr in (xs, ys):
                seg = ndimage.median_filter(arr[inside], size=size, mode="nearest")
                arr[inside] = ndimage.gaussian_filter1d(seg, sigma, mode="nearest")
        xs[~inside] = np.nan
        ys[~inside] = np.nan
        return xs, ys

    def _contour(
        self,
        plane: np.ndarray,
        centre: tuple[float, float],
        spacing_xy: tuple[float, float],
        method: Literal["rays", "contour"],
    ) -> SliceContour:
        """Boundary around ``centre``, re-cast from the region's centroid (``recentre`` times)."""
        contour = _FAILED
        for _ in range(1 + self.recentre):
            found = cord_contour(
                plane,
                centre,
                spacing_xy,
                level_fraction=self.level_fraction,
                fill_radius_mm=self.fill_radius_mm,
                min_contrast=self.min_contrast,
                max_radius_ratio=self.max_radius_ratio,
                step_mm=self.step_mm,
                method=method,
            )
            if found.method == "failed":
                break
            contour = found
            new_centre = _polygon_centroid(found.polygon)
            shift_mm = math.hypot(
                (new_centre[0] - centre[0]) * spacing_xy[0], (new_centre[1] - centre[1]) * spacing_xy[1]
            )
            if shift_mm < 0.1 or shift_mm > self.fill_radius_mm / 2:
                break
            centre = new_centre
        return contour

    def _acceptable(self, c: SliceContour) -> bool:
        lo, hi = self.area_range_mm2
        return (
            c.method != "failed"
            and lo <= c.area_mm2 <= hi
            and (not math.isfinite(c.eccentricity) or c.eccentricity <= self.max_eccentricity)
        )

    def contours(
        self, image: np.ndarray, spacing: tuple[float, float, float], xs: np.ndarray, ys: np.ndarray
    ) -> list[SliceContour | None]:
        """Boundary of every plane with a centre, after QC and neighbour filling (``None`` outside the cord)."""
        spacing_xy = (spacing[0], spacing[1])
        fallback = "contour" if self.boundary == "rays" else "rays"
        out: list[SliceContour | None] = [None] * image.shape[2]
        planes = [z for z in range(image.shape[2]) if np.isfinite(xs[z])]
        for z in planes:
            c = self._contour(image[:, :, z], (xs[z], ys[z]), spacing_xy, self.boundary)
            if not self._acceptable(c):
                c = self._contour(image[:, :, z], (xs[z], ys[z]), spacing_xy, fallback)
            out[z] = c if self._acceptable(c) else _FAILED
        # Outliers against the running median of the accepted areas.
        areas = np.array([out[z].area_mm2 if out[z].method != "failed" else np.nan for z in planes])
        if np.isfinite(areas).sum() >= 3:
            half = self.median_window // 2
            for i, z in enumerate(planes):
                window = areas[max(0, i - half) : i + half + 1]
                c = out[z]
                if c.method == "failed" or not np.isfinite(window).any():
                    continue
                med = float(np.nanmedian(window))
                if abs(c.area_mm2 - med) > self.max_median_deviation * med:
                    alt = self._contour(image[:, :, z], (xs[z], ys[z]), spacing_xy, fallback)
                    ok = self._acceptable(alt) and abs(alt.area_mm2 - med) <= self.max_median_deviation * med
                    out[z] = alt if ok else _FAILED
        # Failed planes take the shape of the nearest accepted plane, moved to their own centre.
        good = [z for z in planes if out[z].method != "failed"]
        if not good:
            return out
        for z in planes:
            if out[z].method == "failed":
                src = min(good, key=lambda g: abs(g - z))
                shift = np.array([xs[z] - xs[src], ys[z] - ys[src]])
                c = out[src]
                out[z] = SliceContour(c.polygon + shift, c.area_mm2, c.eccentricity, "copied", c.level)
        return out

    def segment(self, volume: Volume) -> Volume:
        """Cord mask of a T2w ``volume`` on its own grid (float32; 0/1 unless ``soft``).

        Raises:
            MrisrInputError: No cord-like structure found.
        """
        ras, aff = reorient_axial(np.asarray(volume.data, dtype=np.float32), volume.affine)
        spacing = tuple(float(s) for s in np.sqrt(np.sum(aff[:3, :3] ** 2, axis=0)))
        img = self.normalize(ras)
        xs, ys = self.centerline(img, spacing)  # type: ignore[arg-type]
        if not np.isfinite(xs).any():
            raise MrisrInputError(
                volume.path, "no dark cord inside bright CSF was found", "check that this is a T2w spine image"
            )
        contours = self.contours(img, spacing, xs, ys)  # type: ignore[arg-type]
        mask = np.zeros(ras.shape, dtype=np.float32)
        methods = []
        for z, c in enumerate(contours):
            methods.append("none" if c is None else c.method)
            if c is None or c.method == "failed":
                continue
            (x0, x1, y0, y1), cov = polygon_coverage(c.polygon, ras.shape[:2], spacing[:2], self.step_mm)
            if cov.size:
                mask[x0:x1, y0:y1, z] = np.maximum(mask[x0:x1, y0:y1, z], cov)
        self.last_methods = methods
        if not any(m in ("rays", "contour") for m in methods):
            raise MrisrInputError(
                volume.path,
                "no plane shows a dark cord with a CSF edge around it",
                "check that this is a T2w spine image (dark cord, bright CSF), or use another segmenter",
            )
        _LOG.info("classical cord segmentation: planes by method %s", {m: methods.count(m) for m in set(methods)})
        if not self.soft:
            mask = (mask >= 0.5).astype(np.float32)
        return Volume(data=restore_orientation(mask, volume.affine), affine=volume.affine, header=None, path=None)
