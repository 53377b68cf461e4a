"""Seams: how strongly an SR volume's detail is locked to the grid of the thick slices it came from.

An SR method that treats the centre of an input slice differently from the space between two slices leaves horizontal
bands at the slice period — visible in SR − cubic, invisible to PSNR. :func:`seam_profile` measures them without ground
truth: the through-plane gradient magnitude ``|x[m + 1] − x[m]|`` of the SR volume, averaged over the foreground of
each output plane, is binned by the **phase** of its position relative to the input slice centres (0 = halfway between
two output samples that straddle a slice centre, ±0.5 = halfway between slices), and the ratio of the largest to the
smallest bin mean is the seam ratio. A method without seams has the same detail at every phase (ratio near 1; cubic
interpolation itself is smoother between samples than at them, so it sits a little above 1); seams raise the ratio.
The phases come from the two affines (the output overlays its input in world coordinates), so any output grid works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mrisr.core.errors import MrisrInputError
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume

__all__ = ["SeamProfile", "seam_profile"]


@dataclass(frozen=True)
class SeamProfile:
    """Through-plane detail of an SR volume by phase relative to the input slice centres.

    Attributes:
        phases: mean phase of each bin (circular mean), in input slices (−0.5 … 0.5; 0 = at a slice centre).
        gradient: mean foreground through-plane gradient magnitude per bin (raw intensity per output voxel).
        counts: gradient samples per bin.
        ratio: ``max(gradient) / min(gradient)`` over the bins (1 = no seams).
    """

    phases: tuple[float, ...]
    gradient: tuple[float, ...]
    counts: tuple[int, ...]
    ratio: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready record."""
        return {
            "phases": list(self.phases),
            "gradient": list(self.gradient),
            "counts": list(self.counts),
            "ratio": self.ratio,
        }


def seam_profile(sr: Volume, lr: Volume, bins: int | None = None, foreground: float = 0.1) -> SeamProfile:
    """The seam profile of ``sr`` against its thick-slice input ``lr`` (module docstring).

    Args:
        sr: the super-resolved volume (through-plane axis finer than the input's slice separation).
        lr: the thick-slice input it was made from (same world space).
        bins: phase bins; default the number of output samples per input slice, at least 2.
        foreground: voxels above this fraction of the SR's 99th percentile count as foreground.

    Raises:
        MrisrInputError: the SR volume is not finer than the input along its slice axis, or has no foreground.
    """
    geometry = detect_slice_axis(lr)
    axis = geometry.axis
    to_lr = np.linalg.inv(lr.affine) @ sr.affine
    # The SR axis that runs along the input's slice axis (largest component of the index mapping).
    sr_axis = int(np.argmax(np.abs(to_lr[axis, :3])))
    step = abs(float(to_lr[axis, sr_axis]))  # input slices per output voxel
    if not 0 < step < 1:
        raise MrisrInputError(
            sr.path,
            f"the output is not finer than the input along its slice axis (step {step:g})",
            "pass the SR output and its own input",
        )
    n = sr.shape[sr_axis]
    index = np.zeros((4, n))
    index[sr_axis], index[3] = np.arange(n), 1.0
    # Positions (input slice index) of the midpoints between consecutive output samples, at the volume centre.
    centre = np.array([(s - 1) / 2 for s in sr.shape])
    for d in range(3):
        if d != sr_axis:
            index[d] = centre[d]
    position = (to_lr @ index)[axis]
    middle = (position[:-1] + position[1:]) / 2
    phase = middle - np.round(middle)
    data = np.moveaxis(np.asarray(sr.data, dtype=np.float64), sr_axis, -1)
    level = float(np.percentile(data, 99)) if data.size else 0.0
    mask = data > foreground * level
    gradient = np.abs(np.diff(data, axis=-1))
    both = mask[..., :-1] & mask[..., 1:]
    weight = both.reshape(-1, n - 1).sum(0)
    if weight.sum() == 0:
        raise MrisrInputError(sr.path, "the SR volume has no foreground to measure seams on", "check the volume")
    mean = (gradient * both).reshape(-1, n - 1).sum(0) / np.maximum(weight, 1)
    k = max(2, round(1 / step)) if bins is None else int(bins)
    # Bins of width 1/k centred on the phases that occur (with k output samples per slice the midpoints take k phase
    # values exactly; bin edges on them would split them at random).
    which = np.mod(np.round((phase - phase[0]) * k), k).astype(int)
    values, counts, centres = [], [], []
    for b in range(k):
        chosen = (which == b) & (weight > 0)
        counts.append(int(chosen.sum()))
        values.append(float(np.average(mean[chosen], weights=weight[chosen])) if chosen.any() else float("nan"))
        members = phase[which == b]
        centres.append(float(np.angle(np.mean(np.exp(2j * np.pi * members))) / (2 * np.pi)) if members.size else np.nan)
    order = np.argsort(centres)
    values, counts, centres = [values[i] for i in order], [counts[i] for i in order], [centres[i] for i in order]
    finite = [v for v in values if np.isfinite(v)]
    ratio = max(finite) / min(finite) if finite and min(finite) > 0 else float("inf")
    return SeamProfile(tuple(round(float(c), 6) for c in centres), tuple(values), tuple(counts), float(ratio))
