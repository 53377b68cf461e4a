"""Perceptual (feature-space) loss with a VGG-19 or any injected named-layer feature extractor.

PRETTIER (Giraldo et al. 2024, Eq. 2; ``docs/models.md §2.5``) adds to the L1 loss a perceptual loss over five VGG-19
layers "following the initial training of RealESRGAN": ``conv1_2`` 0.1, ``conv2_2`` 0.1, ``conv3_4`` 1, ``conv4_4`` 1,
``conv5_4`` 1, features taken *before* the ReLU (torchvision ``vgg19().features`` indices 2, 7, 16, 25, 34), L1 per
layer (mean over elements), inputs in [0, 1] normalised with the ImageNet mean/std, the network frozen in eval mode
and the target branch detached (Johnson et al., ECCV 2016).

Feature-extractor interface (shared by :class:`VGG19Features` and :class:`mrisr.losses.mri_features.MRIFeatures`):

- ``in_channels``: image channels the extractor expects;
- ``layer_names``: names of the layers it can return;
- ``forward(x, layers) -> dict[name, (B, C_l, H_l, W_l)]``;
- optionally ``features_description`` (a string recorded in run metadata).

No weights are downloaded: the ImageNet VGG-19 comes from a local torchvision file (``vgg19-dcbb9e9d.pth``); without
one the loss uses a randomly initialised VGG-19 and warns loudly, because results are then not comparable to the paper.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mrisr.core.errors import MrisrInputError
from mrisr.nets.pretrained import read_checkpoint

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "REAL_ESRGAN_LAYER_WEIGHTS",
    "PerceptualLoss",
    "VGG19Features",
    "vgg_layer_names",
    "vgg_style_layers",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# Real-ESRGAN's perceptual setting, stated (not confirmed) for PRETTIER.
REAL_ESRGAN_LAYER_WEIGHTS: dict[str, float] = {
    "conv1_2": 0.1,
    "conv2_2": 0.1,
    "conv3_4": 1.0,
    "conv4_4": 1.0,
    "conv5_4": 1.0,
}
# VGG configuration "E" (Simonyan & Zisserman 2015): output channels per conv, "M" = 2×2 max-pool.
_VGG19_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                     512, 512, 512, 512, "M", 512, 512, 512, 512, "M")  # fmt: skip


def vgg_layer_names(cfg: Sequence[int | str]) -> list[str]:
    """VGG names of the positions of :func:`vgg_style_layers`: ``conv{stage}_{i}``, ``relu…``, ``pool{stage}``."""
    names: list[str] = []
    stage, i = 1, 1
    for item in cfg:
        if item == "M":
            names.append(f"pool{stage}")
            stage, i = stage + 1, 1
        else:
            names += [f"conv{stage}_{i}", f"relu{stage}_{i}"]
            i += 1
    return names


def vgg_style_layers(cfg: Sequence[int | str], in_channels: int) -> tuple[list[nn.Module], list[str]]:
    """Build conv3×3 / ReLU / max-pool layers and their VGG names.

    The module order equals torchvision's ``vgg.features``, so position N holds the layer torchvision calls
    ``features.N``. ReLUs are not in place: a pre-activation feature must survive the following ReLU.

    Args:
        cfg: output channels per conv, ``"M"`` for a 2×2 stride-2 max-pool ending a stage.
        in_channels: image channels of the first conv.

    Returns:
        The layers and their names (:func:`vgg_layer_names`), index-aligned.
    """
    layers: list[nn.Module] = []
    ch = in_channels
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(ch, int(item), kernel_size=3, padding=1)
        # torchvision's VGG initialisation, so random-init features keep a sensible scale through depth.
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU(inplace=False)]
        ch = int(item)
    return layers, vgg_layer_names(cfg)


class _NamedFeatures(nn.Module):
    """A ``features`` Sequential whose positions have names; returns the requested named activations."""

    def __init__(self, layers: list[nn.Module], names: list[str], in_channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(*layers)
        self.layer_names: tuple[str, ...] = tuple(names)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Run up to the deepest requested layer.

        Args:
            x: images ``(B, in_channels, H, W)``.
            layers: names from ``layer_names``.

        Returns:
            ``{name: activation (B, C_l, H_l, W_l)}`` for every requested name.
        """
        unknown = [n for n in layers if n not in self.layer_names]
        if unknown:
            raise ValueError(f"unknown layers {unknown}; available: {list(self.layer_names)}")
        index = {self.layer_names.index(n): n for n in layers}
        out: dict[str, torch.Tensor] = {}
        last = max(index)
        for i, module in enumerate(self.features):
            x = module(x)
            if i in index:
                out[index[i]] = x
            if i == last:
                break
        return out


class VGG19Features(_NamedFeatures):
    """VGG-19 convolutional trunk with torchvision's module indices (``features.0`` … ``features.34``).

    Args:
        last_layer: deepest layer kept (default ``conv5_4`` = index 34, the deepest layer PRETTIER uses); the rest
            of the trunk is not built.

    Attributes:
        layer_names: names of the kept positions, e.g. ``layer_names[34] == "conv5_4"``.
        in_channels: 3 (RGB).
    """

    def __init__(self, last_layer: str = "conv5_4") -> None:
        names = vgg_layer_names(_VGG19_CFG)
        if last_layer not in names:
            raise ValueError(f"unknown VGG-19 layer {last_layer!r}; available: {names}")
        end = names.index(last_layer) + 1
        cfg = _VGG19_CFG[: sum(1 for n in names[:end] if not n.startswith("relu"))]
        layers, names = vgg_style_layers(cfg, in_channels=3)
        # A conv is followed by its ReLU in the layers; cut exactly after last_layer.
        super().__init__(layers[:end], names[:end], in_channels=3)

    def load_torchvision_state_dict(
        self, state: Mapping[str, torch.Tensor], path: str | os.PathLike[str] | None = None
    ) -> None:
        """Load a torchvision VGG-19 state dict (e.g. ``vgg19-dcbb9e9d.pth``) strictly into the kept trunk.

        Keys ``features.N.{weight,bias}`` or ``N.{weight,bias}`` are accepted; ``classifier.*`` and positions
        beyond ``last_layer`` are ignored; every kept conv must be present with torchvision's shape.

        Args:
            state: the state dict.
            path: file it came from, for error messages.

        Raises:
            MrisrInputError: missing keys or shape mismatch.
        """
        own = self.state_dict()
        picked: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if key.startswith("classifier."):
                continue
            name = key if key.startswith("features.") else f"features.{key}"
            if name in own:
                picked[name] = value
        missing = sorted(set(own) - set(picked))
        if missing:
            raise MrisrInputError(
                path,
                f"not a torchvision VGG-19 state dict: missing {missing[:4]} ({len(missing)} keys)",
                "use torchvision's vgg19 weights file (vgg19-dcbb9e9d.pth)",
            )
        for name, value in picked.items():
            if value.shape != own[name].shape:
                raise MrisrInputError(
                    path,
                    f"shape mismatch at {name}: file {tuple(value.shape)}, VGG-19 {tuple(own[name].shape)}",
                    "use torchvision's vgg19 weights file (vgg19-dcbb9e9d.pth), not vgg19_bn or another net",
                )
        self.load_state_dict(picked, strict=True)


class PerceptualLoss(nn.Module):
    """Weighted feature-space distance between a prediction and a target.

    ``L = Σ_l w_l · mean(|φ_l(p) − φ_l(t)|)`` (``criterion="l1"``; ``"l2"`` uses the squared difference), with
    φ_l the pre-activation features of layer l of a frozen extractor.

    Args:
        layer_weights: layer name → weight; ``None`` uses :data:`REAL_ESRGAN_LAYER_WEIGHTS`.
        weights_path: local torchvision VGG-19 file (``vgg19-dcbb9e9d.pth``, optionally as a dict with the state
            dict under ``state_dict``). ``None`` builds a random-init VGG-19 and warns.
        backbone: injected feature extractor (interface in the module docstring); excludes ``weights_path``.
        use_input_norm: normalise the 3-channel backbone input with the ImageNet mean/std (VGG was trained so);
            needs a 3-channel backbone; set False for extractors trained on [0, 1] MRI.
        criterion: ``"l1"`` (PRETTIER / Real-ESRGAN) or ``"l2"``.

    Inputs in [0, 1], ``(B, C, H, W)``: with a 3-channel backbone, C = 1 is replicated to three channels and C = 3
    (three adjacent slices as pseudo-RGB) is used directly; with a 1-channel backbone each channel is a separate
    image.

    Attributes:
        features_description: ``"vgg19-random-init"``, ``"vgg19-imagenet:<file name>"``, the backbone's own
            ``features_description`` or ``"custom:<class name>"`` — recorded in run metadata.
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float] | None = None,
        weights_path: str | None = None,
        backbone: nn.Module | None = None,
        use_input_norm: bool = True,
        criterion: Literal["l1", "l2"] = "l1",
    ) -> None:
        super().__init__()
        weights = dict(REAL_ESRGAN_LAYER_WEIGHTS if layer_weights is None else layer_weights)
        if not weights:
            raise ValueError("layer_weights is empty")
        if criterion not in ("l1", "l2"):
            raise ValueError(f"criterion must be 'l1' or 'l2', got {criterion!r}")
        if backbone is not None and weights_path is not None:
            raise ValueError("pass either backbone or weights_path, not both")
        if backbone is None:
            backbone = self._build_vgg(weights, weights_path)
        else:
            self.features_description = getattr(backbone, "features_description", f"custom:{type(backbone).__name__}")
        unknown = [n for n in weights if n not in backbone.layer_names]
        if unknown:
            raise ValueError(f"layers {unknown} not in the backbone; available: {list(backbone.layer_names)}")
        if use_input_norm and backbone.in_channels != 3:
            raise ValueError("use_input_norm applies the ImageNet RGB statistics: it needs a 3-channel backbone")
        self.layer_weights = weights
        self.criterion = criterion
        self.use_input_norm = use_input_norm
        self.backbone = backbone.eval().requires_grad_(False)
        # Not persistent: constants, not state worth checkpointing.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _build_vgg(self, weights: Mapping[str, float], weights_path: str | None) -> VGG19Features:
        vgg_names = vgg_layer_names(_VGG19_CFG)
        unknown = [n for n in weights if n not in vgg_names]
        if unknown:
            raise ValueError(f"layers {unknown} not in VGG-19; available: {vgg_names}")
        deepest = max(weights, key=vgg_names.index)
        vgg = VGG19Features(last_layer=deepest)
        if weights_path is None:
            msg = (
                "PerceptualLoss: no weights_path given, using a RANDOMLY INITIALISED VGG-19; perceptual results "
                "are not comparable to PRETTIER (set weights_path to a local vgg19-dcbb9e9d.pth)"
            )
            warnings.warn(msg, UserWarning, stacklevel=3)
            log.warning(msg)
            self.features_description = "vgg19-random-init"
            return vgg
        obj = read_checkpoint(weights_path)
        if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
            obj = obj["state_dict"]
        if not isinstance(obj, Mapping):
            raise MrisrInputError(weights_path, f"VGG-19 file holds a {type(obj).__name__}", "pass a state dict file")
        vgg.load_torchvision_state_dict(obj, path=weights_path)
        self.features_description = f"vgg19-imagenet:{os.path.basename(weights_path)}"
        return vgg

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Switch mode but keep the frozen backbone in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Match the image channels to the backbone and normalise. ``(B, C, H, W)`` → ``(B', in_ch, H, W)``."""
        if x.dim() != 4:
            raise ValueError(f"PerceptualLoss expects (B, C, H, W), got shape {tuple(x.shape)}")
        c, want = x.shape[1], self.backbone.in_channels
        if c != want:
            if want == 3 and c == 1:
                x = x.expand(-1, 3, -1, -1)
            elif want == 1:
                x = x.reshape(-1, 1, *x.shape[-2:])
            else:
                raise ValueError(f"cannot feed {c}-channel images to a {want}-channel backbone")
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        return x

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Perceptual loss (scalar) between ``pred`` and ``target``, both ``(B, C, H, W)`` in [0, 1].

        Gradients flow to ``pred`` only; the target features are computed without a graph.
        """
        layers = list(self.layer_weights)
        pred_feats = self.backbone(self._prepare(pred), layers)
        with torch.no_grad():
            target_feats = self.backbone(self._prepare(target.detach()), layers)
        distance = F.l1_loss if self.criterion == "l1" else F.mse_loss
        total = pred.new_zeros(())
        for name, weight in self.layer_weights.items():
            total = total + weight * distance(pred_feats[name], target_feats[name])
        return total
