"""EDSR: enhanced deep residual network for single-image super-resolution (Lim et al., CVPRW 2017).

Two uses in mrisr:
- ``upscale=1``: refines a slice already interpolated onto the target grid (the through-plane factor of thick-slice
  MRI is rarely an integer, so the resampling is done by the physics code and the network learns the residual);
- ``upscale`` ∈ {2, 3, 4, 8}: pixel-shuffle layout of PRETTIER-style fine-tuning (Giraldo et al. 2024,
  ``docs/models.md §2.1``). EDSR baseline is 16 blocks × 64 features (``res_scale`` 1); EDSR-L is 32 blocks × 256
  features with ``res_scale`` 0.1.

Module names follow EDSR-PyTorch (``sub_mean``, ``add_mean``, ``head.0``, ``body.N.body.{0,2}``, ``body.<n_resblocks>``,
``tail.0.{0,2}`` for ×4, ``tail.1``), so its checkpoints load with ``strict=True`` (see :mod:`mrisr.nets.pretrained`).
The network holds no intensity normalisation: inputs are already scaled by the data pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

# DIV2K RGB mean of EDSR-PyTorch's MeanShift (intensity range [0, 1]; multiplied by ``mean_shift_range``).
DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Conv2d):
    """Frozen 1×1 convolution that subtracts (``sign=-1``) or adds (``sign=+1``) a per-channel mean.

    Kept only so that EDSR-PyTorch state dicts (which store it as ``weight`` (C, C, 1, 1) and ``bias`` (C,)) load
    strictly; its parameters never receive gradients.

    Args:
        mean: per-channel mean in [0, 1] units, one value per channel.
        value_range: intensity range the mean is scaled to (EDSR-PyTorch: 255).
        sign: -1 to subtract the mean, +1 to add it back.
    """

    def __init__(self, mean: Sequence[float], value_range: float = 255.0, sign: int = -1) -> None:
        channels = len(mean)
        super().__init__(channels, channels, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
            self.bias.copy_(sign * value_range * torch.tensor(mean, dtype=torch.float32))
        self.requires_grad_(False)


class ResBlock(nn.Module):
    """conv → ReLU → conv, scaled and added to the input (no batch norm, as in EDSR)."""

    def __init__(self, n_feats: int, kernel_size: int = 3, res_scale: float = 1.0) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, kernel_size, padding=pad),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_feats, n_feats, kernel_size, padding=pad),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class Upsampler(nn.Sequential):
    """Sub-pixel convolution upsampler (Shi et al. 2016) for integer factors 2^k or 3.

    Layers alternate conv (index 0, 2, …) and PixelShuffle (index 1, 3, …), as in EDSR-PyTorch.
    """

    def __init__(self, upscale: int, n_feats: int) -> None:
        layers: list[nn.Module] = []
        if upscale & (upscale - 1) == 0:
            for _ in range(int(math.log2(upscale))):
                layers += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2)]
        elif upscale == 3:
            layers += [nn.Conv2d(n_feats, 9 * n_feats, 3, padding=1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"EDSR upscale must be 1, 3 or a power of two, got {upscale}")
        super().__init__(*layers)


class EDSR(nn.Module):
    """EDSR for single-channel (MRI) or pseudo-RGB slices.

    Args:
        in_channels: input channels (1 for a slice, 3 for PRETTIER's 3-slice pseudo-RGB).
        out_channels: output channels.
        n_feats: feature channels of every residual block (EDSR: 64; EDSR-L: 256).
        n_resblocks: residual blocks (EDSR: 16; EDSR-L: 32).
        res_scale: residual scaling inside blocks (EDSR-L uses 0.1 for stability).
        upscale: integer upsampling factor; 1 means the input is already on the target grid and the network
            predicts a correction added to it (global residual).
        kernel_size: convolution kernel size (padding ``kernel_size // 2``).
        mean_shift: build the frozen ``sub_mean`` / ``add_mean`` 1×1 convs of EDSR-PyTorch (needed only to load its
            checkpoints strictly; 2 × (C² + C) parameters).
        apply_mean_shift: apply them in ``forward``. PRETTIER skips them (inputs are MRI, not DIV2K RGB), hence the
            default ``False``; requires ``mean_shift=True``.
        mean_shift_mean: per-channel mean of the MeanShift in [0, 1] units; ``None`` uses the DIV2K RGB mean for
            3 channels and its average for any other channel count (overwritten anyway by a loaded checkpoint).
        mean_shift_range: intensity range of the MeanShift (EDSR-PyTorch trains on 0–255).

    Shapes:
        input ``(B, in_channels, H, W)`` → output ``(B, out_channels, H·upscale, W·upscale)``.
    """

    # Name of the checkpoint layout whose keys equal this module's state-dict keys.
    state_dict_layout = "edsr-pytorch"

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        n_feats: int = 64,
        n_resblocks: int = 16,
        res_scale: float = 1.0,
        upscale: int = 1,
        kernel_size: int = 3,
        mean_shift: bool = False,
        apply_mean_shift: bool = False,
        mean_shift_mean: Sequence[float] | None = None,
        mean_shift_range: float = 255.0,
    ) -> None:
        super().__init__()
        if upscale == 1 and in_channels != out_channels:
            raise ValueError("upscale=1 adds the input to the output: in_channels must equal out_channels")
        if apply_mean_shift and not mean_shift:
            raise ValueError("apply_mean_shift=True needs mean_shift=True (the MeanShift convs must exist)")
        pad = kernel_size // 2
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.upscale = upscale
        self.apply_mean_shift = apply_mean_shift
        if mean_shift:
            # Registered first, as in EDSR-PyTorch, so state-dict key order matches its checkpoints.
            self.sub_mean = MeanShift(_mean_for(in_channels, mean_shift_mean), mean_shift_range, sign=-1)
            self.add_mean = MeanShift(_mean_for(out_channels, mean_shift_mean), mean_shift_range, sign=+1)
        else:
            self.sub_mean = None
            self.add_mean = None
        self.head = nn.Sequential(nn.Conv2d(in_channels, n_feats, kernel_size, padding=pad))
        self.body = nn.Sequential(
            *[ResBlock(n_feats, kernel_size, res_scale) for _ in range(n_resblocks)],
            nn.Conv2d(n_feats, n_feats, kernel_size, padding=pad),
        )
        tail: list[nn.Module] = [] if upscale == 1 else [Upsampler(upscale, n_feats)]
        tail.append(nn.Conv2d(n_feats, out_channels, kernel_size, padding=pad))
        self.tail = nn.Sequential(*tail)
        # Names of the convs whose channel count equals the image channels (used to adapt RGB checkpoints).
        self.first_conv_name = "head.0"
        self.last_conv_name = f"tail.{len(self.tail) - 1}"
        if upscale == 1:
            # Start as the identity map: the untrained network returns its (interpolated) input.
            nn.init.zeros_(self.tail[-1].weight)
            nn.init.zeros_(self.tail[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.apply_mean_shift:
            x = self.sub_mean(x)
        features = self.head(x)
        features = features + self.body(features)
        out = self.tail(features)
        if self.upscale == 1:
            out = out + x
        if self.apply_mean_shift:
            out = self.add_mean(out)
        return out


def _mean_for(channels: int, mean: Sequence[float] | None) -> tuple[float, ...]:
    """Per-channel MeanShift mean: explicit values, the DIV2K RGB mean (3 channels) or its average (others)."""
    if mean is not None:
        if len(mean) != channels:
            raise ValueError(f"mean_shift_mean has {len(mean)} values for {channels} channels")
        return tuple(float(m) for m in mean)
    if channels == 3:
        return DIV2K_RGB_MEAN
    return (sum(DIV2K_RGB_MEAN) / 3.0,) * channels
