"""Spinal-cord segmentation backends behind one protocol (docs/evaluation.md §4).

Every backend is a class with ``segment(volume) -> Volume`` returning a cord mask (values in [0, 1]) on the
grid of ``volume``; the Hydra group ``conf/segmenter/`` selects one (``segmenter=classical``):

* :class:`~mrisr.segmentation.provided.ProvidedSegmenter` — masks from files (the only way to match published
  absolute values).
* :class:`~mrisr.segmentation.sct.SctSegmenter` — the Spinal Cord Toolbox command line, when it is on ``PATH``.
* :class:`~mrisr.segmentation.classical.ClassicalSegmenter` — T2w dark cord in bright CSF, no weights.

Backends are imported from their own modules so that none pulls in the optional dependencies of another.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mrisr.io.nifti import Volume

__all__ = ["CordSegmenter"]


@runtime_checkable
class CordSegmenter(Protocol):
    """Anything that segments the spinal cord of a volume on the volume's own grid."""

    #: Short backend name written to result tables (``provided``, ``sct``, ``classical``, ``unet``).
    name: str

    def segment(self, volume: Volume) -> Volume:
        """Return the cord mask of ``volume``: same shape and affine, float32 values in [0, 1]."""
        ...
