"""Static, offline HTML quality-control (QC) report of super-resolved volumes (docs/qc.md).

One page per volume, :func:`write_qc_page`, and one index per batch, :func:`write_qc_index`::

    <folder>/index.html                 every volume of the batch, sortable; rebuilt from the qc.json files alone
    <folder>/<safe name>/index.html     the volume's page
    <folder>/<safe name>/qc.json        the record, the index row and the image paths (relative to the page)
    <folder>/<safe name>/*.png          the views

A page shows the thick-slice input and the SR output on the same three orthogonal planes of the output grid, through
the volume centre and through an optional landmark (e.g. the cord centre). "Same planes" means the same world points:
every pixel is the centre of an output voxel; the output is shown as it is, the input (and the forward-consistency
residual, which lies on the input grid) by the value of the input voxel that contains that world point (nearest
neighbour through the affines, so a thick slice shows as a band as wide as the slice). Points outside a volume's field
of view are black. Optional panels: the residual with a symmetric diverging colour map, the per-voxel SD of stochastic
samples, the cord-mask outline over the output, and the cross-sectional area per slice.

Display: planes are named by the world axis (RAS, nibabel's ``io_orientation``) closest to their normal and shown in
the radiological convention — the subject's right and anterior on the image's left (axial, coronal; sagittal:
anterior on the left), superior (axial: anterior) at the top — with square pixels (nearest-neighbour index
repetition when the two in-plane spacings differ). Oblique acquisitions are shown in their voxel planes, not
resampled onto world planes.

Intensity windows are per volume: the 0.5th–99.5th percentile of its foreground (voxels > 0), from a regular
subsample of at most :data:`WINDOW_SAMPLES` voxels; residual: ± the 99.5th percentile of |residual| over its non-zero
voxels; SD: 0 to the 99.5th percentile of its positive voxels. Every window is printed on the page.

Pages are plain HTML with inline CSS (the index adds a few lines of inline JavaScript for sorting): no external
scripts, fonts, styles or network access; they open from disk. PNGs are encoded here from numpy arrays (no image
library); the CSA plot is drawn with matplotlib (Agg). Every file is written atomically
(:mod:`mrisr.core.atomic`), and ``qc.json`` last, so its presence means the page is complete.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import html
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from mrisr.core.atomic import atomic_path, write_json_atomic, write_text_atomic
from mrisr.io.nifti import Volume

__all__ = [
    "PAGE_NAME",
    "QC_FORMAT",
    "QC_FORMAT_VERSION",
    "RECORD_NAME",
    "WINDOW_PERCENTILES",
    "WINDOW_SAMPLES",
    "QCEntry",
    "encode_png",
    "index_row",
    "intensity_window",
    "safe_name",
    "write_qc_index",
    "write_qc_page",
]

#: File name of every page and of the batch index.
PAGE_NAME = "index.html"
#: File name of the per-volume record that the index is rebuilt from.
RECORD_NAME = "qc.json"
#: ``format`` and ``format_version`` of ``qc.json``.
QC_FORMAT = "mrisr-qc"
QC_FORMAT_VERSION = 1
#: Lower and upper percentile of the foreground that define a volume's display window.
WINDOW_PERCENTILES = (0.5, 99.5)
#: Largest number of voxels the window percentiles are computed from (a regular stride subsample beyond).
WINDOW_SAMPLES = 250_000
#: Longest side of a view in pixels (larger planes are shown with coarser square pixels).
MAX_VIEW_PIXELS = 640
#: zlib level of the PNGs (1 fastest … 9 smallest): on MRI slices level 1 is 1-3 % larger than 3 or 6, at a half
#: and a fifth of their time.
PNG_LEVEL = 1
#: Colour of the cord-mask outline (RGB).
OUTLINE_RGB = (255, 48, 48)
#: Colour maps (matplotlib names): the residual's is diverging and symmetric about 0 (white), the SD's sequential.
RESIDUAL_CMAP = "RdBu_r"
SD_CMAP = "viridis"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Plane name of each RAS world axis (the plane's normal): x → sagittal, y → coronal, z → axial.
_PLANES = (("axial", 2), ("coronal", 1), ("sagittal", 0))
#: World axes shown vertically and horizontally for each normal, and the edge letters (left, right, top, bottom).
_DISPLAY = {2: (1, 0, ("R", "L", "A", "P")), 1: (2, 0, ("R", "L", "S", "I")), 0: (2, 1, ("A", "P", "S", "I"))}
_KINDS = ("input", "output", "residual", "sd", "mask")
_KIND_TITLES = {
    "input": "input (native grid, nearest)",
    "output": "SR output",
    "residual": "forward residual",
    "sd": "SD of samples",
    "mask": "output + cord outline",
}
_OWN_FILE = re.compile(r"^((centre|landmark)_(axial|coronal|sagittal)_(input|output|residual|sd|mask)|csa)\.png$")


# --------------------------------------------------------------------------------------------------
# The entry


@dataclass(eq=False)
class QCEntry:
    """Everything one QC page shows.

    Args:
        name: unique identifier of the volume in the batch (e.g. the input's file stem); its folder is
            :func:`safe_name` of it.
        input: the thick-slice input on its native grid.
        output: the SR output on its grid, in the same world space as ``input``.
        record: what to show in the record table, e.g. the sidecar: ``thickness_mm`` and ``thickness_source``,
            ``model``, ``mrisr_version``, ``weights_sha256``, ``seconds``, ``forward_consistency`` (a mapping with
            ``psnr`` in dB and ``ssim``), ``warnings`` (a list of strings, shown prominently), anything else.
            Non-finite numbers are stored as ``null``; objects JSON cannot hold as their ``str``.
        residual: the input re-acquired from the SR output minus the input (forward-consistency residual,
            :func:`mrisr.eval.consistency.resimulate_input`), on the input grid.
        sd: per-voxel standard deviation of stochastic samples, on the output grid.
        cord_mask: cord segmentation (> 0.5 inside), on the output grid.
        csa_mm2: cross-sectional area per slice: ``(slice position in mm, area in mm²)`` pairs.
        landmark_mm: a world point ``(x, y, z)`` in mm (e.g. the cord centre) to centre a second set of views on.
    """

    name: str
    input: Volume
    output: Volume
    record: Mapping[str, Any] = field(default_factory=dict)
    residual: Volume | None = None
    sd: Volume | None = None
    cord_mask: Volume | None = None
    csa_mm2: Sequence[tuple[float, float]] | None = None
    landmark_mm: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"QCEntry.name must be a non-empty string, got {self.name!r}")
        for key in ("input", "output", "residual", "sd", "cord_mask"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, Volume):
                raise TypeError(f"QCEntry.{key} must be a mrisr.io.nifti.Volume, got {type(value).__name__}")
        if not isinstance(self.record, Mapping):
            raise TypeError(f"QCEntry.record must be a mapping, got {type(self.record).__name__}")
        _warning_list(self.record)  # fails early on a malformed warnings field
        if self.csa_mm2 is not None:
            pairs = np.asarray(self.csa_mm2, dtype=np.float64)
            if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.all(np.isfinite(pairs)):
                raise ValueError("QCEntry.csa_mm2 must be finite (slice position mm, area mm²) pairs")
            self.csa_mm2 = [(float(p), float(a)) for p, a in pairs]
        if self.landmark_mm is not None:
            point = np.asarray(self.landmark_mm, dtype=np.float64)
            if point.shape != (3,) or not np.all(np.isfinite(point)):
                raise ValueError(f"QCEntry.landmark_mm must be 3 finite world coordinates (mm), got {self.landmark_mm}")
            self.landmark_mm = tuple(float(v) for v in point)


def safe_name(name: str) -> str:
    """Folder name of an entry.

    ``name`` itself when it is at most 100 characters of letters, digits, ``.``, ``_`` and ``-``, does not start with
    a dot and is not ``index.html``; otherwise those characters kept (others replaced by ``_``, cut to 80) and an
    8-hex-digit SHA-256 prefix of ``name`` appended, so that distinct names never share a folder
    (``a/b`` → ``a_b-<digest>``, while ``a_b`` stays ``a_b``).
    """
    cleaned = _SAFE.sub("_", name).lstrip(".")
    if cleaned == name and 0 < len(cleaned) <= 100 and cleaned.lower() != PAGE_NAME:
        return cleaned
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned[:80] or 'volume'}-{digest}"


def _warning_list(record: Mapping[str, Any]) -> list[str]:
    warnings = record.get("warnings", [])
    if warnings is None:
        return []
    if isinstance(warnings, str) or not isinstance(warnings, Sequence):
        raise TypeError(f"record['warnings'] must be a list of strings, got {type(warnings).__name__}")
    return [str(w) for w in warnings]


# --------------------------------------------------------------------------------------------------
# PNG and colour


def encode_png(pixels: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """Encode an 8-bit image as PNG (ISO/IEC 15948: one IHDR, one IDAT with the "Sub" row filter, IEND).

    Args:
        pixels: ``uint8`` array, shape ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB), H, W ≥ 1.
        level: zlib compression level 0-9.

    Returns:
        The PNG file's bytes.
    """
    px = np.ascontiguousarray(pixels)
    if px.dtype != np.uint8 or px.ndim not in (2, 3) or (px.ndim == 3 and px.shape[2] != 3) or 0 in px.shape[:2]:
        raise ValueError(f"encode_png needs a uint8 (H, W) or (H, W, 3) array, got {px.dtype} {px.shape}")
    height, width = px.shape[:2]
    channels = 1 if px.ndim == 2 else 3
    rows = px.reshape(height, width * channels)
    filtered = rows.copy()
    filtered[:, channels:] = rows[:, channels:] - rows[:, :-channels]  # "Sub": byte minus the byte one pixel left
    raw = np.concatenate([np.ones((height, 1), dtype=np.uint8), filtered], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    colour_type = 0 if channels == 1 else 2
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return _PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, level)) + chunk(b"IEND", b"")


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    data = encode_png(pixels)
    with atomic_path(path, suffix=".png") as tmp:
        tmp.write_bytes(data)
    return path


@functools.lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    """256 × 3 ``uint8`` lookup table of a matplotlib colour map."""
    import matplotlib

    colours = matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(colours * 255.0).astype(np.uint8)


def _to_uint8(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Window ``values`` to [0, 255]; returns the bytes and the mask of non-finite (outside) pixels."""
    outside = ~np.isfinite(values)
    scaled = (np.where(outside, lo, values) - lo) * (255.0 / (hi - lo))
    return np.clip(scaled + 0.5, 0.0, 255.0).astype(np.uint8), outside


def _grey(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    out, outside = _to_uint8(values, *window)
    out[outside] = 0
    return out


def _coloured(values: np.ndarray, window: tuple[float, float], cmap: str) -> np.ndarray:
    index, outside = _to_uint8(values, *window)
    rgb = _lut(cmap)[index]
    rgb[outside] = 0
    return rgb


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (or on the image edge)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


# --------------------------------------------------------------------------------------------------
# Windows


def intensity_window(
    data: np.ndarray, percentiles: tuple[float, float] = WINDOW_PERCENTILES, max_samples: int = WINDOW_SAMPLES
) -> tuple[float, float, str | None]:
    """Display window of a volume: the ``percentiles`` of its foreground (finite voxels > 0).

    Args:
        data: intensities, any shape.
        percentiles: lower and upper percentile in [0, 100].
        max_samples: the voxels are strided regularly down to at most this many before the foreground is taken.

    Returns:
        ``(low, high, note)`` with ``low < high``; ``note`` is ``None``, or says why the window is not the foreground
        percentiles (no voxel > 0: the full finite range; a constant image: its value to value + 1), for the page's
        warnings.
    """
    flat = np.asarray(data).ravel()
    step = max(1, math.ceil(flat.size / max_samples))
    sample = flat[::step].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0, "no finite voxel: nothing to show"
    foreground = sample[sample > 0]
    note = None
    if foreground.size == 0:
        foreground, note = sample, "no voxel > 0: window from the full intensity range"
    lo, hi = (float(v) for v in np.percentile(foreground, percentiles))
    if hi <= lo:
        lo, hi = float(foreground.min()), float(foreground.max())
    if hi <= lo:
        return lo, lo + 1.0, f"constant image (value {lo:g})"
    return lo, hi, note


def _symmetric_window(data: np.ndarray) -> float:
    """± the 99.5th percentile of |data| over its non-zero finite voxels (subsampled); 1 when all are 0."""
    flat = np.asarray(data).ravel()
    sample = np.abs(flat[:: max(1, math.ceil(flat.size / WINDOW_SAMPLES))].astype(np.float64))
    sample = sample[np.isfinite(sample) & (sample > 0)]
    if sample.size == 0:
        return 1.0
    return float(np.percentile(sample, WINDOW_PERCENTILES[1]))


def _positive_window(data: np.ndarray) -> float:
    """Upper end of a [0, hi] window: the 99.5th percentile of the positive finite voxels (subsampled); 1 if none."""
    flat = np.asarray(data).ravel()
    sample = flat[:: max(1, math.ceil(flat.size / WINDOW_SAMPLES))].astype(np.float64)
    sample = sample[np.isfinite(sample) & (sample > 0)]
    if sample.size == 0:
        return 1.0
    return float(np.percentile(sample, WINDOW_PERCENTILES[1]))


# --------------------------------------------------------------------------------------------------
# Planes


@dataclass(frozen=True)
class _Plane:
    """One view: output voxel indices of every display pixel (rows × columns) at a fixed index along ``axis``."""

    name: str
    axis: int
    index: int
    ijk: tuple[np.ndarray, np.ndarray, np.ndarray]  # broadcastable integer index arrays into the output, (R, C)
    edges: tuple[str, str, str, str]
    pixel_mm: float
    centre_mm: tuple[float, float, float]


def _display_indices(n: int, spacing: float, pixel: float, decreasing: bool) -> np.ndarray:
    """Output indices of the display pixels along one axis: nearest-neighbour from ``spacing`` to ``pixel`` mm."""
    count = max(1, round(n * spacing / pixel))
    idx = np.minimum(((np.arange(count) + 0.5) * pixel / spacing).astype(np.int64), n - 1)
    return idx[::-1] if decreasing else idx


def _planes(output: Volume, point_vox: np.ndarray) -> list[_Plane]:
    """The three planes of the output grid through the voxel ``point_vox`` (rounded), in display orientation."""
    ornt = nib.orientations.io_orientation(output.affine)  # per voxel axis: (RAS world axis, ±1)
    world_axis = {int(ornt[a, 0]): a for a in range(3)}
    spacing = np.linalg.norm(output.affine[:3, :3], axis=0)
    # Nearest voxel; a point midway between two voxels goes to the one with the larger world coordinate, so that the
    # planes do not depend on the storage order (an even number of voxels puts the centre midway).
    nearest = [np.floor(point_vox[a] + 0.5) if ornt[a, 1] > 0 else np.ceil(point_vox[a] - 0.5) for a in range(3)]
    centre = [int(np.clip(nearest[a], 0, output.shape[a] - 1)) for a in range(3)]
    planes = []
    for name, normal in _PLANES:
        axis = world_axis[normal]
        vertical, horizontal, edges = _DISPLAY[normal]
        row_axis, col_axis = world_axis[vertical], world_axis[horizontal]
        extent = max(output.shape[row_axis] * spacing[row_axis], output.shape[col_axis] * spacing[col_axis])
        pixel = max(min(spacing[row_axis], spacing[col_axis]), extent / MAX_VIEW_PIXELS)
        # Display coordinates decrease along both image axes (right/anterior on the left, superior/anterior on top):
        # reverse a voxel axis whose index grows with the world coordinate.
        rows = _display_indices(output.shape[row_axis], spacing[row_axis], pixel, ornt[row_axis, 1] > 0)
        cols = _display_indices(output.shape[col_axis], spacing[col_axis], pixel, ornt[col_axis, 1] > 0)
        ijk: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * 3
        ijk[axis] = np.full((1, 1), centre[axis], dtype=np.int64)
        ijk[row_axis] = rows[:, None]
        ijk[col_axis] = cols[None, :]
        centre_mm = output.affine[:3, :3] @ np.asarray(centre, dtype=np.float64) + output.affine[:3, 3]
        planes.append(
            _Plane(name, axis, centre[axis], (ijk[0], ijk[1], ijk[2]), edges, float(pixel), tuple(centre_mm.tolist()))
        )
    return planes


def _sample(volume: Volume, output: Volume, plane: _Plane) -> np.ndarray:
    """``volume`` at the world points of ``plane``'s pixels (output voxel centres), nearest neighbour; NaN outside.

    Exact indexing when ``volume`` lies on the output grid.
    """
    shape = np.broadcast_shapes(*(ix.shape for ix in plane.ijk))
    if volume is output or (
        volume.shape == output.shape and np.allclose(volume.affine, output.affine, rtol=0.0, atol=1e-6)
    ):
        return np.asarray(volume.data[plane.ijk], dtype=np.float64)
    mapping = np.linalg.inv(volume.affine) @ output.affine
    idx = [np.broadcast_to(ix, shape).astype(np.float64) for ix in plane.ijk]
    inside = np.ones(shape, dtype=bool)
    moved = []
    for r in range(3):
        coord = mapping[r, 0] * idx[0] + mapping[r, 1] * idx[1] + mapping[r, 2] * idx[2] + mapping[r, 3]
        nearest = np.floor(coord + 0.5).astype(np.int64)
        inside &= (nearest >= 0) & (nearest < volume.shape[r])
        moved.append(np.clip(nearest, 0, volume.shape[r] - 1))
    values = np.asarray(volume.data[tuple(moved)], dtype=np.float64)
    values[~inside] = np.nan
    return values


def _thick_world_axis(volume: Volume) -> int:
    """RAS world axis closest to the input's coarsest voxel axis (its slice direction)."""
    spacing = np.linalg.norm(volume.affine[:3, :3], axis=0)
    ornt = nib.orientations.io_orientation(volume.affine)
    return int(ornt[int(np.argmax(spacing)), 0])


# --------------------------------------------------------------------------------------------------
# Records


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and paths converted; non-finite floats → ``None``."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _model_label(record: Mapping[str, Any]) -> str | None:
    model = record.get("model")
    if isinstance(model, str) and model:
        return model
    method = record.get("method")
    if isinstance(method, str) and method:
        return method
    if isinstance(model, Mapping) and isinstance(model.get("_target_"), str):
        return model["_target_"].rsplit(".", 1)[-1]
    return None


def index_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The index columns of one record.

    Args:
        record: a volume's record (:attr:`QCEntry.record`).

    Returns:
        ``model`` (``model`` when a string, else ``method``, else the class of a ``model`` config's ``_target_``),
        ``thickness_mm``, ``thickness_source``, ``forward_psnr_db`` and ``forward_ssim`` (from the
        ``forward_consistency`` mapping, as :func:`mrisr.eval.consistency.forward_consistency` reports them),
        ``seconds``; ``None`` where the record has no finite value.
    """
    forward = record.get("forward_consistency")
    forward = forward if isinstance(forward, Mapping) else {}
    source = record.get("thickness_source")
    return {
        "model": _model_label(record),
        "thickness_mm": _number(record.get("thickness_mm")),
        "thickness_source": source if isinstance(source, str) else None,
        "forward_psnr_db": _number(forward.get("psnr")),
        "forward_ssim": _number(forward.get("ssim")),
        "seconds": _number(record.get("seconds")),
    }


def _flatten(record: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


def _format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        numbers = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(value) > 6 and len(numbers) == len(value):
            arr = np.asarray(numbers, dtype=np.float64)
            return f"{len(arr)} values: min {arr.min():.4g}, median {np.median(arr):.4g}, max {arr.max():.4g}"
        if all(isinstance(v, str) for v in value):
            return "; ".join(value) if value else "—"
        return json.dumps(value)
    return str(value)


# --------------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:1.2em 2em;color:#1a1a1a}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin-top:1.6em}h3{font-size:1.05em}
table{border-collapse:collapse}td,th{padding:.25em .6em;vertical-align:top}
.warnings{background:#fdecea;border:2px solid #c62828;padding:.4em 1em;margin:1em 0;color:#7f1010}
.warnings h2{margin:.3em 0;font-size:1.15em}.ok{background:#e8f5e9;border:1px solid #2e7d32;padding:.4em 1em}
table.views td{text-align:center}table.views th{text-align:left;font-weight:normal;font-size:.85em;max-width:11em}
table.views th b{font-size:1.1em}table.views thead th{font-weight:bold;text-align:center;font-size:.95em}
table.views img{max-width:100%;height:auto;background:#000;display:block;margin:auto}
table.views td{max-width:24em}
table.record td,table.record th,table.windows td,table.windows th,table.index td,table.index th{
border-bottom:1px solid #ddd;text-align:left;font-size:.9em}
table.record td{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
.cbar{display:inline-block;height:.9em;width:12em;vertical-align:middle;border:1px solid #999}
.note{color:#555;font-size:.9em}
table.index th{cursor:pointer;user-select:none;background:#f3f3f3}table.index img{height:72px;background:#000}
table.index td.num{text-align:right;font-variant-numeric:tabular-nums}tr.warn td{background:#fdecea}
"""

_SORT_SCRIPT = """
(function(){
  var table=document.getElementById('volumes');if(!table){return;}
  var heads=table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads,function(th,col){
    if(th.getAttribute('data-type')==='none'){return;}
    th.addEventListener('click',function(){
      var numeric=th.getAttribute('data-type')==='number';
      var dir=th.getAttribute('aria-sort')==='ascending'?-1:1;
      Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',dir===1?'ascending':'descending');
      var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[col].getAttribute('data-sort'),y=b.cells[col].getAttribute('data-sort');
        if(numeric){x=x===''?NaN:parseFloat(x);y=y===''?NaN:parseFloat(y);
          if(isNaN(x)&&isNaN(y)){return 0;}if(isNaN(x)){return 1;}if(isNaN(y)){return -1;}
          return dir*(x-y);}
        return dir*x.localeCompare(y);
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt_mm(point: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in point) + ") mm"


def _document(title: str, body: str, script: str = "") -> str:
    script_tag = f"<script>{script}</script>" if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n{script_tag}</body></html>\n"
    )


def _warnings_html(warnings: Sequence[str]) -> str:
    if not warnings:
        return '<p class="ok">No warnings.</p>'
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return f'<div class="warnings" id="warnings"><h2>⚠ {len(warnings)} warning(s)</h2><ul>{items}</ul></div>'


def _colour_bar(cmap: str, stops: int = 17) -> str:
    """A colour bar as an inline CSS gradient (no image file) sampled at ``stops`` points of the lookup table."""
    lut = _lut(cmap)[np.linspace(0, 255, stops).round().astype(int)]
    colours = ",".join(f"rgb({r},{g},{b})" for r, g, b in lut)
    style = f"background:linear-gradient(to right,{colours})"
    return f'<span class="cbar" role="img" aria-label="{_e(cmap)} colour bar" style="{style}"></span>'


def _img(src: str, alt: str, shape: tuple[int, ...]) -> str:
    return f'<img src="{_e(src)}" alt="{_e(alt)}" width="{shape[1]}" height="{shape[0]}">'


# --------------------------------------------------------------------------------------------------
# The page


def write_qc_page(entry: QCEntry, folder: str | os.PathLike[str]) -> Path:
    """Write the QC page of ``entry``: ``<folder>/<safe name>/index.html``, its PNGs and ``qc.json`` (module doc).

    Args:
        entry: the volumes and the record.
        folder: the batch's QC folder (created when missing).

    Returns:
        The page (``index.html``).

    Raises:
        MrisrInputError: the folder cannot be created or written.
    """
    page_dir = Path(folder) / safe_name(entry.name)
    warnings = _warning_list(entry.record)
    qc_warnings: list[str] = []
    inp, out = entry.input, entry.output

    windows: dict[str, list[float]] = {}
    for key, volume in (("input", inp), ("output", out)):
        lo, hi, note = intensity_window(volume.data)
        windows[key] = [lo, hi]
        if note:
            qc_warnings.append(f"{key}: {note}")
    for key, volume in (("output", out), ("residual", entry.residual), ("sd", entry.sd)):
        if volume is not None and not np.all(np.isfinite(volume.data)):
            qc_warnings.append(f"{key}: {int(np.count_nonzero(~np.isfinite(volume.data)))} non-finite voxels")
    if entry.residual is not None:
        r = _symmetric_window(entry.residual.data)
        windows["residual"] = [-r, r]
    if entry.sd is not None:
        windows["sd"] = [0.0, _positive_window(entry.sd.data)]
    if entry.cord_mask is not None and not np.any(entry.cord_mask.data > 0.5):
        qc_warnings.append("cord mask is empty (no voxel > 0.5)")

    out_centre = (np.asarray(out.shape, dtype=np.float64) - 1.0) / 2.0
    centre_mm = out.affine[:3, :3] @ out_centre + out.affine[:3, 3]
    in_vox = np.linalg.inv(inp.affine) @ np.append(centre_mm, 1.0)
    if np.any(in_vox[:3] < -0.5) or np.any(in_vox[:3] > np.asarray(inp.shape) - 0.5):
        qc_warnings.append(
            f"the output's centre {_fmt_mm(centre_mm)} lies outside the input's field of view: are input and output "
            "in the same world space?"
        )
    view_sets: list[tuple[str, str, np.ndarray]] = [
        ("centre", f"Through the output centre {_fmt_mm(centre_mm)}", out_centre)
    ]
    if entry.landmark_mm is not None:
        point = np.asarray(entry.landmark_mm, dtype=np.float64)
        vox = (np.linalg.inv(out.affine) @ np.append(point, 1.0))[:3]
        if np.any(vox < -0.5) or np.any(vox > np.asarray(out.shape) - 0.5):
            qc_warnings.append(
                f"landmark {_fmt_mm(point)} lies outside the output's field of view: no views through it"
            )
        else:
            view_sets.append(("landmark", f"Through the landmark {_fmt_mm(point)}", vox))

    kinds = ["input", "output"]
    kinds += [
        k for k, v in (("residual", entry.residual), ("sd", entry.sd), ("mask", entry.cord_mask)) if v is not None
    ]
    thick_axis = _thick_world_axis(inp)
    acquired = next(name for name, normal in _PLANES if normal == thick_axis)
    thumbnail_plane = next(name for name, normal in reversed(_PLANES) if normal != thick_axis)

    images: dict[str, dict[str, dict[str, str]]] = {}
    sections = []
    for set_name, title, point in view_sets:
        images[set_name] = {}
        head = "".join(f"<th>{_e(_KIND_TITLES[k])}</th>" for k in kinds)
        rows = []
        for plane in _planes(out, point):
            pictures = _render_plane(entry, plane, kinds, windows)
            files = {}
            cells = []
            for kind in kinds:
                file = f"{set_name}_{plane.name}_{kind}.png"
                _write_png(page_dir / file, pictures[kind])
                files[kind] = file
                cells.append(f"<td>{_img(file, f'{kind}, {plane.name}', pictures[kind].shape)}</td>")
            images[set_name][plane.name] = files
            left, right, top, bottom = plane.edges
            label = (
                f"<b>{plane.name}</b>{' (acquired slice plane)' if plane.name == acquired else ''}<br>"
                f"output voxel {plane.index} along axis {plane.axis}<br>through {_fmt_mm(plane.centre_mm)}<br>"
                f"left {left}, right {right}, top {top}, bottom {bottom}<br>pixel {plane.pixel_mm:.3g} mm"
            )
            rows.append(f"<tr><th>{label}</th>{''.join(cells)}</tr>")
        sections.append(
            f'<h3>{_e(title)}</h3><table class="views"><thead><tr><th></th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )

    csa_file = _write_csa_plot(entry.csa_mm2, page_dir / "csa.png") if entry.csa_mm2 else None

    all_warnings = warnings + qc_warnings
    record = _jsonable(entry.record)
    thumbnail = images["centre"][thumbnail_plane]["output"]
    qc = {
        "format": QC_FORMAT,
        "format_version": QC_FORMAT_VERSION,
        "name": entry.name,
        "page": PAGE_NAME,
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "summary": index_row(record),
        "warnings": all_warnings,
        "qc_warnings": qc_warnings,
        "windows": windows,
        "images": images,
        "csa": "csa.png" if csa_file else None,
        "thumbnail": thumbnail,
        "record": record,
    }
    body = _page_body(entry, qc, sections, kinds)
    page = write_text_atomic(_document(f"mrisr QC: {entry.name}", body), page_dir / PAGE_NAME)
    _remove_stale_images(page_dir, qc)
    write_json_atomic(qc, page_dir / RECORD_NAME)
    return page


def _render_plane(
    entry: QCEntry, plane: _Plane, kinds: Sequence[str], windows: Mapping[str, Sequence[float]]
) -> dict[str, np.ndarray]:
    """The 8-bit pictures of one plane, one per kind."""
    out = entry.output
    output_values = _sample(out, out, plane)
    pictures = {
        "input": _grey(_sample(entry.input, out, plane), tuple(windows["input"])),
        "output": _grey(output_values, tuple(windows["output"])),
    }
    if "residual" in kinds:
        assert entry.residual is not None
        pictures["residual"] = _coloured(_sample(entry.residual, out, plane), tuple(windows["residual"]), RESIDUAL_CMAP)
    if "sd" in kinds:
        assert entry.sd is not None
        pictures["sd"] = _coloured(_sample(entry.sd, out, plane), tuple(windows["sd"]), SD_CMAP)
    if "mask" in kinds:
        assert entry.cord_mask is not None
        mask = _sample(entry.cord_mask, out, plane)
        rgb = np.repeat(pictures["output"][:, :, None], 3, axis=2)
        rgb[_outline(np.nan_to_num(mask, nan=0.0) > 0.5)] = OUTLINE_RGB
        pictures["mask"] = rgb
    return pictures


def _write_csa_plot(csa: Sequence[tuple[float, float]], path: Path) -> Path:
    """Line plot of the cross-sectional area against slice position (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    pairs = np.asarray(sorted(csa), dtype=np.float64)
    figure = Figure(figsize=(6.4, 2.4), dpi=100)
    axes = figure.add_axes((0.1, 0.2, 0.87, 0.74))  # fixed margins: a tight layout would draw the figure twice more
    axes.plot(pairs[:, 0], pairs[:, 1], marker=".", linewidth=1.0, color="#1f4e9c")
    axes.set_xlabel("slice position (mm)")
    axes.set_ylabel("CSA (mm²)")
    axes.grid(alpha=0.3)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100)
    return path


def _page_body(entry: QCEntry, qc: Mapping[str, Any], sections: Sequence[str], kinds: Sequence[str]) -> str:
    windows = qc["windows"]
    inp, out = entry.input, entry.output

    def grid(volume: Volume) -> str:
        spacing = np.linalg.norm(volume.affine[:3, :3], axis=0)
        axcodes = "".join(nib.aff2axcodes(volume.affine))
        return f"{'×'.join(map(str, volume.shape))} voxels of {' × '.join(f'{s:.3g}' for s in spacing)} mm, {axcodes}"

    window_rows = [
        f"<tr><th>input</th><td>{windows['input'][0]:.6g} – {windows['input'][1]:.6g}</td><td>{_e(grid(inp))}</td>"
        "<td>grey; 0.5th–99.5th percentile of the foreground (voxels &gt; 0)</td></tr>",
        f"<tr><th>SR output</th><td>{windows['output'][0]:.6g} – {windows['output'][1]:.6g}</td>"
        f"<td>{_e(grid(out))}</td><td>grey; 0.5th–99.5th percentile of the foreground (voxels &gt; 0)</td></tr>",
    ]
    if "residual" in windows:
        r = windows["residual"][1]
        ratio = r / (windows["input"][1] - windows["input"][0])
        window_rows.append(
            f"<tr><th>forward residual</th><td>{-r:.6g} – {r:.6g}<br>{_colour_bar(RESIDUAL_CMAP)}</td>"
            f"<td>{_e(grid(entry.residual))}</td><td>re-acquired minus input (blue: output too dark, red: too bright), "
            f"± 99.5th percentile of |residual| ({100 * ratio:.3g} % of the input window); white = 0</td></tr>"
        )
    if "sd" in windows:
        window_rows.append(
            f"<tr><th>SD of samples</th><td>0 – {windows['sd'][1]:.6g}<br>{_colour_bar(SD_CMAP)}</td>"
            f"<td>{_e(grid(entry.sd))}</td><td>0 to the 99.5th percentile of the positive voxels</td></tr>"
        )
    if "mask" in kinds:
        window_rows.append(
            f"<tr><th>cord mask</th><td>outline of &gt; 0.5</td><td>{_e(grid(entry.cord_mask))}</td>"
            "<td>red: mask pixels with a neighbour outside the mask</td></tr>"
        )
    explanation = (
        '<p class="note">Every pixel is the centre of an SR-output voxel on the plane named at the left of its row. '
        "The output is shown as it is; the input (and the residual, which lies on the input grid) shows the value of "
        "the input voxel that contains that world point (nearest neighbour through the affines), so each thick slice "
        "appears as a band as wide as the slice. Black: outside the volume's field of view. Planes are named by the "
        "closest world axis and shown in the radiological convention.</p>"
    )
    csa = f'<h2>Cross-sectional area per slice</h2><img src="{_e(qc["csa"])}" alt="CSA per slice">' if qc["csa"] else ""
    record_rows = "".join(
        f"<tr><th>{_e(key)}</th><td>{_e(_format_value(value))}</td></tr>" for key, value in _flatten(qc["record"])
    )
    return (
        f'<p><a href="../{PAGE_NAME}">← all volumes</a></p><h1>{_e(entry.name)}</h1>'
        f"{_warnings_html(qc['warnings'])}"
        f'<h2>Intensity windows and grids</h2><table class="windows"><thead><tr><th></th><th>window</th><th>grid</th>'
        f"<th>display</th></tr></thead><tbody>{''.join(window_rows)}</tbody></table>"
        f"<h2>Views</h2>{explanation}{''.join(sections)}{csa}"
        f'<h2>Record</h2><table class="record"><tbody>{record_rows or "<tr><td>(empty)</td></tr>"}</tbody></table>'
        f'<p class="note">Generated {_e(qc["generated"])} by mrisr.report.qc; the record is also in '
        f'<a href="{RECORD_NAME}">{RECORD_NAME}</a>.</p>'
    )


def _remove_stale_images(page_dir: Path, qc: Mapping[str, Any]) -> None:
    """Delete the PNGs of an earlier run of this page that the new page does not use (only names this module writes)."""
    used = {file for views in qc["images"].values() for files in views.values() for file in files.values()}
    if qc["csa"]:
        used.add(qc["csa"])
    for path in page_dir.glob("*.png"):
        if path.name not in used and _OWN_FILE.match(path.name):
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# The index


def _read_qc(path: Path) -> dict[str, Any]:
    """One index row from ``<page>/qc.json``; an unreadable file becomes a row whose warning says so."""
    folder = path.parent.name
    try:
        qc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(qc, dict) or qc.get("format") != QC_FORMAT:
            raise ValueError(f"not an {QC_FORMAT} record")
        summary = qc.get("summary") or {}
        return {
            "name": str(qc.get("name", folder)),
            "folder": folder,
            "page": str(qc.get("page", PAGE_NAME)),
            "thumbnail": qc.get("thumbnail"),
            "warnings": [str(w) for w in qc.get("warnings") or []],
            **{key: summary.get(key) for key in index_row({})},
        }
    except (OSError, ValueError) as err:
        return {
            "name": folder,
            "folder": folder,
            "page": None,
            "thumbnail": None,
            "warnings": [f"{RECORD_NAME} unreadable ({err}): rerun the QC of this volume"],
            **dict.fromkeys(index_row({})),
        }


def _index_order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Volumes with warnings first, then forward PSNR ascending (missing PSNR last), then name."""
    psnr = row["forward_psnr_db"]
    return (not row["warnings"], psnr is None, psnr if psnr is not None else 0.0, row["name"])


def write_qc_index(folder: str | os.PathLike[str]) -> Path:
    """Rebuild ``<folder>/index.html`` from every ``<folder>/*/qc.json`` (no volume is read).

    Stateless: a resumed batch that skipped finished volumes still lists them. Rows: volumes with warnings first,
    then by forward-consistency PSNR ascending (worst first; volumes without it last), then by name; every column
    header sorts the table on click.

    Args:
        folder: the batch's QC folder (the one given to :func:`write_qc_page`).

    Returns:
        The index page.

    Raises:
        MrisrInputError: ``folder`` cannot be created or written.
    """
    root = Path(folder)
    rows = sorted((_read_qc(path) for path in sorted(root.glob(f"*/{RECORD_NAME}"))), key=_index_order)

    def num(value: Any, digits: str) -> str:
        return "" if value is None else format(value, digits)

    body_rows = []
    for row in rows:
        folder_name = row["folder"]
        link = f"{folder_name}/{row['page']}" if row["page"] else f"{folder_name}/{RECORD_NAME}"
        thumb = (
            f'<a href="{_e(link)}"><img src="{_e(folder_name + "/" + row["thumbnail"])}" alt="{_e(row["name"])}"></a>'
            if row["thumbnail"]
            else ""
        )
        thickness = row["thickness_mm"]
        thickness_text = "" if thickness is None else f"{thickness:.3g} mm"
        if row["thickness_source"]:
            thickness_text += f" ({row['thickness_source']})"
        n_warn = len(row["warnings"])
        title = _e("\n".join(row["warnings"]))
        body_rows.append(
            f'<tr class="{"warn" if n_warn else ""}" data-name="{_e(row["name"])}">'
            f'<td data-sort="">{thumb}</td>'
            f'<td data-sort="{_e(row["name"])}"><a href="{_e(link)}">{_e(row["name"])}</a></td>'
            f'<td data-sort="{_e(row["model"] or "")}">{_e(row["model"] or "—")}</td>'
            f'<td class="num" data-sort="{num(thickness, ".6g")}">{_e(thickness_text or "—")}</td>'
            f'<td class="num" data-sort="{num(row["forward_psnr_db"], ".6g")}">'
            f"{num(row['forward_psnr_db'], '.2f') or '—'}</td>"
            f'<td class="num" data-sort="{num(row["seconds"], ".6g")}">{num(row["seconds"], ".2f") or "—"}</td>'
            f'<td class="num" data-sort="{n_warn}" title="{title}">{n_warn}</td></tr>'
        )
    n_warned = sum(1 for row in rows if row["warnings"])
    body = (
        f"<h1>mrisr QC: {len(rows)} volume(s)</h1>"
        f"<p>{n_warned} with warnings. Rows: volumes with warnings first, then by forward-consistency PSNR "
        "(worst first). Click a column header to sort.</p>"
        '<table class="index" id="volumes"><thead><tr><th data-type="none">view</th><th data-type="text">name</th>'
        '<th data-type="text">model</th><th data-type="number">thickness (source)</th>'
        '<th data-type="number">forward PSNR (dB)</th><th data-type="number">seconds</th>'
        f'<th data-type="number">warnings</th></tr></thead><tbody>{"".join(body_rows)}</tbody></table>'
        '<p class="note">Forward PSNR: the input re-acquired from the SR output with the slice-profile model, '
        "compared with the input (docs/qc.md). Thumbnails: the output through its centre, across the slices.</p>"
    )
    return write_text_atomic(_document("mrisr QC", body, _SORT_SCRIPT), root / PAGE_NAME)
