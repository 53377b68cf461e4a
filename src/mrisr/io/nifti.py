"""Reading and writing NIfTI volumes with strict validation (docs/physics.md §3-§4).

Conventions:

* ``Volume.data`` is a 3-D array in the index order in which it is stored in the file (no
  reorientation); ``Volume.affine`` maps voxel indices ``(i, j, k, 1)`` to world millimetres.
* The affine follows nibabel's ``img.affine`` rule: the sform when ``sform_code > 0``, otherwise the
  qform (otherwise nibabel's zoom-only fallback).
* Spatial units are always millimetres after loading: ``micron`` and ``meter`` headers are converted
  (affine and header zooms), ``unknown`` is taken as mm with a logged warning.
* Inputs are never modified and never overwritten: :func:`save_volume` refuses to write onto the file
  a volume was loaded from and writes atomically and durably through :func:`mrisr.core.atomic.atomic_path`
  (temporary file in the target directory, fsync, :func:`os.replace`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
from nibabel.filebasedimages import ImageFileError

from mrisr.core.atomic import atomic_path
from mrisr.core.errors import MrisrInputError

__all__ = [
    "Volume",
    "as_volume",
    "check_shape",
    "header_to_mm",
    "load_volume",
    "same_file",
    "save_volume",
    "volume_from_image",
]

_LOG = logging.getLogger(__name__)

#: Factor that converts a NIfTI spatial unit into millimetres.
_UNIT_TO_MM: dict[str, float] = {"mm": 1.0, "micron": 1e-3, "meter": 1e3}

#: Fallback sform/qform code when a header template has neither (NIFTI_XFORM_SCANNER_ANAT).
_SCANNER_CODE = 1

_GZIP_MAGIC = b"\x1f\x8b"

PathLike = str | os.PathLike[str]


@dataclass(eq=False)
class Volume:
    """A 3-D image with its voxel-to-world geometry.

    Args:
        data: Image array, shape ``(X, Y, Z)`` in stored index order (float32 after
            :func:`load_volume` unless another dtype is requested).
        affine: Voxel-to-world matrix, shape ``(4, 4)``, world coordinates in mm. Stored as a float64
            copy.
        header: NIfTI header carrying the sform/qform codes, units and other metadata used when the
            volume is written. ``None`` creates a fresh header from ``affine`` (codes 1, "scanner").
            A header whose shape or best affine does not match ``data``/``affine`` (e.g. the input's
            header reused for a resampled volume) is copied and updated: sform and qform are set
            from ``affine`` with their codes kept, so ``zooms`` are the affine's column norms. A
            header that already matches is used as given (for a loaded file it may keep ``pixdim``
            values that differ from the sform; :func:`~mrisr.io.geometry.detect_slice_axis` warns).
        path: File the volume was loaded from, or ``None`` for derived/in-memory volumes.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if self.data.ndim != 3:
            raise ValueError(f"Volume.data must be 3-D, got shape {self.data.shape}")
        affine = np.array(self.affine, dtype=np.float64, copy=True)
        if affine.shape != (4, 4):
            raise ValueError(f"Volume.affine must be 4x4, got shape {affine.shape}")
        if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError(f"Volume.affine must be finite and non-singular, got\n{affine}")
        self.affine = affine
        if self.header is None:
            self.header = _fresh_header(affine, self.data.shape)
        else:
            self.header = _header_for(self.header, affine, self.data.shape)
        if self.path is not None:
            self.path = Path(self.path)

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel sizes ``(dx, dy, dz)`` in mm from the header (``pixdim[1:4]``)."""
        assert self.header is not None
        z = self.header.get_zooms()
        return (float(z[0]), float(z[1]), float(z[2]))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(X, Y, Z)`` in voxels."""
        s = self.data.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    def to_nifti(self) -> nib.Nifti1Image:
        """Build a NIfTI-1 image with exactly this affine and a copy of the header.

        The header's sform and qform are both set from :attr:`affine`, keeping their codes (code 1,
        "scanner", for both when the header has 0 for both). Header zooms are therefore the column
        norms of the affine; the on-disk data type is the array's; stale scaling (``scl_slope``) and
        display range (``cal_min``/``cal_max``) are reset.

        Returns:
            A :class:`nibabel.Nifti1Image` whose ``affine`` is :attr:`affine` and whose data is
            :attr:`data` (not copied; ``bool`` is stored as ``uint8``, ``float16`` as ``float32``).
        """
        assert self.header is not None
        data = self.data
        if data.dtype == np.bool_:
            data = data.astype(np.uint8)
        elif data.dtype == np.float16:
            data = data.astype(np.float32)
        hdr = self.header.copy()
        hdr.set_data_shape(data.shape)
        hdr.set_data_dtype(data.dtype)
        hdr.set_slope_inter(None, None)
        hdr["cal_min"] = 0.0
        hdr["cal_max"] = 0.0
        scode, qcode = int(hdr["sform_code"]), int(hdr["qform_code"])
        if scode == 0 and qcode == 0:
            scode = qcode = _SCANNER_CODE
        hdr.set_sform(self.affine, code=scode)
        hdr.set_qform(self.affine, code=qcode)
        if scode == 0:
            _LOG.debug("sform_code is 0: the written affine is the qform (float32 quaternion, no shears)")
        return nib.Nifti1Image(data, self.affine, header=hdr)


# --------------------------------------------------------------------------------------------------
# Loading


def load_volume(path: PathLike, dtype: npt.DTypeLike = np.float32, allow_constant: bool = False) -> Volume:
    """Load and validate a 3-D NIfTI volume.

    The file is read completely (a truncated ``.nii.gz`` fails here, not later) and never modified.

    Args:
        path: ``.nii`` or ``.nii.gz`` file (NIfTI-1 or NIfTI-2).
        dtype: Data type of ``Volume.data`` (scaling from ``scl_slope``/``scl_inter`` applied first;
            float-to-integer conversion rounds to nearest).
        allow_constant: Accept an image whose voxels all have the same value (e.g. an empty mask).

    Returns:
        The validated :class:`Volume`, shape ``(X, Y, Z)``, affine in mm, ``path`` set.

    Raises:
        MrisrInputError: Missing file, directory, empty/corrupt/truncated file, not a NIfTI image, more
            than one volume, fewer than 3 dimensions, a zero-length dimension, NaN/Inf voxels, constant
            image (unless ``allow_constant``), non-finite or non-positive zooms, singular affine.
    """
    p = Path(path)
    if not p.exists():
        if p.is_symlink():
            raise MrisrInputError(p, "broken symbolic link (its target does not exist)", "fix or remove the link")
        raise MrisrInputError(p, "file does not exist", "check the path and the working directory")
    if p.is_dir():
        raise MrisrInputError(p, "is a directory, not a NIfTI file", "pass the .nii or .nii.gz file inside it")
    if not p.is_file():
        raise MrisrInputError(p, "is not a regular file", "pass a .nii or .nii.gz file")
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            magic = fh.read(2)
    except OSError as exc:
        raise MrisrInputError(p, f"cannot be read ({exc.strerror or exc})", "check file permissions") from exc
    if size == 0:
        raise MrisrInputError(p, "empty file (0 bytes)", "re-export or re-copy the image")
    if p.name.lower().endswith(".gz") and magic != _GZIP_MAGIC:
        raise MrisrInputError(
            p,
            "named .gz but not gzip-compressed (corrupt file, or not an image)",
            "re-export the image, or rename it to .nii if it is an uncompressed NIfTI file",
        )
    try:
        img = _open_image(p)
    except ImageFileError as exc:
        raise MrisrInputError(
            p,
            f"not a NIfTI image (nibabel could not read it: {exc})",
            "pass a NIfTI-1/NIfTI-2 file (.nii or .nii.gz); convert DICOM with dcm2niix",
        ) from exc
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise MrisrInputError(
            p, f"corrupt or truncated compressed file ({exc})", "re-download or re-export the image"
        ) from exc
    except Exception as exc:  # nibabel raises many types for malformed headers
        raise MrisrInputError(
            p,
            f"cannot be read as a NIfTI image ({type(exc).__name__}: {exc})",
            "check that the file is a valid, complete NIfTI-1/NIfTI-2 image",
        ) from exc
    _check_stored_pixdim(img, p)
    return volume_from_image(img, path=p, dtype=dtype, allow_constant=allow_constant)


def _stored_header(img: Any, path: Path) -> nib.Nifti1Header | None:
    """The NIfTI header as stored in the file, before nibabel's repairs; ``None`` when it cannot be read."""
    header_file = getattr(img, "file_map", {}).get("header")
    source = Path(header_file.filename) if header_file is not None and header_file.filename else path
    opener = gzip.open if source.name.lower().endswith(".gz") else open
    try:
        with opener(source, "rb") as fh:
            raw = fh.read(540)
    except (OSError, EOFError, zlib.error):
        return None
    if len(raw) >= 348 and raw[344:348] in (b"n+1\x00", b"ni1\x00"):
        klass: Any = nib.Nifti1Header
    elif len(raw) >= 540 and raw[4:8] in (b"n+2\x00", b"ni2\x00"):
        klass = nib.Nifti2Header
    else:
        return None
    # The bytes after the header (extension flag) are zeroed so that nothing beyond the header is parsed.
    block = raw[: klass.sizeof_hdr] + bytes(4)
    return klass.from_fileobj(io.BytesIO(block), check=False)


def _check_stored_pixdim(img: Any, path: Path) -> None:
    """Refuse a zero, negative or non-finite spatial ``pixdim`` in the file's header.

    nibabel repairs such headers on load (zero → 1 mm, negative → its absolute value) with a log message only; a
    volume whose voxel size is unknown would then be processed as if it were 1 mm, so it is refused here.
    """
    stored = _stored_header(img, path)
    if stored is None:
        return
    n_dims = int(stored["dim"][0])
    for index in range(1, min(3, max(n_dims, 0)) + 1):
        value = float(stored["pixdim"][index])
        if not np.isfinite(value) or value <= 0:
            raise MrisrInputError(
                path,
                f"invalid voxel size in the header: pixdim[{index}] = {value:g} "
                "(voxel sizes must be finite and > 0; spatial axis "
                f"{index - 1} has no usable spacing)",
                "repair the header with the true voxel size (e.g. nibabel `header.set_zooms`, or `fslchpixdim`) "
                "or re-export the image",
            )


def _open_image(path: Path) -> Any:
    """Open an image with nibabel, verifying gzip integrity (CRC and length) of ``.gz`` files.

    A compressed single-file NIfTI is decompressed completely in one pass (so corruption anywhere in the
    stream is detected, not only truncation before the last voxel nibabel reads) and parsed from memory.
    Anything else is left to :func:`nibabel.load`.
    """
    if not path.name.lower().endswith(".gz"):
        return nib.load(path, mmap=False)
    with gzip.open(path, "rb") as fh:
        raw = fh.read()  # raises EOFError (truncated) / BadGzipFile, zlib.error (corrupt)
    if len(raw) >= 348 and raw[344:348] == b"n+1\x00":
        return nib.Nifti1Image.from_bytes(raw)
    if len(raw) >= 540 and raw[4:8] == b"n+2\x00":
        return nib.Nifti2Image.from_bytes(raw)
    return nib.load(path, mmap=False)


def volume_from_image(
    img: nib.Nifti1Image,
    path: PathLike | None = None,
    dtype: npt.DTypeLike = np.float32,
    allow_constant: bool = False,
) -> Volume:
    """Validate an in-memory nibabel image and turn it into a :class:`Volume`.

    Applies the same checks and unit conversion as :func:`load_volume`; the image's data is read
    completely and copied (the resulting volume never aliases ``img``'s array).

    Args:
        img: NIfTI-1 or NIfTI-2 image (single file or pair).
        path: File to name in error messages and to record as ``Volume.path``; defaults to
            ``img.get_filename()``.
        dtype: Data type of ``Volume.data``.
        allow_constant: Accept an image whose voxels all have the same value.

    Returns:
        The validated :class:`Volume`, shape ``(X, Y, Z)``, affine in mm.

    Raises:
        MrisrInputError: See :func:`load_volume`.
    """
    if path is None and callable(getattr(img, "get_filename", None)) and img.get_filename():
        path = img.get_filename()
    label = None if path is None else Path(path)
    if not isinstance(img, nib.Nifti1Pair):
        raise MrisrInputError(
            label,
            f"is a {type(img).__name__}, not a NIfTI image",
            "convert it to NIfTI (.nii/.nii.gz) first, e.g. with mri_convert or nibabel",
        )
    shape3 = check_shape(tuple(int(s) for s in img.shape), label)
    header = _as_nifti1_header(img.header)
    header.set_data_shape(shape3)
    affine = np.array(img.affine, dtype=np.float64, copy=True)
    _check_zooms_and_affine(header, affine, label)
    affine = header_to_mm(header, affine, label)

    data = _read_data(img, shape3, label)
    if data.dtype.kind == "f":
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        if n_bad:
            n_nan = int(np.count_nonzero(np.isnan(data)))
            raise MrisrInputError(
                label,
                f"{n_bad} of {data.size} voxels are not finite ({n_nan} NaN, {n_bad - n_nan} Inf)",
                "replace non-finite values (e.g. `fslmaths in -nan out`) or fix the step that made them",
            )
    if not allow_constant:
        lo, hi = data.min(), data.max()
        if lo == hi:
            raise MrisrInputError(
                label,
                f"all {data.size} voxels have the same value ({lo.item()!r})",
                "check that this is the intended image (allow_constant=True accepts e.g. empty masks)",
            )
    out = _cast(data, np.dtype(dtype), label)
    return Volume(data=out, affine=affine, header=header, path=label)


def as_volume(image: PathLike | nib.Nifti1Image | nib.Nifti2Image | Volume, allow_constant: bool = False) -> Volume:
    """Load/convert ``image`` (path, nibabel image or :class:`Volume`) into a validated :class:`Volume`."""
    if isinstance(image, Volume):
        return image
    if isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        return volume_from_image(image, allow_constant=allow_constant)
    return load_volume(image, allow_constant=allow_constant)


def check_shape(shape: tuple[int, ...], label: Path | None) -> tuple[int, int, int]:
    """The 3-D shape of an image of ``shape`` (trailing singleton dimensions dropped); anything else is refused."""
    if len(shape) < 3:
        raise MrisrInputError(
            label,
            f"has {len(shape)} dimension(s) {shape}, a 3-D volume is required",
            "pass a 3-D image (2-D slices are not supported)",
        )
    if len(shape) > 3 and any(s != 1 for s in shape[3:]):
        n = int(np.prod(shape[3:]))
        raise MrisrInputError(
            label,
            f"{len(shape)}-D image with {n} volumes (shape {shape}), a single 3-D volume is required",
            "extract one volume first, e.g. `fslroi in.nii.gz vol0.nii.gz 0 1`",
        )
    if any(s == 0 for s in shape[:3]):
        raise MrisrInputError(label, f"empty image: a dimension has length 0 (shape {shape})", "re-export the image")
    if len(shape) > 3:
        _LOG.debug("%s: squeezing singleton trailing dimensions of shape %s", label, shape)
    return (shape[0], shape[1], shape[2])


def _check_zooms_and_affine(header: nib.Nifti1Header, affine: np.ndarray, label: Path | None) -> None:
    zooms = np.asarray(header.get_zooms()[:3], dtype=np.float64)
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise MrisrInputError(
            label,
            f"invalid voxel sizes (pixdim) {tuple(float(z) for z in zooms)}: they must be finite and > 0",
            "repair the header (e.g. with nibabel `header.set_zooms`) or re-export the image",
        )
    if not np.all(np.isfinite(affine)):
        raise MrisrInputError(label, "the affine (sform/qform) contains NaN or Inf", "repair the header")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise MrisrInputError(label, "the affine (sform/qform) is singular: voxels have no volume", "repair the header")


def header_to_mm(header: nib.Nifti1Header, affine: np.ndarray, label: PathLike | None = None) -> np.ndarray:
    """Convert a header's spatial unit to millimetres (docs/physics.md §4 step 3).

    ``micron`` and ``meter``: the header's ``pixdim[1:4]``, sform rows and qform offsets are scaled in
    place and the returned affine is ``affine`` with its first three rows scaled. ``unknown`` (or an
    unrecognised code): assumed to be mm, a warning is logged. In all cases the header's spatial unit
    is set to ``mm`` (the time unit is kept).

    Args:
        header: Header to update in place (pass a copy).
        affine: Voxel-to-world matrix, shape ``(4, 4)``, in the header's unit.
        label: File name for the log message.

    Returns:
        The affine in mm, shape ``(4, 4)``, float64 (a new array).
    """
    try:
        xyz_unit, t_unit = header.get_xyzt_units()
    except (KeyError, ValueError):
        xyz_unit, t_unit = "unknown", "unknown"
    out = np.array(affine, dtype=np.float64, copy=True)
    if xyz_unit == "mm":
        return out
    if xyz_unit not in _UNIT_TO_MM:
        _LOG.warning(
            "%s: spatial unit is %r in the header; assuming millimetres",
            label or "<in-memory image>",
            xyz_unit,
        )
    else:
        scale = _UNIT_TO_MM[xyz_unit]
        out[:3, :] *= scale
        hdr = header.structarr
        hdr["pixdim"][1:4] = hdr["pixdim"][1:4] * scale
        for key in ("srow_x", "srow_y", "srow_z"):
            hdr[key] = hdr[key] * scale
        for key in ("qoffset_x", "qoffset_y", "qoffset_z"):
            hdr[key] = hdr[key] * scale
        _LOG.info("%s: converted spatial unit %s to mm (factor %g)", label or "<in-memory image>", xyz_unit, scale)
    try:
        header.set_xyzt_units("mm", t_unit)
    except KeyError:
        header.set_xyzt_units("mm", None)
    return out


MAX_VOXELS = int(os.environ.get("MRISR_MAX_VOXELS", 2**31 - 1))


def _read_data(img: nib.Nifti1Image, shape3: tuple[int, int, int], label: Path | None) -> np.ndarray:
    n_voxels = int(np.prod(shape3, dtype=np.int64))
    if n_voxels > MAX_VOXELS:
        raise MrisrInputError(
            label,
            f"header declares {shape3[0]}×{shape3[1]}×{shape3[2]} = {n_voxels:,} voxels, more than the limit of "
            f"{MAX_VOXELS:,}",
            "check the header (a corrupt dim field?) or raise the limit with the MRISR_MAX_VOXELS environment variable",
        )
    try:
        arr = np.asanyarray(img.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise MrisrInputError(
            label, f"corrupt or truncated image data ({exc})", "re-download or re-export the image"
        ) from exc
    except (OSError, ValueError, MemoryError) as exc:
        raise MrisrInputError(
            label,
            f"image data cannot be read; the file is probably truncated ({type(exc).__name__}: {exc})",
            "re-download or re-export the image",
        ) from exc
    if isinstance(arr, np.memmap):
        arr = np.array(arr)
    if arr.dtype.fields is not None or arr.dtype.kind not in "biuf":
        raise MrisrInputError(
            label,
            f"unsupported voxel data type {arr.dtype} (RGB/complex/other)",
            "convert to a real-valued scalar image (e.g. magnitude) first",
        )
    if arr.size != int(np.prod(shape3)):
        raise MrisrInputError(label, f"data has {arr.size} voxels, header shape is {shape3}", "re-export the image")
    return np.asarray(arr).reshape(shape3)


def _cast(data: np.ndarray, dtype: np.dtype[Any], label: Path | None) -> np.ndarray:
    """Copy ``data`` to ``dtype``; floats going to integers are rounded and range-checked."""
    if dtype.kind in "iu" and data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise MrisrInputError(label, f"non-finite values cannot be stored as {dtype}", "use a float dtype")
        rounded = np.rint(data)
        info = np.iinfo(dtype)
        lo, hi = float(rounded.min()), float(rounded.max())
        if lo < info.min or hi > info.max:
            raise MrisrInputError(
                label,
                f"values in [{lo:g}, {hi:g}] do not fit data type {dtype} [{info.min}, {info.max}]",
                "use a wider or floating-point dtype, or rescale the data",
            )
        return rounded.astype(dtype)
    if dtype.kind in "iu" and data.dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = int(data.min()), int(data.max())
        if lo < info.min or hi > info.max:
            raise MrisrInputError(
                label,
                f"values in [{lo}, {hi}] do not fit data type {dtype} [{info.min}, {info.max}]",
                "use a wider or floating-point dtype",
            )
    if dtype.kind == "f" and data.dtype.kind == "f" and dtype.itemsize < data.dtype.itemsize:
        finfo = np.finfo(dtype)
        if data.size and float(np.max(np.abs(data))) > float(finfo.max):
            raise MrisrInputError(label, f"values exceed the range of {dtype}", "use float64 or rescale the data")
    return data.astype(dtype, copy=True)


# --------------------------------------------------------------------------------------------------
# Headers


def _fresh_header(affine: np.ndarray, shape: tuple[int, ...]) -> nib.Nifti1Header:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_sform(affine, code=_SCANNER_CODE)
    hdr.set_qform(affine, code=_SCANNER_CODE)
    return hdr


def _header_for(header: Any, affine: np.ndarray, shape: tuple[int, ...]) -> nib.Nifti1Header:
    """Return ``header`` if it describes ``shape`` and ``affine``, else an updated NIfTI-1 copy."""
    if type(header) is not nib.Nifti1Header:
        header = _as_nifti1_header(header)
        copied = True
    else:
        copied = False
    same_shape = tuple(header.get_data_shape()) == tuple(shape)
    same_affine = np.allclose(header.get_best_affine(), affine, rtol=1e-6, atol=1e-5)
    if same_shape and same_affine:
        return header
    if not copied:
        header = header.copy()
    if not same_shape:
        header.set_data_shape(shape)
    if not same_affine:
        header.set_sform(affine, code=int(header["sform_code"]))
        header.set_qform(affine, code=int(header["qform_code"]))
    return header


def _as_nifti1_header(header: Any) -> nib.Nifti1Header:
    """Return a NIfTI-1 single-file header copy of ``header`` keeping sform/qform and their codes."""
    if type(header) is nib.Nifti1Header:
        return header.copy()
    out = nib.Nifti1Header.from_header(header)
    if isinstance(header, nib.Nifti1Header):
        for getter, setter in ((header.get_sform, out.set_sform), (header.get_qform, out.set_qform)):
            mat, code = getter(coded=True)
            if mat is not None:
                setter(mat, code=int(code))
        with contextlib.suppress(KeyError, ValueError):
            out.set_xyzt_units(*header.get_xyzt_units())
    return out


# --------------------------------------------------------------------------------------------------
# Saving


def same_file(a: PathLike | None, b: PathLike | None) -> bool:
    """Whether two paths name the same file (same inode when both exist, else same resolved path).

    Args:
        a: First path or ``None``.
        b: Second path or ``None``.

    Returns:
        ``False`` when either is ``None``.
    """
    if a is None or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _nifti_suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    if name.endswith(".nii"):
        return ".nii"
    raise MrisrInputError(path, "output file name must end in .nii or .nii.gz", "choose a NIfTI file name")


def save_volume(
    volume_or_data: Volume | np.ndarray,
    path: PathLike,
    affine: np.ndarray | None = None,
    header: nib.Nifti1Header | None = None,
    dtype: npt.DTypeLike = np.float32,
    slope_inter: tuple[float, float] | None = None,
) -> Path:
    """Write a volume or an array as NIfTI-1, atomically.

    The image is written to a temporary file in the target directory, synced to disk and moved into
    place with :func:`os.replace` (:func:`mrisr.core.atomic.atomic_path`), so ``path`` is either left
    untouched or fully written; the temporary file is removed on failure. Parent directories are
    created; the file gets the mode of a normal ``open`` (``0o666`` minus the umask).

    Geometry: sform and qform are both set from the affine, keeping the header template's codes
    (1, "scanner", for both when the template has 0 for both); header zooms are read back from the
    affine. NIfTI-1 stores the sform in float32, so the affine read back by :func:`load_volume` is
    ``affine.astype(float32)``: bit-exact for any affine that came from a NIfTI-1 file (and a fixed
    point after one round trip). When the template's ``sform_code`` is 0 the file's affine is the
    qform, which cannot hold shears and is exact to float32 rounding only.

    Args:
        volume_or_data: A :class:`Volume`, or a 3-D array (then ``affine`` is required).
        path: Output ``.nii`` or ``.nii.gz`` file.
        affine: Voxel-to-world matrix, shape ``(4, 4)`` in mm; overrides the volume's.
        header: Header template (codes, units, descriptions); overrides the volume's.
        dtype: On-disk data type. Floats written to integer types are rounded to nearest and must fit.
        slope_inter: ``(scl_slope, scl_inter)`` stored in the header: the data are the stored values and a reader
            sees ``stored · slope + inter`` (e.g. an output in its input's integer dtype and scaling); ``None`` = no
            scaling.

    Returns:
        The written path.

    Raises:
        MrisrInputError: Bad output name, output is the volume's input file or a directory, values that
            do not fit ``dtype``, an output folder that cannot be created or written.
        ValueError: ``affine`` missing for a bare array, data not 3-D.
    """
    out = Path(path)
    suffix = _nifti_suffix(out)
    if isinstance(volume_or_data, Volume):
        vol = volume_or_data
        data = vol.data
        aff = vol.affine if affine is None else affine
        hdr = vol.header if header is None else header
        if vol.path is not None and same_file(vol.path, out):
            raise MrisrInputError(
                out,
                "refusing to overwrite the input file this volume was loaded from",
                "write the result to a different path (inputs are never modified)",
            )
    else:
        data = np.asarray(volume_or_data)
        if affine is None:
            raise ValueError("save_volume: an affine is required when saving a bare array")
        aff, hdr = affine, header
    if out.is_dir():
        raise MrisrInputError(out, "output path is an existing directory", "pass a file name ending in .nii.gz")
    if data.dtype.kind == "c":
        raise MrisrInputError(out, "complex data cannot be saved", "save the magnitude (np.abs) instead")
    out_dtype = np.dtype(dtype)
    arr = _cast(np.asarray(data), np.dtype(np.uint8) if out_dtype == np.bool_ else out_dtype, out)
    img = Volume(arr, aff, None if hdr is None else _as_nifti1_header(hdr)).to_nifti()
    if slope_inter is not None:
        img.header.set_slope_inter(float(slope_inter[0]), float(slope_inter[1]))

    with atomic_path(out, suffix=suffix) as tmp:  # the suffix tells nibabel to gzip (.nii.gz) or not (.nii)
        img.to_filename(tmp)
    _LOG.debug("wrote %s (shape %s, dtype %s)", out, arr.shape, arr.dtype)
    return out
