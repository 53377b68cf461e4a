"""BIDS / dcm2niix JSON sidecars of NIfTI images: where they are, how they are read and written.

A NIfTI header stores the slice *separation* S (``pixdim`` along the slice axis) but not the slice *thickness* T (the
FWHM of the slice profile); with gaps T < S. DICOM keeps both, and converters such as dcm2niix write them into a JSON
sidecar beside the image (``<stem>.json``): ``SliceThickness`` (DICOM 0018,0050) and ``SpacingBetweenSlices``
(0018,0088). :func:`sidecar_number` reads such a key strictly; :func:`write_acquisition_sidecar` writes both keys for
a simulated acquisition, so that a thick-slice volume made by mrisr carries its thickness like a scanner's would.
How the thickness of an input is resolved from this and other sources is :mod:`mrisr.inference.acquisition`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

from mrisr.core.atomic import write_json_atomic
from mrisr.core.errors import MrisrInputError

__all__ = ["read_sidecar", "sidecar_number", "sidecar_path", "write_acquisition_sidecar"]


def sidecar_path(input_path: str | os.PathLike[str]) -> Path:
    """BIDS sidecar of an image: ``sub-01_T2w.nii.gz`` → ``sub-01_T2w.json`` (same folder).

    Args:
        input_path: NIfTI path (``.nii`` or ``.nii.gz``; other suffixes are replaced as they are).

    Returns:
        The ``.json`` path (it may not exist).
    """
    path = Path(input_path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON sidecar into a dict.

    Raises:
        MrisrInputError: the file cannot be read, is not valid JSON, or does not hold a JSON object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise MrisrInputError(path, f"cannot read the JSON sidecar ({err})", "fix or remove the sidecar file") from err
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise MrisrInputError(
            path, f"the JSON sidecar is not valid JSON (line {err.lineno}: {err.msg})", "fix or remove the sidecar file"
        ) from err
    if not isinstance(record, dict):
        raise MrisrInputError(
            path, f"the JSON sidecar holds a {type(record).__name__}, not an object", "fix or remove the sidecar file"
        )
    return record


def sidecar_number(record: dict[str, Any], key: str, path: Path) -> float | None:
    """``record[key]`` as a finite positive float, None when absent; errors name the file and the key."""
    if key not in record or record[key] is None:
        return None
    value = record[key]
    # JSON true/false parse as bool, a subclass of int: not a length.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MrisrInputError(
            path, f"sidecar key {key!r} is not a number ({value!r})", f"set {key} to a length in mm or remove it"
        )
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise MrisrInputError(
            path, f"sidecar key {key!r} = {value!r} is not a positive length", f"set {key} to a length in mm > 0"
        )
    return number


def write_acquisition_sidecar(
    image_path: str | os.PathLike[str], thickness_mm: float, separation_mm: float, extra: dict[str, Any] | None = None
) -> Path:
    """Write the BIDS sidecar ``<stem>.json`` of ``image_path`` with ``SliceThickness`` and ``SpacingBetweenSlices``.

    An existing sidecar is updated (its other keys kept); the file is written atomically.

    Args:
        image_path: the NIfTI image the sidecar describes.
        thickness_mm: slice thickness T (FWHM of the slice profile), mm.
        separation_mm: slice separation S (centre-to-centre distance), mm.
        extra: further keys to record.

    Returns:
        The sidecar path.
    """
    path = sidecar_path(image_path)
    record = read_sidecar(path) if path.is_file() else {}
    record.update(extra or {})
    record.update(SliceThickness=float(thickness_mm), SpacingBetweenSlices=float(separation_mm))
    return write_json_atomic(record, path)
