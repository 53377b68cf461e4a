"""Thin Lightning callbacks: gather volumes, call :mod:`mrisr.eval`, write tidy rows and figures."""

from mrisr.callbacks.base import EvaluationCallback, Table
from mrisr.callbacks.image_metrics import ImageMetricsCallback
from mrisr.callbacks.montage import MontageCallback

__all__ = ["EvaluationCallback", "ImageMetricsCallback", "MontageCallback", "Table"]
