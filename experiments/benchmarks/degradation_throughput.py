"""Throughput of the degradation stack: training pairs on 2-D planes and whole test volumes, on CPU.

Measures samples/s of ``DegradationStack.sample_pair`` for the full Graf et al. stack (``graf_table2_row8``), its
physics-only part and two other presets on 160×160 planes (Δ = 0.8571 mm, Graf's crop size) and on 64×64 planes
(the supervised model's patch size), with 1 and 2 torch threads; whole-volume rates on a real 1 mm spine
(384×216×52) for the test-time call (``preset(volume, seed)``) and for the full training stack applied in 3-D; our
bias field against TorchIO's ``RandomBiasField`` on 256×256×64; and the train-step rate of the supervised model
(``conf/model/edsr_small.yaml``, batch 16 of 64×64 patches, the data module's defaults), to report how much faster
the pipeline feeds samples than the model consumes them.

Run: ``.venv/bin/python experiments/benchmarks/degradation_throughput.py`` →
``experiments/benchmarks/results/degradation_throughput.csv`` (one row per measurement, with the 1-minute load
average: the project machine is shared, so numbers taken under load are lower bounds).

Uses the installed package (``make setup`` installs mrisr editable into ``.venv``), so no ``PYTHONPATH`` is needed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchio as tio
from hydra.utils import instantiate

from mrisr.degradations import DegradationStack, RandomBiasField
from mrisr.degradations.base import AcquisitionGeometry
from mrisr.io.nifti import Volume, load_volume
from mrisr.utils.config import compose

REPO = Path(__file__).resolve().parents[2]

PLANE_PRESETS = ("graf_table2_row8", "graf_eval", "clinical_mix", "slice_profile")
VOLUME_PRESETS = ("graf_table2_row8", "clinical_mix", "prettier")


def preset(name: str) -> DegradationStack:
    return instantiate(compose("train", [f"degradation={name}"]).degradation)


def physics_only(stack: DegradationStack) -> DegradationStack:
    """The acquisition steps of a stack (slice profile, gap, down, up): no augmentation, no noise."""
    keep = ("SliceProfile", "RandomSliceProfile", "SliceGap", "RandomSliceGap", "Downsample", "Upsample")
    return DegradationStack(steps=[s for s in stack.steps if type(s).__name__ in keep], setting="physics")


def timed(fn: Callable[[int], object], count: int, warmup: int = 3) -> float:
    """Seconds per call (median of ``count`` calls after ``warmup``)."""
    for k in range(warmup):
        fn(k)
    durations = []
    for k in range(count):
        start = time.perf_counter()
        fn(warmup + k)
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def row(benchmark: str, name: str, shape: tuple[int, ...], threads: int, seconds: float, batch: int = 1) -> dict:
    return {
        "benchmark": benchmark,
        "preset": name,
        "shape": "x".join(str(n) for n in shape),
        "threads": threads,
        "batch": batch,
        "seconds_per_call": seconds,
        "samples_per_s": batch / seconds,
        "load_avg_1min": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }


def spine_volume(data_dir: Path) -> Volume:
    path = data_dir / "spine_hr" / "errsm_11" / "t2.nii.gz"
    if path.is_file():
        return load_volume(path)
    rng = np.random.default_rng(0)
    return Volume(data=rng.uniform(0, 1, (384, 216, 52)).astype(np.float32), affine=np.eye(4))


def model_step_seconds(batch: int, patch: int) -> float:
    """Seconds per training step (forward, L1 loss, backward, Adam) of the supervised default model."""
    cfg = compose("train", ["model=edsr_small"])
    model = instantiate(cfg.model)
    optimizer = model.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    model.train()
    lr = torch.rand(batch, 1, patch, patch)
    hr = torch.rand(batch, 1, patch, patch)

    def step(_: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model.criterion(model(lr), hr)
        loss.backward()
        optimizer.step()

    return timed(step, 5, warmup=1)


def pair_seconds(stack: DegradationStack, planes: torch.Tensor, count: int) -> float:
    """Seconds per ``sample_pair`` call on planes of shape ``planes.shape[1:]``."""
    generator = torch.Generator().manual_seed(1)
    return timed(lambda k: stack.sample_pair(planes[k % len(planes)], 0.8571, generator), count)


def train_stack_volume_seconds(stack: DegradationStack, volume: Volume) -> float:
    """Seconds for the whole training stack (train-only steps included) applied in 3-D to a volume."""
    x = torch.from_numpy(volume.data / np.percentile(volume.data[volume.data > 0], 99.5)).float()[None, None]
    generator = torch.Generator().manual_seed(2)
    return timed(lambda k: stack.degrade(x, 1.0, generator, axis=2, train=True, to_hr_grid=True), 3, 1)


def bias_field_seconds(shape: tuple[int, int, int]) -> tuple[float, float]:
    """Seconds per bias field on a volume: ours and TorchIO's ``RandomBiasField`` (same distribution)."""
    data = torch.rand((1, 1, *shape))
    ours = RandomBiasField(prob=1.0)
    geometry = AcquisitionGeometry(axis=2, spacing_mm=1.0, spatial_shape=shape)

    def apply_ours(k: int) -> torch.Tensor:
        planned = ours.plan(torch.Generator().manual_seed(k), geometry)
        return planned.op.apply_tensor(data, 2, planned.params)

    theirs = tio.RandomBiasField(coefficients=(-0.5, 0.0), order=3)
    image = tio.ScalarImage(tensor=data[0])
    return timed(apply_ours, 3, 1), timed(lambda k: theirs(image), 3, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "degradation_throughput.csv")
    parser.add_argument("--samples", type=int, default=100, help="timed sample_pair calls per measurement")
    args = parser.parse_args()
    rows: list[dict] = []
    volume = spine_volume(args.data)

    for threads in (1, 2):
        torch.set_num_threads(threads)
        for size in (160, 64):
            planes = torch.rand(8, 1, size, size, generator=torch.Generator().manual_seed(0))
            for name in PLANE_PRESETS:
                seconds = pair_seconds(preset(name), planes, args.samples)
                rows.append(row("sample_pair", name, (1, size, size), threads, seconds))
                print("sample_pair", name, size, threads, f"{1 / seconds:.1f} samples/s", flush=True)
            seconds = pair_seconds(physics_only(preset("graf_table2_row8")), planes, args.samples)
            rows.append(row("sample_pair", "graf_table2_row8[physics only]", (1, size, size), threads, seconds))

        for name in VOLUME_PRESETS:
            stack = preset(name)
            seconds = timed(lambda k, s=stack: s(volume, seed=k), 3, warmup=1)
            rows.append(row("volume_test_time", name, volume.shape, threads, seconds))
            print("volume_test_time", name, threads, f"{seconds:.2f} s/volume", flush=True)
        seconds = train_stack_volume_seconds(preset("graf_table2_row8"), volume)
        rows.append(row("volume_train_stack_3d", "graf_table2_row8", volume.shape, threads, seconds))
        print("volume_train_stack_3d", threads, f"{seconds:.2f} s/volume", flush=True)

        ours, theirs = bias_field_seconds((256, 256, 64))
        rows.append(row("bias_field", "mrisr RandomBiasField", (256, 256, 64), threads, ours))
        rows.append(row("bias_field", "torchio RandomBiasField", (256, 256, 64), threads, theirs))
        print("bias field", threads, f"ours {ours:.3f} s, torchio {theirs:.3f} s", flush=True)

        seconds = model_step_seconds(16, 64)
        rows.append(row("model_train_step", "edsr_small", (16, 1, 64, 64), threads, seconds, batch=16))
        print("model step", threads, f"{seconds:.3f} s/step, {16 / seconds:.1f} samples/s", flush=True)

    # Feed ratio: pipeline samples/s (full Graf stack, one process) / model samples/s, at the same thread count.
    table = pd.DataFrame(rows)
    for threads in (1, 2):
        model_rate = table[(table.benchmark == "model_train_step") & (table.threads == threads)].samples_per_s.iloc[0]
        for size in (160, 64):
            sel = (
                (table.benchmark == "sample_pair")
                & (table.preset == "graf_table2_row8")
                & (table.threads == threads)
                & (table["shape"] == f"1x{size}x{size}")
            )
            ratio = row("feed_ratio_vs_model", "graf_table2_row8 / edsr_small", (1, size, size), threads, 1.0)
            ratio.update(
                seconds_per_call=float("nan"), samples_per_s=float(table[sel].samples_per_s.iloc[0] / model_rate)
            )
            rows.append(ratio)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
