"""Interpolation baselines: nearest, linear and cubic B-spline upsampling along the through-plane axis."""

from __future__ import annotations

from mrisr.inference import OutputGrid, interpolate_volume
from mrisr.io.geometry import SliceGeometry
from mrisr.io.nifti import Volume


class InterpolationSR:
    """Spline interpolation onto the SR grid (Dewey et al. 2024 use cubic B-splines, order 3, as the baseline).

    Args:
        order: spline order, 0 = nearest neighbour, 1 = linear, 3 = cubic B-spline.
    """

    fits_per_volume = False

    def __init__(self, order: int = 3) -> None:
        if order not in (0, 1, 3):
            raise ValueError(f"interpolation order must be 0 (nearest), 1 (linear) or 3 (cubic), got {order}")
        self.order = order

    def super_resolve(self, volume: Volume, geometry: SliceGeometry, grid: OutputGrid) -> Volume:
        """Interpolate ``volume`` onto ``grid``; ``geometry`` is unused beyond the grid it produced."""
        return interpolate_volume(volume, grid, order=self.order)

    def __repr__(self) -> str:
        return f"InterpolationSR(order={self.order})"
