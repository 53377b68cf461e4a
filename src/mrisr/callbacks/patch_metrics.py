"""PRETTIER patch metrics during validation and test (Giraldo et al. 2024, Table 2; docs/evaluation.md §1).

Validation: the SR and HR patches that the system's ``validation_step`` returns (``{"sr", "hr"}``, ``(B, C, H, W)``
on the system's normalised scale — :class:`~mrisr.systems.prettier.PrettierSR`: 1.25 × the LR foreground P99.5) are
clipped to [0, 1] and scored with :func:`mrisr.eval.patches.patch_metrics`; the batch means are logged as
``val/patch_<metric>``.

Test: the whole SR volume of each ``test_step`` output (and the interpolation baselines) and the HR volume are
divided by the system's own intensity rule applied to the LR input (``pl_module.intensity``), cut into
PRETTIER-style pseudo-RGB tiles along the degraded axis (:func:`mrisr.eval.patches.volume_patches`), clipped to
[0, 1] and scored; the mean over a volume's tiles is one tidy row, and ``test/patch_<metric>`` (and
``test/patch_<metric>_<baseline>``) is the mean over test volumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch

from mrisr.callbacks.base import TIDY_FIELDS, EvaluationCallback, Table, check_baselines
from mrisr.core.errors import MrisrInputError
from mrisr.eval.patches import PATCH_METRICS, check_metrics, patch_metrics, require_piq, volume_patches
from mrisr.io.regrid import resample_to_reference, same_grid

__all__ = ["PatchMetricsCallback"]


class PatchMetricsCallback(EvaluationCallback):
    """PSNR, SSIM, VIF-p, FSIM, VSI and HaarPSI (piq) of SR against HR patches, in validation and test.

    DISTS and LPIPS are not offered: piq's classes download their weights and torchvision's VGG-16 when built and
    take no local weight file.

    Args:
        output_dir: directory of the test CSV (the run directory).
        filename: test CSV file name (rows :data:`~mrisr.callbacks.base.TIDY_FIELDS`, metric ``patch_<name>``).
        metrics: names from :data:`mrisr.eval.patches.PATCH_METRICS`.
        baselines: interpolation baselines scored beside the model at test (``nearest``, ``linear``, ``cubic``).
        validation: also score the validation patches.
        in_channels: planes per test tile (1 or 3); ``None`` = the system's ``in_channels`` (1 when it has none).
        test_patch_size: test tile side (voxels; PRETTIER 96), ``None`` = whole planes.
        min_foreground: minimum fraction of foreground voxels of a kept test tile.
        foreground_threshold: normalised HR intensity above which a voxel is foreground.
        stride: step (voxels) between consecutive test items along each slicing axis.
    """

    def __init__(
        self,
        output_dir: str,
        filename: str = "test_patch_metrics.csv",
        metrics: Sequence[str] = PATCH_METRICS,
        baselines: Sequence[str] = ("cubic",),
        validation: bool = True,
        in_channels: int | None = None,
        test_patch_size: int | None = 96,
        min_foreground: float = 0.5,
        foreground_threshold: float = 0.1,
        stride: int = 1,
    ) -> None:
        super().__init__(output_dir, {"metrics": Table(filename, TIDY_FIELDS)})
        self.metrics = check_metrics(metrics)
        self.baselines = check_baselines(baselines)
        if in_channels not in (None, 1, 3):
            raise ValueError(f"in_channels must be 1, 3 or None, got {in_channels}")
        if not 0.0 <= min_foreground <= 1.0 or stride < 1:
            raise ValueError(f"need 0 ≤ min_foreground ≤ 1 and stride ≥ 1, got {min_foreground}, {stride}")
        self.validation = validation
        self.in_channels = in_channels
        self.test_patch_size = test_patch_size
        self.min_foreground = min_foreground
        self.foreground_threshold = foreground_threshold
        self.stride = stride

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        require_piq()  # fail before training, not at the first validation

    # ---------------------------------------------------------------- validation
    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self.validation or trainer.sanity_checking:
            return
        if not isinstance(outputs, Mapping) or "sr" not in outputs or "hr" not in outputs:
            raise MrisrInputError(
                None,
                f"{type(pl_module).__name__}.validation_step returns no SR and HR patches",
                "use a system whose validation_step returns {'sr', 'hr'} (PrettierSR) or set validation: false",
            )
        values = patch_metrics(outputs["sr"], outputs["hr"], self.metrics)
        for name, value in values.items():
            pl_module.log(f"val/patch_{name}", value.mean().to(pl_module.device), batch_size=len(value), sync_dist=True)

    # ---------------------------------------------------------------- test
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict[str, Any]) -> None:
        scaling = pl_module.intensity.scaling(outputs["lr"].data, source=outputs["lr"].path)
        hr = outputs["hr"]
        reference = scaling.apply(np.asarray(hr.data, dtype=np.float32))
        channels = self.in_channels or int(getattr(pl_module, "in_channels", 1))
        candidates = {"SR": outputs["sr"]}
        for name in self.baselines:
            candidates[name] = self.baseline(trainer, outputs, name)
        for method, volume in candidates.items():
            data = volume.data if same_grid(volume, hr) else resample_to_reference(volume, hr, order=3)
            groups = volume_patches(
                scaling.apply(np.asarray(data, dtype=np.float32)),
                reference,
                axis=outputs["grid"].axis,
                in_channels=channels,
                patch_size=self.test_patch_size,
                min_foreground=self.min_foreground,
                foreground_threshold=self.foreground_threshold,
                stride=self.stride,
            )
            if not groups:
                self.warn_once(
                    f"empty:{outputs['name']}",
                    "%s: no %s of %s is ≥ %.0f %% foreground; no patch metrics for it",
                    type(self).__name__,
                    "plane" if self.test_patch_size is None else f"{self.test_patch_size}-voxel tile",
                    outputs["name"],
                    100 * self.min_foreground,
                )
                continue
            values: dict[str, list[torch.Tensor]] = {m: [] for m in self.metrics}
            for xs, rs in groups:
                for m, v in patch_metrics(torch.from_numpy(xs), torch.from_numpy(rs), self.metrics).items():
                    values[m].append(v)
            suffix = "" if method == "SR" else f"_{method}"
            for m in self.metrics:
                value = float(torch.cat(values[m]).double().mean())
                self.add_row(
                    {
                        "subject": outputs["name"],
                        "setting": outputs["setting"],
                        "method": outputs["method"] if method == "SR" else method,
                        "metric": f"patch_{m}",
                        "value": value,
                        "backend": "piq",
                    }
                )
                self.log_metric(f"test/patch_{m}{suffix}", value)
