"""RRDBNet: the ESRGAN / Real-ESRGAN generator (Wang et al., ECCVW 2018; ICCVW 2021), BasicSR module layout.

PRETTIER fine-tunes the Real-ESRGAN ×4 generator (``docs/models.md §2.2``): 23 residual-in-residual dense blocks
(RRDB) of 64 features with growth 32. Each RRDB chains three residual dense blocks (RDB, five densely connected
3×3 convs); both the RDB and the RRDB add their output back scaled by 0.2. The trunk is followed by a long skip,
two nearest-neighbour ×2 upsamplings (each followed by a conv + LeakyReLU 0.2), ``conv_hr`` and ``conv_last``.
Scale 2 and 1 reuse the ×4 trunk on a pixel-unshuffled input (factor 2 or 4), as Real-ESRGAN does.

Module names (``conv_first``, ``body.N.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``,
``conv_hr``, ``conv_last``) equal BasicSR's so that Real-ESRGAN checkpoints load strictly. Intensities in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convs; the output is ``x + 0.2 · conv5([x, x1, …, x4])``.

    Args:
        num_feat: channels of the block input and output.
        num_grow_ch: channels added by each of the first four convs (growth rate).
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, padding=1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, padding=1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        # Residual scaling 0.2 keeps the deep un-normalised trunk stable (ESRGAN §3.1).
        return x + 0.2 * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, output ``x + 0.2 · rdb3(rdb2(rdb1(x)))``."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """Real-ESRGAN generator for 1-channel slices or 3-slice pseudo-RGB.

    Args:
        num_in_ch: image channels of the input (1 or 3 for MRI use; Real-ESRGAN: 3).
        num_out_ch: image channels of the output.
        scale: upsampling factor, 4, 2 or 1 (2 and 1 pixel-unshuffle the input by 2 and 4 first; other sizes are
            reflect-padded up to a multiple of 2 or 4 and the output is cropped back).
        num_feat: trunk feature channels (Real-ESRGAN x4plus: 64).
        num_block: number of RRDBs (Real-ESRGAN x4plus: 23).
        num_grow_ch: growth channels inside each RDB (32).

    Shapes:
        input ``(B, num_in_ch, H, W)`` → output ``(B, num_out_ch, H·scale, W·scale)``.
    """

    # Name of the checkpoint layout whose keys equal this module's state-dict keys.
    state_dict_layout = "basicsr-rrdbnet"

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        unshuffle = {4: 1, 2: 2, 1: 4}
        if scale not in unshuffle:
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        self.in_channels = num_in_ch
        self.out_channels = num_out_ch
        self.unshuffle_factor = unshuffle[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle_factor**2, num_feat, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, padding=1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        # Convs whose channel count follows the image channels (used to adapt RGB checkpoints).
        self.first_conv_name = "conv_first"
        self.last_conv_name = "conv_last"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        factor = self.unshuffle_factor
        pad_h, pad_w = (-height) % factor, (-width) % factor
        if pad_h or pad_w:
            # Whole-volume planes (any size) at scale 1 or 2: pad, run, crop, instead of refusing the plane.
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            out = self.forward(F.pad(x, (0, pad_w, 0, pad_h), mode=mode))
            return out[..., : height * self.scale, : width * self.scale]
        feat = F.pixel_unshuffle(x, factor) if factor > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))
