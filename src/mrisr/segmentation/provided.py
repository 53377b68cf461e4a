"""Cord masks from files (docs/evaluation.md §4 backend 1): manual or externally computed segmentations."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrisr.core.errors import MrisrInputError
from mrisr.io.nifti import Volume, load_volume
from mrisr.io.regrid import resample_to_reference

__all__ = ["ProvidedSegmenter", "find_mask_file"]

_LOG = logging.getLogger(__name__)

_NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _stem(path: Path) -> tuple[str, str]:
    name = path.name
    for suffix in _NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return path.stem, path.suffix


def find_mask_file(image_path: Path, suffixes: Sequence[str]) -> Path | None:
    """The first existing ``<stem><suffix>.nii[.gz]`` next to ``image_path``, or ``None``.

    Args:
        image_path: The image file.
        suffixes: Candidate stem suffixes, in order (e.g. ``"_seg-manual"``, ``"_manual_segmentation"``).

    Returns:
        The mask path, or ``None`` when no candidate exists.
    """
    stem, _ = _stem(image_path)
    for suffix in suffixes:
        for ext in _NIFTI_SUFFIXES:
            candidate = image_path.with_name(f"{stem}{suffix}{ext}")
            if candidate.is_file():
                return candidate
    return None


class ProvidedSegmenter:
    """Reads the cord mask of an image from a file.

    The mask is ``path`` when given, otherwise the first ``<image stem><suffix>.nii[.gz]`` beside the image
    (the image must have been loaded from a file). A mask on another grid is resampled onto the image grid by
    world coordinates with nearest neighbour (logged); values are clipped to [0, 1].

    Args:
        path: Mask file; ``None`` = look beside the image.
        suffixes: Stem suffixes tried beside the image, in order.
    """

    name = "provided"

    def __init__(
        self,
        path: str | None = None,
        suffixes: Sequence[str] = ("_seg-manual", "_seg", "_manual_segmentation", "_seg_manual"),
    ) -> None:
        self.path = None if path is None else Path(path)
        self.suffixes = tuple(suffixes)

    def mask_path(self, volume: Volume) -> Path:
        """The mask file used for ``volume``.

        Raises:
            MrisrInputError: No ``path`` and no mask file beside the image.
        """
        if self.path is not None:
            return self.path
        if volume.path is None:
            raise MrisrInputError(
                None,
                "the provided segmenter needs a mask file, and this in-memory image has no file to look beside",
                "pass segmenter.path=MASK.nii.gz",
            )
        found = find_mask_file(volume.path, self.suffixes)
        if found is None:
            stem, ext = _stem(volume.path)
            tried = ", ".join(f"{stem}{s}{ext}" for s in self.suffixes)
            raise MrisrInputError(
                volume.path, f"no cord mask beside the image (tried {tried})", "pass segmenter.path=MASK.nii.gz"
            )
        return found

    def segment(self, volume: Volume) -> Volume:
        """Load the mask of ``volume`` on its grid (float32 in [0, 1]).

        Raises:
            MrisrInputError: Missing/invalid mask file, or a mask that does not overlap the image.
        """
        path = self.mask_path(volume)
        mask = load_volume(path, allow_constant=True)
        if mask.shape != volume.shape or not np.allclose(mask.affine, volume.affine, atol=1e-4):
            _LOG.info("%s: mask grid differs from the image grid; resampling (nearest neighbour)", path)
            data = resample_to_reference(mask, volume, order=0)
        else:
            data = mask.data
        data = np.clip(np.asarray(data, dtype=np.float32), 0.0, 1.0)
        if not np.any(data > 0):
            raise MrisrInputError(path, "the cord mask is empty on the image grid", "check that it matches the image")
        return Volume(data=data, affine=volume.affine, header=None, path=None)
