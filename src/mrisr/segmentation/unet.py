"""Small learned cord segmenter: a 2-D MONAI BasicUNet on 64 × 64 axial crops at 1 mm (evaluation.md §4 backend 3).

Trained in-project on the shared manual masks (``python train.py experiment=cordseg data.held_out=errsm_11``,
leave-one-subject-out), with thick-slice versions of every training volume (simulated with
:class:`~mrisr.degradations.thick_slice.ThickSlice` and brought back to 1 mm by cubic B-spline) so that it also
sees LR-like inputs; Dice + cross-entropy loss. A demonstration of a learned backend, not a DeepSeg substitute.

* :class:`CordSegDataModule` — crops around the cord of every axial plane (RAS), random shifts and flips.
* :class:`CordSegUNet` — the LightningModule; its test step segments the held-out subject's whole volumes and
  logs their Dice (``test/dice_<variant>``).
* :class:`UNetSegmenter` — the ``segmenter=unet`` backend: crop centres from the classical centerline, crops
  resampled to 1 mm in-plane, probabilities mapped back onto the volume's own grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import nibabel as nib
import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import DataLoader, Dataset

from mrisr.degradations.thick_slice import ThickSlice
from mrisr.eval.cord import reorient_axial
from mrisr.eval.image import resample_to_reference
from mrisr.eval.lesions import dice
from mrisr.inference import interpolate_volume, output_grid
from mrisr.io.errors import MrisrInputError
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume, load_volume
from mrisr.segmentation.classical import ClassicalSegmenter

__all__ = ["CordSegDataModule", "CordSegUNet", "UNetSegmenter", "build_net"]

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def build_net(features: Sequence[int] = (16, 16, 32, 64, 128, 16)) -> torch.nn.Module:
    """MONAI ``BasicUNet`` (2-D, 1 input channel, 2 classes) with the given feature widths."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=tuple(int(f) for f in features))


def _ras_volume(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    data, affine = reorient_axial(np.asarray(volume.data, dtype=np.float32), volume.affine)
    return np.ascontiguousarray(data, dtype=np.float32), affine


def _crop(plane: np.ndarray, cx: int, cy: int, size: int) -> np.ndarray:
    """``size × size`` crop of ``plane`` centred on voxel (cx, cy), zero-padded outside."""
    half = size // 2
    out = np.zeros((size, size), dtype=plane.dtype)
    x0, y0 = cx - half, cy - half
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(plane.shape[0], x0 + size), min(plane.shape[1], y0 + size)
    if sx1 > sx0 and sy1 > sy0:
        out[sx0 - x0 : sx1 - x0, sy0 - y0 : sy1 - y0] = plane[sx0:sx1, sy0:sy1]
    return out


# --------------------------------------------------------------------------------------------------
# Data


class _CropDataset(Dataset):
    """Random crops around the cord; item ``k`` is a pure function of ``(seed, k)``."""

    def __init__(
        self,
        items: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        patch_size: int,
        length: int,
        seed: int,
        jitter: int,
    ) -> None:
        self.items = items  # (image RAS, mask RAS, planes with cord)
        self.patch_size = patch_size
        self.length = length
        self.seed = seed
        self.jitter = jitter
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, int(k)])
        image, mask, planes = self.items[int(rng.integers(len(self.items)))]
        z = int(planes[int(rng.integers(planes.size))])
        xs, ys = np.nonzero(mask[:, :, z] > 0.5)
        cx = round(float(xs.mean())) + int(rng.integers(-self.jitter, self.jitter + 1))
        cy = round(float(ys.mean())) + int(rng.integers(-self.jitter, self.jitter + 1))
        img = _crop(image[:, :, z], cx, cy, self.patch_size)
        seg = _crop(mask[:, :, z], cx, cy, self.patch_size)
        if rng.random() < 0.5:  # left-right flip (anatomically symmetric)
            img, seg = img[::-1], seg[::-1]
        img = img * float(rng.uniform(0.85, 1.15))
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None],
            "label": torch.from_numpy(np.ascontiguousarray(seg > 0.5, dtype=np.int64))[None],
        }


def _first(batch: list[Any]) -> Any:
    return batch[0]


class CordSegDataModule(L.LightningDataModule):
    """Leave-one-subject-out crops for the cord U-Net.

    Args:
        subjects: ``{name: {image: path, mask: path}}`` of 1 mm T2w volumes with manual cord masks.
        held_out: Subject used only for testing (leave-one-subject-out).
        degradations: Thick-slice acquisitions simulated from every training volume, each a mapping of
            :class:`~mrisr.degradations.thick_slice.ThickSlice` arguments in RAS terms (``axis``: 0 = RL,
            1 = AP, 2 = SI); the test set gets the same versions of the held-out subject.
        patch_size: Crop side (voxels = mm).
        batch_size: Crops per batch.
        samples_per_epoch: Training crops per epoch.
        val_samples: Fixed validation crops (from the training subjects, for monitoring only).
        jitter: Largest random shift of the crop centre (voxels).
        seed: Sampling seed.
    """

    def __init__(
        self,
        subjects: Mapping[str, Mapping[str, str]],
        held_out: str,
        degradations: Sequence[Mapping[str, Any]] = (
            {"thickness_mm": 3.0, "separation_mm": 4.0, "axis": 0},
            {"thickness_mm": 5.0, "separation_mm": 5.0, "axis": 2},
        ),
        patch_size: int = 64,
        batch_size: int = 16,
        samples_per_epoch: int = 1024,
        val_samples: int = 64,
        jitter: int = 6,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if held_out not in subjects:
            raise ValueError(f"held_out={held_out!r} is not one of the subjects {sorted(subjects)}")
        self.subjects = {k: dict(v) for k, v in subjects.items()}
        self.held_out = held_out
        self.degradations = [dict(d) for d in degradations]
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.samples_per_epoch = samples_per_epoch
        self.val_samples = val_samples
        self.jitter = jitter
        self.seed = seed
        self.train_set: _CropDataset | None = None
        self.val_items: list[dict[str, torch.Tensor]] | None = None
        self.test_items: list[dict[str, Any]] | None = None

    def variants(self, name: str) -> list[tuple[str, Volume, Volume]]:
        """``(variant, image, mask)`` of a subject on its HR grid: the HR image and its thick-slice versions."""
        image = load_volume(self.subjects[name]["image"])
        mask = load_volume(self.subjects[name]["mask"], allow_constant=True)
        ras, affine = _ras_volume(image)
        ras_image = Volume(ras, affine)
        ras_mask = Volume(_ras_volume(mask)[0], affine)
        out = [("HR", ras_image, ras_mask)]
        for i, params in enumerate(self.degradations):
            model = ThickSlice(**params)
            lr = model(ras_image, seed=self.seed + i)
            geometry = detect_slice_axis(lr, axis=model.axis)
            grid = output_grid(geometry, lr.shape[model.axis], target_spacing_mm=float(ras_image.zooms[model.axis]))
            data = resample_to_reference(interpolate_volume(lr, grid, order=3), ras_image, order=1)
            label = f"T{model.thickness_mm:g}_S{model.separation:g}_ax{model.axis}"
            out.append((label, Volume(data.astype(np.float32), affine), ras_mask))
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        items = []
        for name in self.subjects:
            if name == self.held_out:
                continue
            for _, image, mask in self.variants(name):
                img = ClassicalSegmenter.normalize(image.data)
                planes = np.flatnonzero((mask.data > 0.5).any(axis=(0, 1)))
                items.append((img, np.asarray(mask.data, dtype=np.float32), planes))
        if not items:
            raise ValueError("no training subject left after holding one out")
        self.train_set = _CropDataset(items, self.patch_size, self.samples_per_epoch, self.seed, self.jitter)
        val_source = _CropDataset(items, self.patch_size, self.val_samples, self.seed + 10_000, self.jitter)
        self.val_items = [val_source[k] for k in range(self.val_samples)]
        self.test_items = [
            {"name": self.held_out, "variant": variant, "image": image, "mask": mask}
            for variant, image, mask in self.variants(self.held_out)
        ]
        log.info("cord U-Net: %d training volumes, held out %s", len(items), self.held_out)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        self.train_set.epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_items is not None
        return DataLoader(self.val_items, batch_size=self.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        assert self.test_items is not None
        return DataLoader(self.test_items, batch_size=1, shuffle=False, collate_fn=_first)


# --------------------------------------------------------------------------------------------------
# Model


def _predict_volume(
    net: torch.nn.Module,
    volume: Volume,
    patch_size: int,
    device: torch.device,
    threshold: float = 0.5,
    batch_size: int = 32,
) -> Volume:
    """Cord mask of ``volume`` on its own grid with a 2-D crop network (see :class:`UNetSegmenter`)."""
    ras, affine = _ras_volume(volume)
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
    ornt = nib.orientations.io_orientation(volume.affine)
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt)
    stored = np.ascontiguousarray(nib.orientations.apply_orientation(mask, back), dtype=np.float32)
    return Volume(stored, volume.affine)


class CordSegUNet(L.LightningModule):
    """2-D cord U-Net trained on axial crops with Dice + cross-entropy.

    Args:
        features: ``BasicUNet`` feature widths (6 numbers).
        optimizer: Partial optimizer factory (Hydra ``_partial_: true``); default Adam, lr 1e-3.
        patch_size: Crop side used at test time (must match the data).
    """

    def __init__(
        self,
        features: Sequence[int] = (16, 16, 32, 64, 128, 16),
        optimizer: OptimizerFactory | None = None,
        patch_size: int = 64,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        self.net = build_net(features)
        self.optimizer_factory = optimizer
        self.patch_size = patch_size
        from monai.losses import DiceCELoss

        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.run_config: dict[str, Any] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        n = batch["image"].shape[0]
        self.log("val/loss", self.loss(logits, batch["label"]), prog_bar=True, batch_size=n)
        pred = logits.argmax(1, keepdim=True)
        inter = (pred * batch["label"]).sum().float()
        total = (pred.sum() + batch["label"].sum()).float().clamp_min(1)
        self.log("val/dice", 2 * inter / total, prog_bar=True, batch_size=n)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        mask = _predict_volume(self.net, batch["image"], self.patch_size, self.device)
        value = dice(mask.data, batch["mask"].data)
        self.log(f"test/dice_{batch['variant']}", value, batch_size=1)
        log.info("cord U-Net: %s %s Dice %.3f", batch["name"], batch["variant"], value)
        return {"name": batch["name"], "variant": batch["variant"], "dice": value}

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and isinstance(batch.get("image"), Volume):
            return batch  # whole test volumes stay on the host
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_factory is None:
            return torch.optim.Adam(self.parameters(), lr=1e-3)
        return self.optimizer_factory(params=self.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint["mrisr_config"] = self.run_config


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
        net = build_net(hparams.get("features", (16, 16, 32, 64, 128, 16)))
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
        return _predict_volume(net, volume, self._patch_size, self.device, threshold=self.threshold)
