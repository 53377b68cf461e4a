"""EDSR: enhanced deep residual network for single-image super-resolution (Lim et al., CVPRW 2017).

Two uses in mrisr:
- ``upscale=1``: refines a slice already interpolated onto the target grid (the through-plane factor of thick-slice
  MRI is rarely an integer, so the resampling is done by the physics code and the network learns the residual);
- ``upscale`` ∈ {2, 3, 4, 8}: pixel-shuffle layout of PRETTIER-style fine-tuning (Giraldo et al. 2024).
The network holds no intensity normalisation: inputs are already scaled by the data pipeline.
"""

from __future__ import annotations

import math

import torch
from torch import nn


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
    """Sub-pixel convolution upsampler (Shi et al. 2016) for integer factors 2^k or 3."""

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

    Shapes:
        input ``(B, in_channels, H, W)`` → output ``(B, out_channels, H·upscale, W·upscale)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        n_feats: int = 64,
        n_resblocks: int = 16,
        res_scale: float = 1.0,
        upscale: int = 1,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if upscale == 1 and in_channels != out_channels:
            raise ValueError("upscale=1 adds the input to the output: in_channels must equal out_channels")
        pad = kernel_size // 2
        self.upscale = upscale
        self.head = nn.Conv2d(in_channels, n_feats, kernel_size, padding=pad)
        self.body = nn.Sequential(
            *[ResBlock(n_feats, kernel_size, res_scale) for _ in range(n_resblocks)],
            nn.Conv2d(n_feats, n_feats, kernel_size, padding=pad),
        )
        tail: list[nn.Module] = [] if upscale == 1 else [Upsampler(upscale, n_feats)]
        tail.append(nn.Conv2d(n_feats, out_channels, kernel_size, padding=pad))
        self.tail = nn.Sequential(*tail)
        if upscale == 1:
            # Start as the identity map: the untrained network returns its (interpolated) input.
            nn.init.zeros_(self.tail[-1].weight)
            nn.init.zeros_(self.tail[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        features = features + self.body(features)
        out = self.tail(features)
        return out + x if self.upscale == 1 else out
