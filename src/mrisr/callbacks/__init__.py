"""Thin Lightning callbacks: gather volumes, call :mod:`mrisr.eval`, write tidy rows and figures."""

from mrisr.callbacks.base import EvaluationCallback, Table
from mrisr.callbacks.image_metrics import ImageMetricsCallback
from mrisr.callbacks.montage import MontageCallback
from mrisr.callbacks.patch_metrics import PatchMetricsCallback

__all__ = ["EvaluationCallback", "ImageMetricsCallback", "MontageCallback", "PatchMetricsCallback", "Table"]
