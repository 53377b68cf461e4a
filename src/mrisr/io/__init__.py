"""NIfTI input/output, header validation and slice-geometry detection.

Public API:

* :class:`Volume`, :func:`load_volume`, :func:`volume_from_image`, :func:`save_volume`,
  :func:`same_file` — validated NIfTI reading and atomic writing.
* :class:`SliceGeometry`, :func:`detect_slice_axis` — through-plane axis and factor (docs/physics.md §4).

:mod:`mrisr.io.bids` (BIDS names and derivatives layout) is imported on its own.
"""

from __future__ import annotations

from mrisr.io.geometry import SliceGeometry, detect_slice_axis
from mrisr.io.nifti import Volume, load_volume, same_file, save_volume, volume_from_image

__all__ = [
    "SliceGeometry",
    "Volume",
    "detect_slice_axis",
    "load_volume",
    "same_file",
    "save_volume",
    "volume_from_image",
]
