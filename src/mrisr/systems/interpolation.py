"""Interpolation baselines: nearest, linear and cubic B-spline upsampling along the through-plane axis."""

from __future__ import annotations

from mrisr.inference import InferenceProtocol
from mrisr.inference.grid import InterpolationInferer

#: Label of each spline order in result tables.
ORDER_NAMES = {0: "nearest", 1: "linear", 3: "cubic"}


class InterpolationSR:
    """Spline interpolation onto the SR grid (Dewey et al. 2024 use cubic B-splines, order 3, as the baseline).

    Args:
        order: spline order, 0 = nearest neighbour, 1 = linear, 3 = cubic B-spline.
        method: label in result tables (default: ``nearest`` / ``linear`` / ``cubic``).
    """

    inference_protocol = InferenceProtocol.FIXED
    inference_options: tuple[str, ...] = ()

    def __init__(self, order: int = 3, method: str | None = None) -> None:
        if order not in ORDER_NAMES:
            raise ValueError(f"interpolation order must be 0 (nearest), 1 (linear) or 3 (cubic), got {order}")
        self.order = order
        self.method = method or ORDER_NAMES[order]

    def inferer(self) -> InterpolationInferer:
        """Interpolation of the input onto the output grid."""
        return InterpolationInferer(self.order)

    def __repr__(self) -> str:
        return f"InterpolationSR(order={self.order})"
