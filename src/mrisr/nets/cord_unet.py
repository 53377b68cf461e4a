"""Cord segmentation network: a 2-D MONAI ``BasicUNet`` (1 input channel, 2 classes) on 64 × 64 axial crops."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

#: Feature widths of the default network (six numbers, MONAI ``BasicUNet`` layout).
DEFAULT_FEATURES = (16, 16, 32, 64, 128, 16)


def build_cord_unet(features: Sequence[int] = DEFAULT_FEATURES) -> nn.Module:
    """MONAI ``BasicUNet`` (2-D, 1 input channel, 2 classes) with the given feature widths.

    Shapes:
        ``(B, 1, H, W)`` → logits ``(B, 2, H, W)``; H, W multiples of 16.
    """
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=tuple(int(f) for f in features))
