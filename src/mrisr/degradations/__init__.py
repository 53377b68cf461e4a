"""Degradations built on :mod:`mrisr.physics`: deterministic operations on volumes and slices."""

from mrisr.degradations.thick_slice import ThickSlice

__all__ = ["ThickSlice"]
