"""Concatenation-conditioned denoising U-Net for conditional diffusion super-resolution (Graf et al., MIDL 2024).

Graf et al. condition a guided-diffusion U-Net on the interpolated low-resolution slice by stacking it with the noisy
high-resolution slice along the channel axis (the "Palette" style of conditioning). The same network is expressed here
with ``diffusers.UNet2DModel`` (docs/models.md §3.1): its default arguments are the Graf-equivalent configuration,
9,834,753 parameters with diffusers 0.42.1.

The net only maps ``(x_t, condition, timesteps)`` to the model output (ε, v or x̂₀, fixed by the training objective):
schedulers and sampling loops live in :mod:`mrisr.diffusion`.

Shapes: ``x_t`` (B, C_x, H, W), ``condition`` (B, C_c, H, W) with C_x + C_c = ``in_channels`` (Graf: 1 + 1; the
residual formulation passes a (B, 0, H, W) condition to a one-channel net), output (B, ``out_channels``, H, W). H and
W must be multiples of 2^(levels − 1) (8 for the four-level Graf net) because every level but the last halves the
grid; pad slices (reflect) before calling.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from mrisr.core.errors import MrisrInputError

__all__ = ["GRAF_PARAMETER_COUNT", "TINY_UNET", "ConditionalUNet"]

#: Parameters of the default (Graf-equivalent) configuration with diffusers 0.42.1 (docs/models.md §3.1).
GRAF_PARAMETER_COUNT = 9_834_753

#: A two-level net of 49,665 parameters for fast CPU tests (H, W multiples of 2).
TINY_UNET: dict[str, object] = {
    "sample_size": 16,
    "block_out_channels": (8, 16),
    "norm_num_groups": 4,
    "attention_head_dim": 8,
    "time_embedding_dim": 32,
    "layers_per_block": 1,
    "dropout": 0.0,
}


class ConditionalUNet(nn.Module):
    """``UNet2DModel`` that takes the condition as extra input channels.

    Args:
        sample_size: nominal training crop (pixels); informative only, any size divisible by 2^(levels − 1) works.
        in_channels: channels after concatenation, noisy image + condition (Graf: 2).
        out_channels: predicted channels (Graf: 1).
        block_out_channels: feature channels per level; ``len`` = number of levels.
        layers_per_block: ResBlocks per encoder level (the decoder gets one more, as in diffusers).
        down_block_type: diffusers block used at every encoder level ("ResnetDownsampleBlock2D" resamples inside a
            ResBlock, as the guided-diffusion U-Net does).
        up_block_type: diffusers block used at every decoder level.
        mid_block_type: bottleneck block ("UNetMidBlock2D": ResBlock → attention → ResBlock).
        add_attention: self-attention in the mid block (20 × 20 tokens for a 160-pixel input).
        attention_head_dim: channels per attention head (128 → one head at 128 channels).
        norm_num_groups: GroupNorm groups; must divide every entry of ``block_out_channels``.
        resnet_time_scale_shift: "scale_shift" applies GN(h)·(1 + scale) + shift after the second GroupNorm.
        time_embedding_dim: width of the timestep MLP (sinusoid of ``block_out_channels[0]`` → Linear → SiLU → Linear).
        flip_sin_to_cos: cosine first in the sinusoidal embedding (guided diffusion convention).
        freq_shift: frequency shift of the sinusoidal embedding.
        dropout: dropout inside every ResBlock (active in train mode only).
        act_fn: activation.
        zero_init: zero the second convolution of every ResBlock (resampling ones included), the output projection of
            the mid-block attention and the output convolution, as the guided-diffusion U-Net of the reference
            initialises them; each residual branch then starts as the identity and the initial output is exactly 0.
            Off by default (diffusers initialisation); the parameter count is unchanged.

    Raises:
        MrisrInputError: ``norm_num_groups`` does not divide the channel widths.
    """

    def __init__(
        self,
        sample_size: int = 160,
        in_channels: int = 2,
        out_channels: int = 1,
        block_out_channels: tuple[int, ...] = (64, 64, 128, 128),
        layers_per_block: int = 2,
        down_block_type: str = "ResnetDownsampleBlock2D",
        up_block_type: str = "ResnetUpsampleBlock2D",
        mid_block_type: str = "UNetMidBlock2D",
        add_attention: bool = True,
        attention_head_dim: int = 128,
        norm_num_groups: int = 32,
        resnet_time_scale_shift: str = "scale_shift",
        time_embedding_dim: int = 512,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        dropout: float = 0.1,
        act_fn: str = "silu",
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        block_out_channels = tuple(int(c) for c in block_out_channels)
        bad = [c for c in block_out_channels if c % norm_num_groups]
        if bad:
            raise MrisrInputError(
                None,
                f"norm_num_groups={norm_num_groups} does not divide the channel widths {bad}",
                "choose block_out_channels that are multiples of norm_num_groups",
            )
        levels = len(block_out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        #: H and W must be multiples of this (every level but the last halves the grid).
        self.size_multiple = 2 ** (levels - 1)
        self.unet = UNet2DModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            down_block_types=(down_block_type,) * levels,
            up_block_types=(up_block_type,) * levels,
            mid_block_type=mid_block_type,
            add_attention=add_attention,
            attention_head_dim=attention_head_dim,
            norm_num_groups=norm_num_groups,
            resnet_time_scale_shift=resnet_time_scale_shift,
            time_embedding_dim=time_embedding_dim,
            flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift,
            dropout=dropout,
            act_fn=act_fn,
        )
        if zero_init:
            self.zero_initialise()

    @torch.no_grad()
    def zero_initialise(self) -> None:
        """Zero the last layer of every residual branch and the output convolution (guided-diffusion init)."""
        layers: list[nn.Module] = [m.conv2 for m in self.unet.modules() if isinstance(m, ResnetBlock2D)]
        if self.unet.mid_block is not None:
            layers += [attn.to_out[0] for attn in self.unet.mid_block.attentions if attn is not None]
        layers.append(self.unet.conv_out)
        for layer in layers:
            nn.init.zeros_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def _check(self, x_t: torch.Tensor, condition: torch.Tensor) -> None:
        if x_t.ndim != 4 or condition.ndim != 4:
            raise MrisrInputError(
                None,
                f"x_t {tuple(x_t.shape)} and condition {tuple(condition.shape)} must both be (B, C, H, W)",
                "add the channel axis (a slice is (B, 1, H, W))",
            )
        if x_t.shape[0] != condition.shape[0] or x_t.shape[2:] != condition.shape[2:]:
            raise MrisrInputError(
                None,
                f"condition {tuple(condition.shape)} does not match x_t {tuple(x_t.shape)} in batch or H, W",
                "give one condition slice per noisy slice on the same grid",
            )
        if x_t.shape[1] + condition.shape[1] != self.in_channels:
            raise MrisrInputError(
                None,
                f"x_t has {x_t.shape[1]} and condition {condition.shape[1]} channels, the net expects "
                f"{self.in_channels} in total",
                "set in_channels to the sum of both channel counts",
            )
        height, width = x_t.shape[2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise MrisrInputError(
                None,
                f"slice size {height}×{width} is not a multiple of {self.size_multiple}",
                f"pad H and W (reflect) to multiples of {self.size_multiple}",
            )

    def forward(
        self, x_t: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor | float | int
    ) -> torch.Tensor:
        """Model output for a noisy batch.

        Args:
            x_t: noisy image, (B, C_x, H, W).
            condition: interpolated LR image on the same grid, (B, C_c, H, W), in [−1, 1].
            timesteps: diffusion time per sample, (B,) or a scalar; integers 0…999 for DDPM training, floats are
                accepted (the residual formulation uses t·999).

        Returns:
            (B, out_channels, H, W) prediction (ε, v or x̂₀ depending on the objective it was trained with).
        """
        self._check(x_t, condition)
        # diffusers would truncate a Python float to int64; keep fractional times (residual formulation) as floats.
        timesteps = torch.as_tensor(timesteps, device=x_t.device)
        if timesteps.ndim > 1 or (timesteps.ndim == 1 and timesteps.shape[0] != x_t.shape[0]):
            raise MrisrInputError(
                None,
                f"timesteps {tuple(timesteps.shape)} must be a scalar or (B,) = ({x_t.shape[0]},)",
                "pass one timestep per sample",
            )
        return self.unet(torch.cat([x_t, condition.to(x_t.dtype)], dim=1), timesteps).sample
