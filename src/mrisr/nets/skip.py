"""Interpolation skip: a ×s network that starts as an interpolation of its input and learns the residual.

``y = interp_s(x) + g(x)`` with ``interp_s`` a fixed same-field-of-view interpolation (output pixel ``m`` reads input
position ``(m + 0.5)/s − 0.5``, the same-FOV convention of docs/physics.md §3 used by PRETTIER's patch resizing and
volume reconstruction) and ``g`` any ×s network. Modes: ``bspline`` — cubic B-spline interpolation with border
clamping, the operator of mrisr's ``cubic`` baseline (:func:`mrisr.physics.resample.interpolation_matrix`, order 3;
exact for polynomials up to degree 3 away from the borders); ``bicubic`` — PyTorch's Keys convolution with a = −0.75
(not exact even for a linear ramp: a slight sharpening); ``bilinear``; ``nearest``. The last
convolution of ``g`` is scaled by ``last_init_scale`` at construction (0: zero weights and bias), so with 0 the
untrained module returns exactly the interpolation of its input, whatever the rest of ``g``'s initialisation.

This is the global residual learning of VDSR (Kim et al., CVPR 2016), with the interpolation taken inside the network
instead of before it (as in the ×1 EDSR refiner of mrisr), and the zero-initialised last layer that makes a residual
branch start as the identity (Goyal et al. 2017, "Accurate, large minibatch SGD", §5.1 zero-γ; Zhang et al., ICLR
2019, Fixup). With zero weights the last conv still receives gradients (its weight gradient is its input features ×
the output gradient), so every parameter is updated from the second optimiser step on.

Pretrained natural-image weights (:func:`mrisr.nets.pretrained.load_pretrained`) are loaded into the inner network
``net`` and the last convolution is scaled again afterwards, so the wrapped network keeps the pretrained features but
still starts at the interpolation (a natural-image net predicts the whole image, not the residual). A state dict of
the wrapper itself (keys ``net.…``, e.g. exported after a pretraining run) loads unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mrisr.physics.resample import apply_matrix, interpolation_matrix, same_fov_positions

__all__ = ["INTERPOLATION_MODES", "InterpolationSkip"]

#: Interpolation modes of :class:`InterpolationSkip` (``torch.nn.functional.interpolate`` names).
INTERPOLATION_MODES: tuple[str, ...] = ("bspline", "bicubic", "bilinear", "nearest")


class InterpolationSkip(nn.Module):
    """``y = interpolate(x, ×scale) + net(x)``, with ``net``'s last conv scaled by ``last_init_scale`` (module doc).

    Args:
        net: ``(B, C, h, w) → (B, C, scale·h, scale·w)`` (e.g. :class:`mrisr.nets.edsr.EDSR` with ``upscale=4``);
            input and output channels must be equal. Its attribute ``last_conv_name`` names the conv that is
            scaled (mrisr's EDSR and RRDBNet have it), else ``last_conv`` must be given.
        scale: the upsampling factor of ``net`` in both axes.
        mode: ``bspline`` (cubic B-spline, as the ``cubic`` baseline), ``bicubic`` (Keys a = −0.75),
            ``bilinear`` or ``nearest`` (module docstring).
        last_init_scale: factor applied to the last conv's weight and bias at construction and after loading
            pretrained weights into ``net``; 0 makes the module an exact interpolation at initialisation, 1 leaves
            ``net`` as it is.
        last_conv: dotted name of the conv in ``net`` to scale (default: ``net.last_conv_name``).

    Attributes:
        first_conv_name, last_conv_name: the image-channel convs, prefixed with ``net.`` (checkpoint adaptation).
        state_dict_layout: the inner network's layout.

    Shapes:
        ``(B, C, h, w) → (B, C, scale·h, scale·w)``.
    """

    def __init__(
        self,
        net: nn.Module,
        scale: int = 4,
        mode: Literal["bspline", "bicubic", "bilinear", "nearest"] = "bspline",
        last_init_scale: float = 0.0,
        last_conv: str | None = None,
    ) -> None:
        super().__init__()
        if mode not in INTERPOLATION_MODES:
            raise ValueError(f"mode must be one of {INTERPOLATION_MODES}, got {mode!r}")
        if int(scale) < 1 or int(scale) != scale:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        if not 0.0 <= float(last_init_scale):
            raise ValueError(f"last_init_scale must be ≥ 0, got {last_init_scale}")
        name = last_conv if last_conv is not None else getattr(net, "last_conv_name", None)
        if name is None:
            raise ValueError(f"{type(net).__name__} has no last_conv_name: pass last_conv=<dotted name>")
        conv = net.get_submodule(name)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"{name} of {type(net).__name__} is a {type(conv).__name__}, not a Conv2d")
        in_ch = getattr(net, "in_channels", None)
        if in_ch is not None and in_ch != conv.out_channels:
            raise ValueError(f"the skip adds the input to the output: {in_ch} input ≠ {conv.out_channels} channels out")
        self.net = net
        self.scale = int(scale)
        self.mode = mode
        self.last_init_scale = float(last_init_scale)
        self.inner_last_conv = name
        first = getattr(net, "first_conv_name", None)
        self.first_conv_name = None if first is None else f"net.{first}"
        self.last_conv_name = f"net.{name}"
        self.state_dict_layout = getattr(net, "state_dict_layout", "native")
        self.rescale_last_conv()

    @torch.no_grad()
    def rescale_last_conv(self) -> None:
        """Multiply the last conv's weight and bias by ``last_init_scale`` (0: the module is the interpolation)."""
        conv = self.net.get_submodule(self.inner_last_conv)
        conv.weight.mul_(self.last_init_scale)
        if conv.bias is not None:
            conv.bias.mul_(self.last_init_scale)

    def interpolate(self, x: torch.Tensor) -> torch.Tensor:
        """The skip branch: ``x`` ``(B, C, h, w)`` interpolated to ``(B, C, scale·h, scale·w)`` (same FOV)."""
        if self.scale == 1:
            return x
        if self.mode == "bspline":
            for axis in (-2, -1):
                n = x.shape[axis]
                positions = same_fov_positions(n, 1.0 / self.scale, self.scale * n)
                x = apply_matrix(x, interpolation_matrix(n, positions, 3), axis)
            return x
        align = None if self.mode == "nearest" else False
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=align)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.interpolate(x) + self.net(x)
