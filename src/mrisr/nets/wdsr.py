"""WDSR-B with a 1-D (row-only) pixel shuffle for through-plane SR at non-integer factors.

Yu et al., "Wide activation for efficient and accurate image super-resolution" (2018), as used by SMORE
(Zhao et al., IEEE TMI 2021; Remedios et al., SASHIMI 2023) and ECLARE (arXiv 2503.11787); layout per
docs/models.md §1.5.
All convolutions run at LR resolution: rows are upsampled only at the end, by a 1-D pixel shuffle of ⌈s⌉ followed by
a same-FOV cubic B-spline resize of the rows to round(s·H) (the ECLARE scheme for non-integer s). The skip branch is
the same-FOV cubic B-spline upsampling of the input (docs/physics.md §3), so the untrained network is cubic
interpolation.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from mrisr.physics.resample import resample_axis


def pixel_shuffle_1d(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Rows-only sub-pixel shuffle ``(B, C·r, H, W) → (B, C, H·r, W)``: ``out[b, c, h·r + i] = in[b, c·r + i, h]``."""
    b, cr, h, w = x.shape
    if cr % factor:
        raise ValueError(f"channels {cr} are not divisible by the shuffle factor {factor}")
    return x.reshape(b, cr // factor, factor, h, w).permute(0, 1, 3, 2, 4).reshape(b, cr // factor, h * factor, w)


def pixel_unshuffle_1d(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Inverse of :func:`pixel_shuffle_1d`: ``(B, C, H·r, W) → (B, C·r, H, W)``."""
    b, c, hr, w = x.shape
    if hr % factor:
        raise ValueError(f"rows {hr} are not divisible by the shuffle factor {factor}")
    return x.reshape(b, c, hr // factor, factor, w).permute(0, 1, 3, 2, 4).reshape(b, c * factor, hr // factor, w)


def upsample_rows(x: torch.Tensor, scale: float, n_out: int | None = None) -> torch.Tensor:
    """Same-FOV cubic B-spline resampling of the rows of ``(B, C, H, W)`` to ``round(scale·H)`` rows, in float32."""
    n_out = max(1, round(scale * x.shape[-2])) if n_out is None else n_out
    with torch.autocast(device_type=x.device.type, enabled=False):
        return resample_axis(x.float(), axis=-2, step=1.0 / scale, n_out=n_out, order=3)


class WDSRBlock(nn.Module):
    """Wide-activation residual block: x + Conv3×3(Conv1×1(ReLU(Conv1×1(x)))), C → e·C → ⌊r·C⌋ → C."""

    def __init__(self, n_feats: int, expansion: int = 4, low_rank_ratio: float = 0.8, weight_norm: bool = False):
        super().__init__()
        wide, low = n_feats * expansion, max(1, int(n_feats * low_rank_ratio))
        convs = [nn.Conv2d(n_feats, wide, 1), nn.Conv2d(wide, low, 1), nn.Conv2d(low, n_feats, 3, padding=1)]
        if weight_norm:
            convs = [apply_weight_norm(c) for c in convs]
        self.body = nn.Sequential(convs[0], nn.ReLU(inplace=True), convs[1], convs[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class WDSR(nn.Module):
    """WDSR-B for through-plane SR of 2-D planes whose rows are the thick-slice axis.

    Args:
        scale: SR factor s = S/Δ along rows (non-integer allowed).
        n_blocks: residual blocks (SMORE v4 and ECLARE: 16).
        n_feats: feature channels (SMORE v4: 32; ECLARE: 256).
        expansion: wide-activation expansion (4).
        low_rank_ratio: low-rank bottleneck ratio (0.8).
        weight_norm: weight normalisation on the convolutions (SMORE v4).
        clip_output: clamp the output to [0, 1] (ECLARE; inputs are min–max normalised).
        in_channels: input/output channels.
        shuffle: rows per LR row made by the 1-D pixel shuffle (``None`` = ⌈s⌉). A fixed value makes the weights
            independent of s, so one set of weights serves every factor (a prior pretrained over many factors).

    Shapes:
        ``(B, C, H, W) → (B, C, round(s·H), W)``.
    """

    def __init__(
        self,
        scale: float,
        n_blocks: int = 16,
        n_feats: int = 32,
        expansion: int = 4,
        low_rank_ratio: float = 0.8,
        weight_norm: bool = False,
        clip_output: bool = False,
        in_channels: int = 1,
        shuffle: int | None = None,
    ) -> None:
        super().__init__()
        if not scale >= 1.0:
            raise ValueError(f"WDSR scale must be ≥ 1 (an upsampling factor), got {scale}")
        self.scale = float(scale)
        if shuffle is not None and int(shuffle) < 1:
            raise ValueError(f"WDSR shuffle must be ≥ 1 or None, got {shuffle}")
        self.shuffle = max(1, math.ceil(self.scale - 1e-9)) if shuffle is None else int(shuffle)
        self.clip_output = clip_output
        head = nn.Conv2d(in_channels, n_feats, 3, padding=1)
        tail = nn.Conv2d(n_feats, in_channels * self.shuffle, 3, padding=1)
        if weight_norm:
            head, tail = apply_weight_norm(head), apply_weight_norm(tail)
        self.head = head
        self.body = nn.Sequential(
            *[WDSRBlock(n_feats, expansion, low_rank_ratio, weight_norm) for _ in range(n_blocks)]
        )
        self.tail = tail
        if not weight_norm:
            # Start from cubic interpolation: the residual branch outputs zero until it has learned something.
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def output_rows(self, rows: int, scale: float | None = None) -> int:
        """Output length along rows for ``rows`` input rows: round(s·rows) (s = ``scale`` or the constructor's)."""
        return max(1, round((self.scale if scale is None else float(scale)) * rows))

    def forward(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """``(B, C, H, W) → (B, C, round(s·H), W)``; ``scale`` overrides s for this call (pretraining over many
        factors with a fixed ``shuffle``)."""
        scale = self.scale if scale is None else float(scale)
        n_out = self.output_rows(x.shape[-2], scale)
        skip = upsample_rows(x, scale, n_out)
        residual = pixel_shuffle_1d(self.tail(self.body(self.head(x))), self.shuffle)
        if residual.shape[-2] != n_out:
            residual = upsample_rows(residual, n_out / residual.shape[-2], n_out)
        out = skip + residual.float()
        return out.clamp(0.0, 1.0) if self.clip_output else out
