"""Spinal-cord morphometry: CSA per axial slice and MUCCA referenced to the PMJ or to C2 (docs/evaluation.md §2-§3).

Everything here is a pure function of arrays and affines:

* :func:`slice_centroids`, :func:`bspline_centerline`, :func:`linear_centerline`, :func:`hanning_smooth` —
  the two centerlines of the Spinal Cord Toolbox (``bspline`` for angle correction, ``linear`` + Hanning for
  distances; §2 step 2, §3 step 2).
* :func:`csa_per_slice` — angle-corrected cross-sectional area of every axial slice (§2), as a
  :class:`CsaProfile`.
* :func:`arc_length_from_top`, :func:`select_window` — arc length along a centerline in world mm and the
  slice window of a preset (§3 steps 3-4).
* :func:`compute_mucca` — mean upper cervical cord area (MUCCA) over a window below the PMJ (§3) or, for
  fields of view that start below the PMJ, below the C2 vertebral-body centre (§3.2); a
  :class:`MuccaResult` that fails soft (``NaN`` + reason) instead of raising.
* :func:`landmark_point` — world position (mm) of a label in a landmark image, to place a landmark once on
  HR and reuse it for LR and SR (§3.3 ``pmj_source: shared_hr``).

Coordinates: slice indices ``z`` are those of the RAS-reoriented array ("RAS z"); the stored array of a
sagittal PSR image has its axial slices along axis 1, and for an LAS/RAS image RAS z equals the stored index.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import interpolate

from mrisr.io.regrid import reorient_axial

__all__ = [
    "C2_LABEL",
    "C2_OFFSET_MM",
    "PMJ_LABEL",
    "WINDOW_PRESETS",
    "AngleMode",
    "CsaProfile",
    "MuccaResult",
    "WindowPreset",
    "arc_length_from_top",
    "bspline_centerline",
    "compute_mucca",
    "csa_per_slice",
    "hanning_smooth",
    "landmark_point",
    "linear_centerline",
    "select_window",
    "slice_centroids",
]

_LOG = logging.getLogger(__name__)

AngleMode = Literal["sct", "exact", "none"]
WindowConvention = Literal["sct", "inclusive"]
Origin = Literal["sct", "pmj"]
Projection = Literal["nearest", "axial"]
Reference = Literal["pmj", "c2"]

#: Value of the one-voxel pontomedullary-junction label (SCT convention).
PMJ_LABEL = 50
#: Value of the C2 vertebral-body-centre label in ``t2_landmarks_C2_T2_center`` images.
C2_LABEL = 2
#: Arc length (mm) from the PMJ to the C2 vertebral-level centre on PAM50_small (§3.2 step 3).
C2_OFFSET_MM = 53.0
#: Voxels with a value above this count as foreground for centroids (§2 step 1).
FOREGROUND_EPS = 1e-6


@dataclass(frozen=True)
class WindowPreset:
    """A MUCCA window below the reference landmark (§3.1).

    Attributes:
        name: Preset name.
        distance_mm: Window centre D below the PMJ along the centerline (mm).
        extent_mm: Full window extent E (mm); the window covers D − E/2 … D + E/2.
        provenance: Where the numbers come from.
    """

    name: str
    distance_mm: float
    extent_mm: float
    provenance: str


#: Window presets of docs/evaluation.md §3.1 (``dewey2024_text`` is the default).
WINDOW_PRESETS: dict[str, WindowPreset] = {
    p.name: p
    for p in (
        WindowPreset("dewey2024_text", 75.0, 30.0, "literal reading of Dewey et al.: 60-90 mm below the PMJ"),
        WindowPreset("sct_tutorial", 60.0, 30.0, "SCT tutorial -pmj-distance 60 -pmj-extent 30"),
        WindowPreset("bedard2022", 64.0, 20.0, "Bedard & Cohen-Adad 2022: 64 mm, SCT default extent 20 mm"),
        WindowPreset("sct_docs_64_30", 64.0, 30.0, "SCT 'CSA (PMJ-based)' documentation figure"),
    )
}


@dataclass(frozen=True)
class CsaProfile:
    """Cross-sectional area of every axial slice of a cord mask (§2).

    Attributes:
        csa_mm2: CSA per RAS slice, shape ``(Z,)`` in mm²; ``NaN`` for slices without cord.
        angle_ap_deg: Angle of the centerline to the slice normal about the AP axis (degrees), shape
            ``(Z,)``; ``NaN`` outside the cord.
        angle_rl_deg: Same about the RL axis (degrees), shape ``(Z,)``.
        spacing_mm: Voxel sizes ``(px, py, pz)`` of the RAS array (mm).
        angle_mode: Angle correction used (``sct``, ``exact`` or ``none``).
    """

    csa_mm2: np.ndarray
    angle_ap_deg: np.ndarray
    angle_rl_deg: np.ndarray
    spacing_mm: tuple[float, float, float]
    angle_mode: str

    def mean(self, slices: np.ndarray | None = None) -> float:
        """Mean CSA (mm²) over ``slices`` (RAS z indices; all slices by default), ignoring ``NaN`` (§2 step 7)."""
        values = self.csa_mm2 if slices is None else self.csa_mm2[np.asarray(slices, dtype=int)]
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else math.nan

    def std(self, slices: np.ndarray | None = None) -> float:
        """Population standard deviation (mm²) over ``slices``, ignoring ``NaN`` (§2 step 7)."""
        values = self.csa_mm2 if slices is None else self.csa_mm2[np.asarray(slices, dtype=int)]
        values = values[np.isfinite(values)]
        return float(values.std()) if values.size else math.nan


@dataclass(frozen=True)
class MuccaResult:
    """MUCCA of one mask over one window (§3, §3.2).

    Attributes:
        mucca_mm2: Mean CSA over the window (mm²); ``NaN`` when ``status`` is ``"failed"``.
        sd_mm2: Population SD of the CSA over the window (mm²).
        slices: Selected RAS z indices (ascending).
        reference: ``"pmj"`` or ``"c2"``.
        window: Preset name, or ``"custom"``.
        distance_mm: Window centre D below the PMJ (mm, before the C2 offset).
        extent_mm: Window extent E (mm).
        status: ``"ok"`` or ``"failed"``.
        reason: Why the computation failed (empty when ``ok``).
        reference_z: RAS z of the reference landmark on the centerline (PMJ or projected C2), or -1.
        profile_z: RAS z of every centerline point, shape ``(N,)``.
        profile_distance_mm: Distance below the reference along the centerline at ``profile_z`` (mm),
            positive caudally, shape ``(N,)`` (per-slice mode, §3 step 7).
        profile_csa_mm2: CSA at ``profile_z`` (mm², ``NaN`` without cord), shape ``(N,)``.
    """

    mucca_mm2: float
    sd_mm2: float
    slices: tuple[int, ...]
    reference: str
    window: str
    distance_mm: float
    extent_mm: float
    status: str
    reason: str = ""
    reference_z: int = -1
    profile_z: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    profile_distance_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    profile_csa_mm2: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_slices(self) -> int:
        """Number of slices in the window."""
        return len(self.slices)

    def as_dict(self) -> dict[str, float | int | str]:
        """Scalar summary (JSON-friendly): value, SD, slice range, reference, window, status, reason."""
        return {
            "mucca_mm2": self.mucca_mm2,
            "sd_mm2": self.sd_mm2,
            "n_slices": self.n_slices,
            "z_first": self.slices[0] if self.slices else -1,
            "z_last": self.slices[-1] if self.slices else -1,
            "reference": self.reference,
            "reference_z": self.reference_z,
            "window": self.window,
            "distance_mm": self.distance_mm,
            "extent_mm": self.extent_mm,
            "status": self.status,
            "reason": self.reason,
        }


# --------------------------------------------------------------------------------------------------
# Geometry helpers


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    norms = np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))
    return float(norms[0]), float(norms[1]), float(norms[2])


def landmark_point(labels: np.ndarray, affine: np.ndarray, value: int | None = None) -> np.ndarray:
    """World position (mm) of a landmark label: the centre of mass of the voxels equal to ``value``.

    Placing a landmark once (on HR) and passing this point to :func:`compute_mucca` for LR and SR reuses it
    in world coordinates (§3.3 ``pmj_source: shared_hr``).

    Args:
        labels: Label image ``(X, Y, Z)``.
        affine: Its voxel-to-world matrix ``(4, 4)`` (mm).
        value: Label value (e.g. :data:`PMJ_LABEL`, :data:`C2_LABEL`); ``None`` = any non-zero voxel.

    Returns:
        Point ``(3,)`` in world mm.

    Raises:
        ValueError: No voxel has that value.
    """
    arr = np.asarray(labels)
    sel = arr != 0 if value is None else np.isclose(arr, value)
    idx = np.argwhere(sel)
    if idx.size == 0:
        what = "any non-zero label" if value is None else f"label value {value}"
        raise ValueError(f"the landmark image contains no voxel with {what}")
    centre = idx.mean(axis=0)
    return (np.asarray(affine, dtype=np.float64) @ np.append(centre, 1.0))[:3]


def _world_to_ras_voxel(point_mm: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    return (np.linalg.inv(affine_ras) @ np.append(np.asarray(point_mm, dtype=np.float64), 1.0))[:3]


# --------------------------------------------------------------------------------------------------
# Centerlines


def slice_centroids(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unweighted centroid of the foreground of every axial slice (§2 step 1).

    Args:
        mask: RAS array ``(X, Y, Z)``; voxels > 1e-6 are foreground (soft masks count as binary).

    Returns:
        ``(z, x, y)``: slice indices with foreground and the mean x and y voxel index there, shape ``(n,)``.
    """
    fg = np.asarray(mask) > FOREGROUND_EPS
    counts = fg.sum(axis=(0, 1))
    z = np.flatnonzero(counts)
    if z.size == 0:
        return z, np.zeros(0), np.zeros(0)
    xs = np.arange(fg.shape[0], dtype=np.float64)
    ys = np.arange(fg.shape[1], dtype=np.float64)
    sum_x = np.einsum("xyz,x->z", fg, xs, dtype=np.float64)
    sum_y = np.einsum("xyz,y->z", fg, ys, dtype=np.float64)
    return z, sum_x[z] / counts[z], sum_y[z] / counts[z]


def bspline_centerline(
    z: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    z_ref: np.ndarray,
    pz: float,
    smooth: float = 30.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Smoothing-spline centerline and its derivatives (SCT ``bspline`` fit, §2 step 2).

    ``scipy.interpolate.splrep(z, ·, k=3, s=s)`` with s = (n / n_ref)² · smooth · pz / 3 (n = slices with
    foreground, n_ref = len(z_ref)); the degree drops by 2 when n ≤ 3. One slice: constant, zero derivative.

    Args:
        z: Slice indices with foreground, shape ``(n,)``, strictly increasing.
        x: Centroid x (voxels), shape ``(n,)``.
        y: Centroid y (voxels), shape ``(n,)``.
        z_ref: Slices at which to evaluate, shape ``(m,)``.
        pz: Slice spacing (mm).
        smooth: SCT smoothing parameter (30 = SCT default for ``bspline``).

    Returns:
        ``(x_fit, y_fit, dx_dz, dy_dz)`` at ``z_ref``, each ``(m,)``, derivatives in voxels per slice.
    """
    z = np.asarray(z, dtype=np.float64)
    z_ref = np.asarray(z_ref, dtype=np.float64)
    n = z.size
    if n == 0:
        raise ValueError("bspline_centerline: no slice with foreground")
    if n == 1:
        ones = np.ones_like(z_ref)
        return x[0] * ones, y[0] * ones, 0.0 * ones, 0.0 * ones
    k = 3 if n > 3 else 1
    s = (n / z_ref.size) ** 2 * smooth * pz / 3.0
    out = []
    for values in (x, y):
        tck = interpolate.splrep(z, np.asarray(values, dtype=np.float64), k=k, s=s)
        out.append((interpolate.splev(z_ref, tck, der=0), interpolate.splev(z_ref, tck, der=1)))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def hanning_smooth(values: np.ndarray, window_len: int) -> np.ndarray:
    """Smooth a 1-D signal with a normalised Hanning window and central-symmetry padding (§3 step 2).

    The signal is padded with ``2·x[0] − x[w−1:0:−1]`` before and ``2·x[−1] − x[−2:−w−1:−1]`` after
    (point reflection, which preserves linear trends at the ends), convolved with
    ``np.hanning(w) / sum`` and cropped back to its own length. A window longer than the signal is
    shortened to the longest odd length that fits; windows < 3 return a copy.

    Args:
        values: Signal, shape ``(n,)``.
        window_len: Odd window length in samples.

    Returns:
        Smoothed signal, shape ``(n,)``.
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    w = int(window_len)
    if w > n:
        w = n if n % 2 else n - 1
    if w < 3:
        return x.copy()
    padded = np.concatenate([2 * x[0] - x[w - 1 : 0 : -1], x, 2 * x[-1] - x[-2 : -w - 1 : -1]])
    kernel = np.hanning(w)
    smoothed = np.convolve(kernel / kernel.sum(), padded, mode="same")
    return smoothed[w - 1 : w - 1 + n]


def linear_centerline(
    z: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    z_ref: np.ndarray,
    pz: float,
    smooth_mm: float = 50.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Linear-interpolated, Hanning-smoothed centerline (SCT ``linear`` fit used for distances, §3 step 2).

    ``np.interp`` of the centroids over ``z_ref`` (bridging slices without foreground, e.g. between the top of
    the cord mask and the PMJ label), then :func:`hanning_smooth` with the odd window
    w = 2·⌊⌈smooth_mm / pz⌉ / 2⌋ + 1.

    Args:
        z: Slices with foreground, shape ``(n,)``, increasing.
        x: Centroid x (voxels), shape ``(n,)``.
        y: Centroid y (voxels), shape ``(n,)``.
        z_ref: Output slices, shape ``(m,)`` (usually ``z.min() … z.max()``).
        pz: Slice spacing (mm).
        smooth_mm: Smoothing extent (mm); SCT uses 50 mm for PMJ distances.

    Returns:
        ``(x_line, y_line)`` at ``z_ref``, each ``(m,)`` in voxels.
    """
    zf = np.asarray(z, dtype=np.float64)
    z_ref = np.asarray(z_ref, dtype=np.float64)
    xi = np.interp(z_ref, zf, np.asarray(x, dtype=np.float64))
    yi = np.interp(z_ref, zf, np.asarray(y, dtype=np.float64))
    w = 2 * (math.ceil(smooth_mm / pz) // 2) + 1
    return hanning_smooth(xi, w), hanning_smooth(yi, w)


def arc_length_from_top(points_mm: np.ndarray) -> np.ndarray:
    """Cumulative 3-D arc length from the last (most superior) point down to each point (§3 step 3).

    Args:
        points_mm: Centerline points in world mm ordered by increasing z, shape ``(m, 3)``.

    Returns:
        L, shape ``(m,)`` in mm: 0 at the top point, increasing caudally.
    """
    p = np.asarray(points_mm, dtype=np.float64)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    from_bottom = np.concatenate([[0.0], np.cumsum(seg)])
    return from_bottom[-1] - from_bottom


def select_window(
    distance_mm: np.ndarray,
    z_ref: np.ndarray,
    center_mm: float,
    extent_mm: float,
    convention: WindowConvention = "sct",
) -> np.ndarray:
    """Slices of a window centred ``center_mm`` below the reference with full extent ``extent_mm`` (§3 step 4).

    SCT convention: z_lo = z_ref[argmin |L − (D + E/2)|], z_hi = z_ref[argmin |L − (D − E/2)|], slices
    ``range(z_lo, z_hi)`` (z_hi excluded: a 30 mm window on 1 mm slices has 30 slices). ``inclusive``: every z
    with D − E/2 ≤ L ≤ D + E/2.

    Args:
        distance_mm: Distance below the reference at ``z_ref`` (mm), shape ``(m,)``.
        z_ref: Slice indices, shape ``(m,)``, increasing.
        center_mm: Window centre D (mm).
        extent_mm: Full extent E (mm).
        convention: ``sct`` or ``inclusive``.

    Returns:
        Selected slice indices (ascending int array; may be empty).
    """
    d = np.asarray(distance_mm, dtype=np.float64)
    z_ref = np.asarray(z_ref, dtype=int)
    lo_mm, hi_mm = center_mm - extent_mm / 2.0, center_mm + extent_mm / 2.0
    if convention == "inclusive":
        return np.sort(z_ref[(d >= lo_mm) & (d <= hi_mm)])
    if convention != "sct":
        raise ValueError(f"convention must be 'sct' or 'inclusive', got {convention!r}")
    z_lo = int(z_ref[np.argmin(np.abs(d - hi_mm))])
    z_hi = int(z_ref[np.argmin(np.abs(d - lo_mm))])
    return np.arange(min(z_lo, z_hi), max(z_lo, z_hi), dtype=int)


# --------------------------------------------------------------------------------------------------
# CSA


def _binary_and_soft_minmax(mask: np.ndarray, soft_minmax: bool) -> np.ndarray:
    m = np.asarray(mask, dtype=np.float64)
    if not soft_minmax:
        return m
    lo = m.min(axis=(0, 1), keepdims=True)
    hi = m.max(axis=(0, 1), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(hi > lo, (m - lo) / span, m)


def csa_per_slice(
    mask: np.ndarray,
    affine: np.ndarray,
    angle_mode: AngleMode = "sct",
    smooth: float = 30.0,
    soft_minmax: bool = False,
) -> CsaProfile:
    """SCT-equivalent cord cross-sectional area of every axial slice (§2).

    The mask is reoriented to RAS; centroids of each slice (unweighted) are fitted by the ``bspline``
    centerline, whose tangent t = (dx·px, dy·py, pz) gives angle_AP = atan2(t_x, t_z) and
    angle_RL = atan2(t_y, t_z); CSA(z) = Σ mask[:, :, z] · px · py · f with f = cos(angle_AP)·cos(angle_RL)
    (``sct``), pz / ‖t‖ (``exact``: true cross-section of a locally straight tube) or 1 (``none``). Soft
    masks contribute their values; all foreground of a slice counts (SCT's one-object guard never fires on
    0/1 images).

    Args:
        mask: Cord mask ``(X, Y, Z)`` in stored order, binary or soft in [0, 1].
        affine: Voxel-to-world matrix ``(4, 4)`` in mm.
        angle_mode: ``sct``, ``exact`` or ``none``.
        smooth: ``bspline`` smoothing (SCT default 30).
        soft_minmax: Min-max normalise each slice first (SCT parity for soft masks).

    Returns:
        A :class:`CsaProfile` over the RAS slices, areas in mm².

    Raises:
        ValueError: Empty mask or unknown ``angle_mode``.
    """
    if angle_mode not in ("sct", "exact", "none"):
        raise ValueError(f"angle_mode must be 'sct', 'exact' or 'none', got {angle_mode!r}")
    data, aff = reorient_axial(mask, affine)
    px, py, pz = _spacing(aff)
    z, x, y = slice_centroids(data)
    if z.size == 0:
        raise ValueError("csa_per_slice: the cord mask is empty")
    m = _binary_and_soft_minmax(data, soft_minmax)
    area = m.sum(axis=(0, 1)) * px * py
    n_z = data.shape[2]
    csa = np.full(n_z, np.nan)
    ang_ap = np.full(n_z, np.nan)
    ang_rl = np.full(n_z, np.nan)
    z_ref = np.arange(z.min(), z.max() + 1)
    _, _, dx, dy = bspline_centerline(z, x, y, z_ref, pz, smooth=smooth)
    tx, ty = dx * px, dy * py
    a_ap = np.arctan2(tx, pz)
    a_rl = np.arctan2(ty, pz)
    if angle_mode == "sct":
        factor = np.cos(a_ap) * np.cos(a_rl)
    elif angle_mode == "exact":
        factor = pz / np.sqrt(tx**2 + ty**2 + pz**2)
    else:
        factor = np.ones_like(tx)
    rows = z - z_ref[0]
    csa[z] = area[z] * factor[rows]
    ang_ap[z_ref] = np.degrees(a_ap)
    ang_rl[z_ref] = np.degrees(a_rl)
    return CsaProfile(csa, ang_ap, ang_rl, (px, py, pz), angle_mode)


# --------------------------------------------------------------------------------------------------
# MUCCA


def _failed(reason: str, reference: str, window: str, d: float, e: float, **extra: object) -> MuccaResult:
    _LOG.warning("MUCCA failed: %s", reason)
    return MuccaResult(math.nan, math.nan, (), reference, window, d, e, "failed", reason, **extra)  # type: ignore[arg-type]


def compute_mucca(
    mask: np.ndarray,
    affine: np.ndarray,
    pmj_mm: np.ndarray | None = None,
    c2_mm: np.ndarray | None = None,
    window: str | WindowPreset = "dewey2024_text",
    angle_mode: AngleMode = "sct",
    convention: WindowConvention = "sct",
    origin: Origin = "sct",
    projection: Projection = "nearest",
    c2_offset_mm: float = C2_OFFSET_MM,
    smooth_bspline: float = 30.0,
    smooth_linear_mm: float = 50.0,
    soft_minmax: bool = False,
) -> MuccaResult:
    """Mean upper cervical cord area over a window below the PMJ or below C2 (§3, §3.2).

    **PMJ** (``pmj_mm`` given): the PMJ point is rasterised into the nearest voxel of the mask's grid and
    added to the mask (comb = mask + PMJ); the centroids of comb give a ``linear`` + Hanning centerline
    over z_min … z_max of comb, mapped to world mm; L(z) is the arc length from the **top** point (SCT's
    origin: the top of mask ∪ PMJ; ``origin="pmj"`` first removes the mask above the PMJ slice).
    **C2** (``c2_mm`` given, no PMJ): the centerline is built from the mask alone, the C2 point is projected
    onto it (nearest centerline point in 3-D mm, or the same axial slice with ``projection="axial"``), the
    distance is d(z) = L(z) − L(z_C2) and the window centre becomes D − ``c2_offset_mm``.

    The window is chosen by :func:`select_window`; MUCCA is the mean of :func:`csa_per_slice` (angles from
    the mask-only ``bspline`` centerline) over its slices.

    Args:
        mask: Cord mask ``(X, Y, Z)`` (stored order), binary or soft.
        affine: Voxel-to-world matrix ``(4, 4)`` (mm) of ``mask``.
        pmj_mm: PMJ position in world mm, shape ``(3,)`` (see :func:`landmark_point`).
        c2_mm: C2 vertebral-body centre in world mm, shape ``(3,)``; used when ``pmj_mm`` is ``None``.
        window: Preset name of :data:`WINDOW_PRESETS` or a :class:`WindowPreset`.
        angle_mode: CSA angle correction (``sct``, ``exact``, ``none``).
        convention: Window convention (``sct``: upper bound excluded; ``inclusive``).
        origin: ``sct`` (distance 0 at the top of mask ∪ PMJ) or ``pmj`` (mask cropped at the PMJ first).
        projection: C2 projection on the centerline, ``nearest`` (3-D) or ``axial`` (same slice).
        c2_offset_mm: PMJ → C2 offset Δ_C2 subtracted from D for the C2 reference (mm).
        smooth_bspline: ``bspline`` smoothing for the angle correction.
        smooth_linear_mm: Hanning extent of the distance centerline (mm).
        soft_minmax: SCT min-max normalisation of soft slices.

    Returns:
        A :class:`MuccaResult`; ``status="failed"`` with ``NaN`` and a reason when the window does not fit
        in the centerline or covers slices without cord.

    Raises:
        ValueError: Neither landmark given, unknown preset, or empty mask.
    """
    preset = WINDOW_PRESETS.get(window) if isinstance(window, str) else window
    if preset is None:
        raise ValueError(f"unknown MUCCA window {window!r}; choose from {sorted(WINDOW_PRESETS)}")
    if pmj_mm is None and c2_mm is None:
        raise ValueError("compute_mucca needs a PMJ (pmj_mm) or a C2 (c2_mm) landmark")
    d_mm, e_mm = float(preset.distance_mm), float(preset.extent_mm)
    reference: Reference = "pmj" if pmj_mm is not None else "c2"
    data, aff = reorient_axial(np.asarray(mask, dtype=np.float64), affine)
    pz = _spacing(aff)[2]
    if not np.any(data > FOREGROUND_EPS):
        raise ValueError("compute_mucca: the cord mask is empty")
    common = {"reference": reference, "window": preset.name, "d": d_mm, "e": e_mm}

    if reference == "pmj":
        vox = np.rint(_world_to_ras_voxel(pmj_mm, aff)).astype(int)
        if np.any(vox < 0) or np.any(vox >= np.array(data.shape)):
            return _failed(f"the PMJ at {np.round(pmj_mm, 2).tolist()} mm lies outside the image", **common)
        if origin == "pmj":
            data = data.copy()
            data[:, :, vox[2] + 1 :] = 0.0
        elif origin != "sct":
            raise ValueError(f"origin must be 'sct' or 'pmj', got {origin!r}")
        comb = data.copy()
        comb[tuple(vox)] += PMJ_LABEL
        z, x, y = slice_centroids(comb)
        center = d_mm
    else:
        z, x, y = slice_centroids(data)
        center = d_mm - c2_offset_mm
    z_ref = np.arange(z.min(), z.max() + 1)
    xl, yl = linear_centerline(z, x, y, z_ref, pz, smooth_mm=smooth_linear_mm)
    pts = (aff @ np.stack([xl, yl, z_ref.astype(np.float64), np.ones(z_ref.size)]))[:3].T
    dist = arc_length_from_top(pts)
    ref_z = int(z_ref[-1])
    if reference == "c2":
        c2 = np.asarray(c2_mm, dtype=np.float64)
        if projection == "nearest":
            i_ref = int(np.argmin(np.linalg.norm(pts - c2, axis=1)))
        elif projection == "axial":
            zc = int(np.rint(_world_to_ras_voxel(c2, aff)[2]))
            if zc < z_ref[0] or zc > z_ref[-1]:
                return _failed(f"the C2 slice z={zc} is outside the cord (z {z_ref[0]}-{z_ref[-1]})", **common)
            i_ref = zc - int(z_ref[0])
        else:
            raise ValueError(f"projection must be 'nearest' or 'axial', got {projection!r}")
        ref_z = int(z_ref[i_ref])
        dist = dist - dist[i_ref]

    profile = csa_per_slice(data, aff, angle_mode=angle_mode, smooth=smooth_bspline, soft_minmax=soft_minmax)
    extra = {
        "reference_z": ref_z,
        "profile_z": z_ref,
        "profile_distance_mm": dist,
        "profile_csa_mm2": profile.csa_mm2[z_ref],
    }
    if center > dist.max() or center < dist.min():
        return _failed(
            f"window centre {center:g} mm below the {reference.upper()} is outside the centerline "
            f"({dist.min():.1f} to {dist.max():.1f} mm): the segmentation does not reach far enough",
            **common,
            **extra,
        )
    slices = select_window(dist, z_ref, center, e_mm, convention=convention)
    if slices.size == 0:
        return _failed("the window selects no slice", **common, **extra)
    values = profile.csa_mm2[slices]
    if not np.all(np.isfinite(values)):
        missing = slices[~np.isfinite(values)].tolist()
        return _failed(f"slices without cord inside the window: z {missing}", **common, **extra)
    return MuccaResult(
        mucca_mm2=float(values.mean()),
        sd_mm2=float(values.std()),
        slices=tuple(int(s) for s in slices),
        reference=reference,
        window=preset.name,
        distance_mm=d_mm,
        extent_mm=e_mm,
        status="ok",
        **extra,  # type: ignore[arg-type]
    )
