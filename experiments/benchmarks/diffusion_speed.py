"""CPU speed of the Graf et al. conditional diffusion U-Net: seconds per 160×160 slice for one network evaluation.

Measures ``ConditionalUNet()`` (the Graf-equivalent ``UNet2DModel``, 9,834,753 parameters, docs/models.md §3.1)
in eval mode under ``torch.inference_mode`` on 160×160 slices (Graf's crop size), batch 1 and batch 4, in float32
and under bfloat16 autocast. Each row gives the median seconds per forward call, seconds per slice, and the implied
seconds per slice for a 20-step DDIM run (20 evaluations; scheduler arithmetic is negligible next to the network).

Run: ``nice -n 10 .venv/bin/python experiments/benchmarks/diffusion_speed.py`` →
``experiments/benchmarks/results/diffusion_speed.csv``. The machine is shared: the 1-minute load average is recorded
with every row, and numbers taken under load are upper bounds on the time (with several processes competing for the
cores, ``--threads 1`` can be faster than the default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from mrisr.core.atomic import write_rows_atomic  # noqa: E402
from mrisr.nets.diffusion_unet import ConditionalUNet  # noqa: E402

FIELDS = (
    "model",
    "parameters",
    "size",
    "batch",
    "precision",
    "threads",
    "repeats",
    "seconds_per_call",
    "seconds_per_slice",
    "ddim20_seconds_per_slice",
    "load_avg_1min",
    "cpu_count",
    "torch",
)


def time_forward(net: ConditionalUNet, batch: int, size: int, dtype: torch.dtype | None, repeats: int) -> float:
    """Median seconds of one forward call (after one warm-up call)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch, 1, size, size), generator=generator)
    condition = torch.rand((batch, 1, size, size), generator=generator) * 2 - 1
    timesteps = torch.full((batch,), 500)
    autocast = torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)
    durations = []
    with torch.inference_mode(), autocast:
        net(x, condition, timesteps)
        for _ in range(repeats):
            start = time.perf_counter()
            net(x, condition, timesteps)
            durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "diffusion_speed.csv")
    parser.add_argument("--size", type=int, default=160, help="slice side, pixels (multiple of 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--budget", type=float, default=110.0, help="stop starting new measurements after this (s)")
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = ConditionalUNet().eval()
    parameters = sum(p.numel() for p in net.parameters())
    began = time.perf_counter()
    rows = []
    for batch in (1, 4):
        for name, dtype in (("fp32", None), ("bf16-autocast", torch.bfloat16)):
            if time.perf_counter() - began > args.budget:
                print(f"budget of {args.budget:.0f} s reached; skipping batch {batch} {name}")
                continue
            seconds = time_forward(net, batch, args.size, dtype, args.repeats)
            rows.append(
                {
                    "model": "graf_conditional_unet",
                    "parameters": parameters,
                    "size": f"{args.size}x{args.size}",
                    "batch": batch,
                    "precision": name,
                    "threads": torch.get_num_threads(),
                    "repeats": args.repeats,
                    "seconds_per_call": round(seconds, 4),
                    "seconds_per_slice": round(seconds / batch, 4),
                    "ddim20_seconds_per_slice": round(20 * seconds / batch, 3),
                    "load_avg_1min": round(os.getloadavg()[0], 2),
                    "cpu_count": os.cpu_count(),
                    "torch": torch.__version__,
                }
            )
            print(rows[-1])
    write_rows_atomic(rows, args.out, FIELDS)
    print(f"wrote {args.out} ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
