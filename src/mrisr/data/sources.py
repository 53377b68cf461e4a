"""Volume sources: NIfTI paths and the MNI152 template embedded in nilearn (the default data, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrisr.io.nifti import Volume, load_volume, volume_from_image

MNI152 = "mni152"


def load_source(source: str) -> Volume:
    """Load a volume from ``source``: a NIfTI path, or ``"mni152"`` for nilearn's MNI ICBM152 2009 T1 at 1 mm.

    The template is read from the file shipped inside the nilearn package (no network access).
    """
    if source == MNI152:
        from nilearn.datasets import load_mni152_template

        img = load_mni152_template(resolution=1)
        img.header.set_xyzt_units("mm")  # the template is defined in mm; its header leaves the unit unset
        volume = volume_from_image(img)
        volume.data = np.clip(volume.data, 0, None)
        return volume
    return load_volume(Path(source))


def source_name(source: str) -> str:
    """Short subject-like name of a source: ``mni152`` or the path without NIfTI suffixes, parent folder included."""
    if source == MNI152:
        return MNI152
    path = Path(source)
    stem = path.name.removesuffix(".gz").removesuffix(".nii")
    return f"{path.parent.name}/{stem}" if path.parent.name else stem
