"""A small MRI feature extractor for the perceptual loss, trained self-supervised on MRI slices (no download).

ImageNet VGG-19 weights cannot be downloaded here (``docs/models.md §4``) and a random-init VGG-19 is a weak,
unreproducible stand-in. :class:`MRIFeatures` is a VGG-style trunk (conv3×3 stages, 2×2 max-pool, features taken
before the ReLU, the same named-layer interface as :class:`mrisr.losses.perceptual.VGG19Features`) with about 0.15 M
parameters (≈ 0.6 MB in float32), so it can be trained in minutes on CPU from the project's own MRI and shipped
alongside a run.

Training objective (:func:`train_mri_features`): a masked denoising autoencoder (Vincent et al., ICML 2008; masked
image modelling as in He et al., CVPR 2022). The input slice is corrupted by additive Gaussian noise and by zeroed
square blocks; a throw-away U-Net-style decoder reconstructs the clean slice from the trunk's stage features; the loss
is L1 to the clean slice. Why this objective:

- denoising forces features that separate anatomy (edges, tissue boundaries, texture) from noise — the properties an
  SR perceptual loss should compare — while masking forces the deeper stages to encode context, since a missing block
  cannot be filled from a local window;
- it needs no labels, no negatives or large batches (unlike contrastive learning, whose result also hinges on the
  choice of augmentations), and one cheap forward/backward per step;
- it is deterministic under a seed (one generator drives cropping, noise and masks).
The decoder is discarded; only the trunk is returned. Features learned this way are not ImageNet features, so a
perceptual loss built on them is a project-specific variant, recorded as such in ``features_description``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mrisr.core.errors import MrisrInputError
from mrisr.losses.perceptual import _NamedFeatures, vgg_style_layers
from mrisr.nets.pretrained import read_checkpoint

__all__ = ["MRIFeatures", "train_mri_features"]


class MRIFeatures(_NamedFeatures):
    """VGG-style MRI trunk: ``len(widths)`` stages of ``convs_per_stage`` conv3×3+ReLU, max-pool between stages.

    Layer names follow VGG (``conv{stage}_{i}``, ``relu{stage}_{i}``, ``pool{stage}``); the default exposes
    ``conv1_2``, ``conv2_2``, ``conv3_2``, ``conv4_2`` (pre-activation, at 1, 1/2, 1/4, 1/8 resolution).

    Args:
        in_channels: image channels (1 for single slices; a 1-channel trunk sees each pseudo-RGB slice separately).
        widths: output channels of each stage.
        convs_per_stage: convs per stage.
        weights_path: local state-dict file written by ``torch.save(model.state_dict())``; loaded strictly.

    Attributes:
        stage_outputs: names of the last conv of each stage (the layers a perceptual loss would use).
        features_description: ``"mri-features:<file name>"`` or ``"mri-features-random-init"``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = (16, 32, 64, 64),
        convs_per_stage: int = 2,
        weights_path: str | None = None,
    ) -> None:
        cfg: list[int | str] = []
        for s, w in enumerate(widths):
            cfg += [int(w)] * convs_per_stage
            if s < len(widths) - 1:
                cfg.append("M")
        layers, names = vgg_style_layers(cfg, in_channels)
        super().__init__(layers, names, in_channels)
        self.widths = tuple(int(w) for w in widths)
        self.stage_outputs: tuple[str, ...] = tuple(f"conv{s + 1}_{convs_per_stage}" for s in range(len(widths)))
        self.features_description = "mri-features-random-init"
        if weights_path is not None:
            state = read_checkpoint(weights_path)
            own = self.state_dict()
            if not isinstance(state, dict) or set(state) != set(own):
                raise MrisrInputError(
                    weights_path,
                    "not an MRIFeatures state dict with this configuration",
                    "pass the file saved by train_mri_features' caller and the same widths/convs_per_stage",
                )
            bad = [k for k in own if state[k].shape != own[k].shape]
            if bad:
                raise MrisrInputError(
                    weights_path,
                    f"shape mismatch at {bad[0]}: file {tuple(state[bad[0]].shape)}, net {tuple(own[bad[0]].shape)}",
                    "build MRIFeatures with the widths it was trained with",
                )
            self.load_state_dict(state, strict=True)
            self.features_description = f"mri-features:{os.path.basename(weights_path)}"


class _Decoder(nn.Module):
    """U-Net-style decoder: from the deepest stage up, ×2 nearest upsampling + 1×1-projected skip + conv3×3."""

    def __init__(self, widths: Sequence[int], out_channels: int) -> None:
        super().__init__()
        rev = list(widths)[::-1]
        self.skips = nn.ModuleList(nn.Conv2d(w, w, 1) for w in rev[1:])
        self.ups = nn.ModuleList(nn.Conv2d(rev[i], rev[i + 1], 3, padding=1) for i in range(len(rev) - 1))
        self.out = nn.Conv2d(rev[-1], out_channels, 3, padding=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, skip, f in zip(self.ups, self.skips, feats[-2::-1], strict=True):
            x = F.interpolate(F.relu(x), scale_factor=2, mode="nearest")
            x = up(x)
            # Encoder feature of the same resolution, mixed by a 1×1 conv and added.
            x = x + skip(F.relu(f))
        return self.out(F.relu(x))


def train_mri_features(
    slices: torch.Tensor,
    steps: int = 2000,
    seed: int = 0,
    batch_size: int = 16,
    crop: int = 64,
    lr: float = 1e-3,
    noise_std: float = 0.05,
    mask_fraction: float = 0.25,
    mask_block: int = 8,
    widths: Sequence[int] = (16, 32, 64, 64),
    convs_per_stage: int = 2,
) -> tuple[MRIFeatures, list[float]]:
    """Train :class:`MRIFeatures` as the encoder of a masked denoising autoencoder on MRI slices.

    Each step draws ``batch_size`` random ``crop × crop`` patches, corrupts them (additive Gaussian noise of std
    ``noise_std`` and zeroed ``mask_block``-pixel squares covering about ``mask_fraction`` of the patch), and minimises
    the L1 distance between the decoder's reconstruction and the clean patch with Adam.

    Args:
        slices: ``(N, C, H, W)`` MRI slices scaled to about [0, 1], H and W ≥ ``crop``.
        steps: optimiser steps.
        seed: seeds initialisation, patch sampling, noise and masks; same seed and inputs → same weights (CPU).
        batch_size: patches per step.
        crop: patch side in pixels; divisible by ``2 ** (len(widths) - 1)`` and by ``mask_block``.
        lr: Adam learning rate.
        noise_std: standard deviation of the additive noise, in intensity units of ``slices``.
        mask_fraction: expected fraction of masked blocks, in [0, 1).
        mask_block: side of a masked square in pixels.
        widths: stage widths of the trunk.
        convs_per_stage: convs per stage of the trunk.

    Returns:
        The trained trunk (eval mode, on the device of ``slices``) and the loss of every step.
    """
    if slices.dim() != 4:
        raise ValueError(f"slices must be (N, C, H, W), got shape {tuple(slices.shape)}")
    n, c, h, w = slices.shape
    down = 2 ** (len(widths) - 1)
    if crop > min(h, w) or crop % down or crop % mask_block:
        raise ValueError(f"crop {crop} must be ≤ min(H, W) = {min(h, w)} and divisible by {down} and {mask_block}")
    if not 0.0 <= mask_fraction < 1.0:
        raise ValueError(f"mask_fraction must be in [0, 1), got {mask_fraction}")
    device = slices.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk = MRIFeatures(c, widths, convs_per_stage).to(device)
        decoder = _Decoder(widths, c).to(device)
    params = [*trunk.parameters(), *decoder.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    trunk.train()
    decoder.train()
    blocks = crop // mask_block
    losses: list[float] = []
    for _ in range(steps):
        idx = torch.randint(n, (batch_size,), generator=gen)
        top = torch.randint(h - crop + 1, (batch_size,), generator=gen)
        left = torch.randint(w - crop + 1, (batch_size,), generator=gen)
        corners = zip(idx.tolist(), top.tolist(), left.tolist(), strict=True)
        clean = torch.stack([slices[i, :, t : t + crop, l : l + crop] for i, t, l in corners])
        noise = torch.randn(clean.shape, generator=gen).to(device) * noise_std
        keep = (torch.rand(batch_size, 1, blocks, blocks, generator=gen) >= mask_fraction).float().to(device)
        keep = keep.repeat_interleave(mask_block, -2).repeat_interleave(mask_block, -1)
        corrupted = (clean + noise) * keep
        feats = trunk(corrupted, trunk.stage_outputs)
        recon = decoder([feats[k] for k in trunk.stage_outputs])
        loss = F.l1_loss(recon, clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return trunk.eval(), losses
