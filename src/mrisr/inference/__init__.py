"""Inference: how every model turns a thick-slice volume into a volume on the isotropic grid.

* :mod:`~mrisr.inference.grid` — the output grid and the one rule that puts data on it with an exact affine;
* :mod:`~mrisr.inference.options` — the inference protocol of a model and the options that may change at inference;
* :mod:`~mrisr.inference.acquisition` — slice thickness and profile of an input, each with its source;
* inferers, each written once: :class:`~mrisr.inference.planes.PlaneInferer` (planes containing the thick axis, both
  orientations averaged), :class:`~mrisr.inference.prettier.ThreeSliceInferer` (PRETTIER's merge of adjacent-slice
  windows) and :class:`~mrisr.inference.diffusion.DiffusionPlaneInferer` (one noise map per volume, draws, passes);
* :func:`~mrisr.inference.run.run_on_volume` — (model, volume, settings) → :class:`InferenceResult`.

Systems declare their inferer; nothing here imports a system.
"""

from __future__ import annotations

from mrisr.inference.grid import OutputGrid, interpolate_volume, output_grid, volume_on_grid
from mrisr.inference.options import InferenceProtocol, VolumeSuperResolver, set_inference_options
from mrisr.inference.result import FittedModel, InferenceOutput, InferenceResult, Inferer
from mrisr.inference.run import MIN_SLICES, InferenceSettings, run_on_volume

__all__ = [
    "MIN_SLICES",
    "FittedModel",
    "InferenceOutput",
    "InferenceProtocol",
    "InferenceResult",
    "InferenceSettings",
    "Inferer",
    "OutputGrid",
    "VolumeSuperResolver",
    "interpolate_volume",
    "output_grid",
    "run_on_volume",
    "set_inference_options",
    "volume_on_grid",
]
