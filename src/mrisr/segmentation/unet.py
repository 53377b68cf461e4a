"""Learned cord segmenter backend ``segmenter=unet`` (docs/evaluation.md §4 backend 3).

The 2-D cord U-Net (:func:`mrisr.nets.cord_unet.build_cord_unet`) is trained in-project on the shared manual masks
(``python train.py experiment=cordseg data.held_out=errsm_11``, leave-one-subject-out; data
:class:`mrisr.data.cordseg.CordSegDataModule`, system :class:`mrisr.systems.segmentation.CordSegUNet`), with
thick-slice versions of every training volume so that it also sees LR-like inputs; Dice + cross-entropy loss. A
demonstration of a learned backend, not a DeepSeg substitute.

* :func:`predict_cord_mask` — crop centres from the classical centerline, crops resampled to 1 mm in-plane,
  probabilities mapped back onto the volume's own grid.
* :class:`UNetSegmenter` — the backend: a checkpoint of ``experiment=cordseg`` applied with :func:`predict_cord_mask`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from mrisr.core.errors import MrisrInputError
from mrisr.io.nifti import Volume
from mrisr.io.regrid import ras_volume, restore_orientation
from mrisr.nets.cord_unet import DEFAULT_FEATURES, build_cord_unet
from mrisr.segmentation.classical import ClassicalSegmenter

__all__ = ["UNetSegmenter", "predict_cord_mask"]


def predict_cord_mask(
    net: torch.nn.Module,
    volume: Volume,
    patch_size: int,
    device: torch.device,
    threshold: float = 0.5,
    batch_size: int = 32,
) -> Volume:
    """Cord mask of ``volume`` on its own grid with a 2-D crop network (see :class:`UNetSegmenter`)."""
    ras, affine = ras_volume(volume)
    spacing = np.sqrt(np.sum(affine[:3, :3] ** 2, axis=0))
    img = ClassicalSegmenter.normalize(ras)
    centres_x, centres_y = ClassicalSegmenter().centerline(img, tuple(float(s) for s in spacing))  # type: ignore[arg-type]
    planes = np.flatnonzero(np.isfinite(centres_x))
    if planes.size == 0:
        raise MrisrInputError(volume.path, "no cord centerline found for the U-Net crops", "check the image")
    half = patch_size // 2
    offsets = np.arange(patch_size) - half  # crop pixel → mm offset from the centre (1 mm pixels)
    crops = np.zeros((planes.size, 1, patch_size, patch_size), np.float32)
    for i, z in enumerate(planes):
        gx = centres_x[z] + offsets[:, None] / spacing[0]
        gy = centres_y[z] + offsets[None, :] / spacing[1]
        gx, gy = np.broadcast_arrays(gx, gy)
        crops[i, 0] = ndimage.map_coordinates(img[:, :, z], [gx, gy], order=1, mode="constant", cval=0.0)
    probs = np.zeros_like(crops[:, 0])
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for start in range(0, planes.size, batch_size):
            x = torch.from_numpy(crops[start : start + batch_size]).to(device)
            probs[start : start + batch_size] = torch.softmax(net(x).float(), dim=1)[:, 1].cpu().numpy()
    net.train(was_training)
    mask = np.zeros(ras.shape, np.float32)
    for i, z in enumerate(planes):
        # Voxels of the plane within the crop window, sampled from the 1 mm probability map.
        rx = int(np.ceil(half * 1.0 / spacing[0])) + 1
        ry = int(np.ceil(half * 1.0 / spacing[1])) + 1
        x0, x1 = max(0, int(centres_x[z]) - rx), min(ras.shape[0], int(centres_x[z]) + rx + 1)
        y0, y1 = max(0, int(centres_y[z]) - ry), min(ras.shape[1], int(centres_y[z]) + ry + 1)
        vx, vy = np.meshgrid(np.arange(x0, x1), np.arange(y0, y1), indexing="ij")
        px = (vx - centres_x[z]) * spacing[0] + half
        py = (vy - centres_y[z]) * spacing[1] + half
        p = ndimage.map_coordinates(probs[i], [px, py], order=1, mode="constant", cval=0.0)
        plane = p > threshold
        labels, n = ndimage.label(plane)
        if n > 1:  # keep the component nearest to the centre
            com = ndimage.center_of_mass(plane, labels, range(1, n + 1))
            d = [np.hypot(c[0] + x0 - centres_x[z], c[1] + y0 - centres_y[z]) for c in com]
            plane = labels == int(np.argmin(d)) + 1
        mask[x0:x1, y0:y1, z] = plane
    return Volume(restore_orientation(mask, volume.affine), volume.affine)


class UNetSegmenter:
    """``segmenter=unet``: the cord U-Net of ``python train.py experiment=cordseg`` applied plane by plane.

    Crop centres come from the classical centerline (:meth:`ClassicalSegmenter.centerline`); each 64 × 64 crop
    is resampled to 1 mm in-plane (so thick-pixel LR grids are handled), the foreground probability is mapped
    back onto the volume's own voxels (bilinear) and thresholded; per plane the component nearest the centre is
    kept.

    Args:
        checkpoint: Lightning checkpoint written by ``experiment=cordseg`` (``checkpoints/last.ckpt``).
        device: Torch device.
        threshold: Probability threshold.
    """

    name = "unet"

    def __init__(self, checkpoint: str | None = None, device: str = "cpu", threshold: float = 0.5) -> None:
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.device = torch.device(device)
        self.threshold = float(threshold)
        self._net: torch.nn.Module | None = None
        self._patch_size = 64

    def _load(self) -> torch.nn.Module:
        if self._net is not None:
            return self._net
        if self.checkpoint is None:
            raise MrisrInputError(
                None,
                "the unet segmenter needs a trained checkpoint",
                "train one with `python train.py experiment=cordseg` and pass segmenter.checkpoint=.../last.ckpt",
            )
        if not self.checkpoint.is_file():
            raise MrisrInputError(self.checkpoint, "checkpoint file does not exist", "check segmenter.checkpoint")
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        hparams = state.get("hyper_parameters", {})
        net = build_cord_unet(hparams.get("features", DEFAULT_FEATURES))
        weights = {k.removeprefix("net."): v for k, v in state["state_dict"].items() if k.startswith("net.")}
        net.load_state_dict(weights)
        self._patch_size = int(hparams.get("patch_size", 64))
        self._net = net.to(self.device).eval()
        return self._net

    def segment(self, volume: Volume) -> Volume:
        """Cord mask (float32 0/1) of ``volume`` on its own grid.

        Raises:
            MrisrInputError: Missing checkpoint or no cord centerline.
        """
        net = self._load()
        return predict_cord_mask(net, volume, self._patch_size, self.device, threshold=self.threshold)
