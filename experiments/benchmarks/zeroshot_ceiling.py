"""Where the zero-shot model's budget goes: is the limit the self-supervised training data, or the learning itself?

For one subject at 3||1 (axis 2, SLR), the same network, schedule and wall-time budget (``model=<model>``) are fitted
on pairs from three sources and scored on the same LR input (PSNR / mean SSIM on the HR grid):

- ``lr_inplane``: the zero-shot model as shipped (pairs from the LR volume's own in-plane data);
- ``hr_inplane``: pairs from the HR volume's in-plane planes (the same planes without the thick-slice blur);
- ``hr_through_plane``: an oracle that cheats, with pairs whose thick-slice axis is the HR volume's true
  through-plane axis, i.e. exactly the test-time degradation.

If the oracle is not much better than ``lr_inplane``, the domain gap of self-supervision is not what limits the
gain over cubic; the amount the network learns within the budget is. Rows go to ``results/zeroshot_ceiling.csv``.

Uses the installed package (``make setup`` installs mrisr editable into ``.venv``), so no ``PYTHONPATH`` is needed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mrisr.api import simulate, super_resolve
from mrisr.core.atomic import write_atomic
from mrisr.data.zero_shot import PatchGeometry, SelfTrainingPairs
from mrisr.eval.image import image_metrics
from mrisr.inference import InferenceSettings, run_on_volume
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import as_volume
from mrisr.systems.zero_shot import ZeroShotSR
from mrisr.utils.config import compose

REPO = Path(__file__).resolve().parents[2]

SOURCES = ("lr_inplane", "hr_inplane", "hr_through_plane")


class FirstAxisPairs(SelfTrainingPairs):
    """Pairs whose thick-slice axis is always X of the given volume (dihedral flips kept)."""

    def batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
        flat = torch.searchsorted(self.cdf, u * self.cdf[-1]).clamp_max(self.cdf.numel() - 1)
        _, ny, nz = self.shape
        centres = torch.stack([flat // (ny * nz), (flat // nz) % ny, flat % nz], dim=1)
        variant = torch.randint(0, 8, (batch_size,), generator=generator) & 6  # bit 0 clear: thick axis = X
        return self.assemble(centres, variant)


class PairSourceSR(ZeroShotSR):
    """ZeroShotSR whose training pairs come from ``source`` (module attributes set by :func:`main`)."""

    source = "lr_inplane"
    hr_data: np.ndarray | None = None  # HR volume with the LR volume's axis order (thick-slice axis last)
    lr_data: np.ndarray | None = None  # the LR volume (its intensity scaling is applied to the HR data too)

    def training_pairs(self, data: torch.Tensor, kernel: np.ndarray, patch: PatchGeometry) -> SelfTrainingPairs:
        if self.source == "lr_inplane":
            return super().training_pairs(data, kernel, patch)
        assert self.hr_data is not None and self.lr_data is not None
        scaling = self.intensity.scaling(self.lr_data)  # the LR volume's, so intensities match the test input
        hr = torch.from_numpy(scaling.apply(self.hr_data).astype(np.float32))
        if self.source == "hr_inplane":
            return SelfTrainingPairs(hr, kernel, patch, self.sampling, self.sampling_sigma)
        return FirstAxisPairs(hr.permute(2, 1, 0).contiguous(), kernel, patch, self.sampling, self.sampling_sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--subject", default="errsm_11")
    parser.add_argument("--model", default="smore_fast")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds (fit + inference)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "zeroshot_ceiling.csv")
    args = parser.parse_args()

    hr = as_volume(args.data / "spine_hr" / args.subject / "t2.nii.gz")
    lr = as_volume(simulate(hr, thickness_mm=3.0, separation_mm=4.0, axis=2, seed=args.seed))
    geometry = detect_slice_axis(lr)
    cubic = image_metrics(as_volume(super_resolve(lr, model="cubic")), hr)
    rows = []
    for source in SOURCES:
        cfg = compose("infer", [f"model={args.model}", "input=x", "output=y"])
        model_cfg = OmegaConf.to_container(cfg.model)
        model_cfg["_target_"] = f"{__name__}.PairSourceSR"
        start = time.perf_counter()
        system = instantiate(model_cfg, max_time_s=args.budget, thickness_mm=3.0, seed=args.seed, progress_bar=False)
        system.source, system.hr_data = source, np.moveaxis(hr.data.astype(np.float32), geometry.axis, -1)
        system.lr_data = lr.data.astype(np.float32)
        result = run_on_volume(system, lr, InferenceSettings(axis=geometry.axis, seed=args.seed))
        summary, sr = result.fit.record, result.sr
        wall = time.perf_counter() - start
        metrics = image_metrics(sr, hr)
        rows.append(
            {
                "subject": args.subject,
                "setting": "3||1",
                "model": args.model,
                "pair_source": source,
                "budget_s": args.budget,
                "wall_s": round(wall, 1),
                "steps": summary["steps"],
                "psnr": metrics["psnr"],
                "ssim": metrics["ssim"],
                "psnr_cubic": cubic["psnr"],
                "ssim_cubic": cubic["ssim"],
                "dpsnr": metrics["psnr"] - cubic["psnr"],
            }
        )
        print(source, f"{wall:.0f}s psnr={metrics['psnr']:.3f} (+{metrics['psnr'] - cubic['psnr']:.2f} dB)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, lambda handle: pd.DataFrame(rows).to_csv(handle, index=False))


if __name__ == "__main__":
    main()
