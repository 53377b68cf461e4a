"""U-Net discriminator with spectral normalisation (Real-ESRGAN, Wang et al., ICCVW 2021; ``docs/models.md §2.3``).

A U-Net discriminator (Schönfeld et al., CVPR 2020) returns one realness logit per pixel instead of one per image,
so the generator gets local feedback on textures and edges. Layout, as in Real-ESRGAN:

- ``conv0`` 3×3 (no spectral norm), then three 4×4 stride-2 convs (F → 2F → 4F → 8F);
- three decoder stages [bilinear ×2, 3×3 conv] (8F → 4F → 2F → F) with additive skips from the encoder;
- two 3×3 convs (F → F) and a final 3×3 conv to one channel.

All convs except the first and last are spectrally normalised (Miyato et al., ICLR 2018) with the legacy
``torch.nn.utils.spectral_norm`` hook, whose state-dict keys (``weight_orig``, ``weight_u``, ``weight_v``) equal those
of Real-ESRGAN discriminator checkpoints; spectrally normalised convs have no bias. LeakyReLU slope 0.2.
H and W must be divisible by 8 (three stride-2 stages).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class UNetDiscriminatorSN(nn.Module):
    """Per-pixel U-Net discriminator.

    Args:
        num_in_ch: image channels (1 for a slice, 3 for 3-slice pseudo-RGB; Real-ESRGAN: 3).
        num_feat: base feature channels F (Real-ESRGAN: 64).
        skip_connection: add the encoder features to the decoder stages (Real-ESRGAN: True).

    Shapes:
        input ``(B, num_in_ch, H, W)`` with H, W divisible by 8 → logits ``(B, 1, H, W)``.
    """

    # Name of the checkpoint layout whose keys equal this module's state-dict keys.
    state_dict_layout = "real-esrgan-unet-discriminator-sn"

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        self.in_channels = num_in_ch
        self.conv0 = nn.Conv2d(num_in_ch, num_feat, 3, padding=1)
        # Encoder: 4×4 stride-2 convs halve H and W.
        self.conv1 = spectral_norm(nn.Conv2d(num_feat, num_feat * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(num_feat * 2, num_feat * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(num_feat * 4, num_feat * 8, 4, 2, 1, bias=False))
        # Decoder: bilinear ×2 then a 3×3 conv.
        self.conv4 = spectral_norm(nn.Conv2d(num_feat * 8, num_feat * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(num_feat * 4, num_feat * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(num_feat, 1, 3, padding=1)
        self.first_conv_name = "conv0"
        self.last_conv_name = None  # the output is one logit channel whatever the image channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"UNetDiscriminatorSN needs H and W divisible by 8, got {tuple(x.shape[-2:])}")
        x0 = F.leaky_relu(self.conv0(x), 0.2)
        x1 = F.leaky_relu(self.conv1(x0), 0.2)
        x2 = F.leaky_relu(self.conv2(x1), 0.2)
        x3 = F.leaky_relu(self.conv3(x2), 0.2)

        x3 = F.interpolate(x3, scale_factor=2, mode="bilinear", align_corners=False)
        x4 = F.leaky_relu(self.conv4(x3), 0.2)
        if self.skip_connection:
            x4 = x4 + x2
        x4 = F.interpolate(x4, scale_factor=2, mode="bilinear", align_corners=False)
        x5 = F.leaky_relu(self.conv5(x4), 0.2)
        if self.skip_connection:
            x5 = x5 + x1
        x5 = F.interpolate(x5, scale_factor=2, mode="bilinear", align_corners=False)
        x6 = F.leaky_relu(self.conv6(x5), 0.2)
        if self.skip_connection:
            x6 = x6 + x0

        out = F.leaky_relu(self.conv7(x6), 0.2)
        out = F.leaky_relu(self.conv8(out), 0.2)
        return self.conv9(out)
