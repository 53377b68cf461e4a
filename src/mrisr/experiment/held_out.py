"""Held-out volumes of a learning curve: a 1 mm HR volume, its simulated thick-slice LR and its scoring mask, and
the score of any model on it (masked PSNR / SSIM of :func:`mrisr.eval.prettier.masked_scores`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mrisr.core.errors import MrisrInputError
from mrisr.eval.prettier import brain_mask, masked_scores
from mrisr.io.nifti import Volume

__all__ = ["HeldOutCase", "held_out_case", "score_held_out"]


@dataclass
class HeldOutCase:
    """A held-out HR volume, its simulated thick-slice LR and its mask (one point of a learning curve).

    Attributes:
        name: volume name (e.g. ``flair``).
        hr: HR volume cropped (from index 0) to a multiple of the factor along ``axis``.
        lr: the simulated acquisition of ``hr`` on its own grid.
        mask: boolean ``hr``-shaped scoring mask (:func:`brain_mask`).
        axis: through-plane axis.
        mask_rule: the rule of ``mask``.
    """

    name: str
    hr: Volume
    lr: Volume
    mask: np.ndarray
    axis: int
    mask_rule: str


def held_out_case(name: str, hr: Volume, degradation: Any, mask_rule: str, seed: int = 0) -> HeldOutCase:
    """Crop ``hr`` to a multiple of the factor along ``degradation.axis``, simulate its LR, build the mask.

    Args:
        name: volume name.
        hr: HR volume whose spacing along the axis divides the degradation's separation (e.g. 1 mm for 6 mm).
        degradation: a fixed thick-slice acquisition (:class:`~mrisr.degradations.stack.DegradationStack` with a
            ``separation`` and an ``axis``), e.g. the ``prettier`` preset.
        mask_rule: :func:`brain_mask` rule.
        seed: seed of the degradation (only noise steps use it).

    Raises:
        MrisrInputError: the separation is not an integer multiple of the HR spacing.
    """
    from mrisr.data.pairs import crop_volume

    axis = int(degradation.axis)
    ratio = float(degradation.separation) / float(hr.zooms[axis])
    factor = round(ratio)
    if factor < 1 or abs(ratio - factor) > 1e-3:
        raise MrisrInputError(
            hr.path, f"separation / spacing = {ratio:.4g} is not an integer", "resample the HR volume first"
        )
    hr = crop_volume(hr, axis, 0, (hr.shape[axis] // factor) * factor)
    return HeldOutCase(name, hr, degradation(hr, seed=seed), brain_mask(hr.data, mask_rule), axis, mask_rule)


def score_held_out(model: Any, case: HeldOutCase) -> dict[str, float]:
    """Super-resolve ``case.lr`` with ``model`` (any model of :func:`mrisr.api.super_resolve`) and score it on
    ``case.hr``'s grid (:func:`masked_scores`; the output is resampled by cubic B-spline only if its grid differs)."""
    from mrisr.api import super_resolve
    from mrisr.io.regrid import on_grid

    image = super_resolve(case.lr.to_nifti(), model=model, axis=case.axis)
    sr = Volume(data=np.asarray(image.dataobj, dtype=np.float32), affine=image.affine)
    return masked_scores(on_grid(sr, case.hr, order=3), case.hr.data, case.mask)
