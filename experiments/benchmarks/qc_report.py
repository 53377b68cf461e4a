"""Cost of the HTML QC report (mrisr.report.qc) next to a cubic inference batch, on the real thick-slice scans.

Same machine, same run: (1) the batch command ``infer.py inputs=<the scans> output_dir=… model=cubic`` (load, cubic
B-spline SR, atomic ``.nii.gz`` save, SHA-256 digests, forward-consistency check, sidecar) — its wall time and the
per-volume seconds of ``batch_summary.csv``, plus the inference time alone (sidecar ``seconds``, and again in this
process); (2) here, with input and output in memory as the runner holds them: the forward residual
(:func:`mrisr.eval.consistency.resimulate_input` minus the input; the runner's forward check computes the same
re-acquisition, so passing it on costs nothing), :func:`~mrisr.report.qc.write_qc_page` with input, output and residual
(``qc_page_s``; the first page of a process also imports matplotlib's colour maps; ``qc_page_again_s``: the same
page written a second time, without one-time costs), for the scan with a cord
segmentation also with the cord outline, a CSA plot and views through the cord centre (``qc_page_cord_s``), and
:func:`~mrisr.report.qc.write_qc_index` once.

Run: ``PYTHONPATH=$PWD/src python experiments/benchmarks/qc_report.py`` → ``results/qc_report.csv`` (one row per scan
and a ``batch`` row of totals, whose ``batch_volume_s`` is the command's wall time, start-up included, and
``batch_cpu_s`` its CPU time). Timings are single runs with one thread on a shared machine: wall times include waiting
for the CPU when other jobs run; the CPU times (``*_cpu_s``) do not.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from mrisr.models import load_model

from mrisr.api import as_volume
from mrisr.core.atomic import write_rows_atomic
from mrisr.eval.consistency import resimulate_input
from mrisr.inference import interpolate_volume, run_on_volume
from mrisr.io.nifti import Volume, load_volume
from mrisr.report.qc import QCEntry, write_qc_index, write_qc_page

REPO = Path(__file__).resolve().parents[2]
FIELDS = (
    "scan",
    "input_shape",
    "output_shape",
    "batch_volume_s",
    "batch_cpu_s",
    "inference_s",
    "inference_inprocess_s",
    "residual_s",
    "qc_page_s",
    "qc_page_cpu_s",
    "qc_page_again_s",
    "qc_page_cord_s",
    "qc_index_s",
    "qc_over_batch_pct",
    "qc_and_residual_over_batch_pct",
    "qc_over_inference_pct",
)


def cord_inputs(seg_path: Path, sr: Volume, grid) -> tuple[Volume, list[tuple[float, float]], tuple[float, ...]]:
    """Cord mask on the output grid (linear interpolation of the input-grid segmentation, > 0.5), the CSA of every
    output slice (voxel count × in-plane voxel area, mm²) against its position along the slice axis (mm), and the
    mask's centroid (world mm)."""
    seg = load_volume(seg_path, allow_constant=True)
    mask = interpolate_volume(seg, grid, order=1).data > 0.5
    axis = grid.axis
    inplane = [a for a in range(3) if a != axis]
    area = float(np.prod([np.linalg.norm(sr.affine[:3, a]) for a in inplane]))
    counts = np.moveaxis(mask, axis, 0).reshape(mask.shape[axis], -1).sum(axis=1)
    step = float(np.linalg.norm(sr.affine[:3, axis]))
    csa = [(k * step, float(c) * area) for k, c in enumerate(counts) if c > 0]
    centroid = np.argwhere(mask).mean(axis=0)
    landmark = tuple((sr.affine[:3, :3] @ centroid + sr.affine[:3, 3]).tolist())
    return Volume(mask.astype(np.float32), sr.affine), csa, landmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "qc_report.csv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scans = sorted(p for p in (args.data / "thick").glob("*.nii.gz") if not p.name.endswith("_seg.nii.gz"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        for scan in scans:
            (work / "in" / scan.name).symlink_to(scan.resolve())
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
        command = [sys.executable, str(REPO / "infer.py"), f"inputs={work / 'in'}/*.nii.gz"]
        command += [f"output_dir={work / 'sr'}", "model=cubic", "device=cpu"]
        start = time.perf_counter()
        subprocess.run(command, cwd=work, env=env, check=True, capture_output=True)
        batch_wall = time.perf_counter() - start
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        batch_cpu = children.ru_utime + children.ru_stime
        with open(work / "sr" / "batch_summary.csv", newline="") as handle:
            batch = {Path(row["input"]).name: float(row["seconds"]) for row in csv.DictReader(handle)}

        model = load_model("cubic")
        rows = []
        pages = []
        for scan in scans:
            stem = scan.name.removesuffix(".nii.gz")
            lr = as_volume(scan)
            sr = load_volume(work / "sr" / f"{stem}_sr.nii.gz")
            (sidecar_file,) = (work / "sr").glob(f"{stem}_sr*.json")  # the run record the batch wrote
            sidecar = json.loads(sidecar_file.read_text())
            start = time.perf_counter()
            result = run_on_volume(model, lr)
            inference = time.perf_counter() - start
            thickness = float(sidecar["forward_consistency"]["thickness_mm"])
            start = time.perf_counter()
            resim, _ = resimulate_input(sr, lr, result.geometry, thickness)
            residual = Volume((resim - lr.data).astype(np.float32), lr.affine)
            residual_s = time.perf_counter() - start
            record = {**sidecar, "thickness_mm": thickness, "thickness_source": "separation", "warnings": []}
            pages.append((stem, lr, sr, residual, record, result.grid))
            rows.append(
                {
                    "scan": stem,
                    "input_shape": "x".join(map(str, lr.shape)),
                    "output_shape": "x".join(map(str, sr.shape)),
                    "batch_volume_s": batch[scan.name],
                    "inference_s": sidecar["seconds"],
                    "inference_inprocess_s": round(inference, 3),
                    "residual_s": round(residual_s, 3),
                }
            )
        for row, (stem, lr, sr, residual, record, grid) in zip(rows, pages, strict=True):
            start, cpu = time.perf_counter(), time.process_time()
            write_qc_page(QCEntry(stem, lr, sr, record=record, residual=residual), work / "qc")
            row["qc_page_s"] = round(time.perf_counter() - start, 3)
            row["qc_page_cpu_s"] = round(time.process_time() - cpu, 3)
            start = time.perf_counter()
            write_qc_page(QCEntry(stem, lr, sr, record=record, residual=residual), work / "qc")
            row["qc_page_again_s"] = round(time.perf_counter() - start, 3)
            seg = args.data / "thick" / f"{stem}_seg.nii.gz"
            if seg.is_file():
                mask, csa, landmark = cord_inputs(seg, sr, grid)
                entry = QCEntry(f"{stem}_cord", lr, sr, record, residual, None, mask, csa, landmark)
                start = time.perf_counter()
                write_qc_page(entry, work / "qc")
                row["qc_page_cord_s"] = round(time.perf_counter() - start, 3)
            row["qc_over_batch_pct"] = round(100 * row["qc_page_s"] / row["batch_volume_s"], 1)
            row["qc_and_residual_over_batch_pct"] = round(
                100 * (row["qc_page_s"] + row["residual_s"]) / row["batch_volume_s"], 1
            )
            row["qc_over_inference_pct"] = round(100 * row["qc_page_s"] / row["inference_s"], 1)
            print(row, flush=True)
        start = time.perf_counter()
        write_qc_index(work / "qc")
        index_s = round(time.perf_counter() - start, 3)
        qc_total = sum(r["qc_page_s"] for r in rows) + index_s
        total = {
            "scan": "batch",
            "batch_volume_s": round(batch_wall, 2),  # the whole command, start-up included
            "batch_cpu_s": round(batch_cpu, 2),
            "inference_s": round(sum(r["inference_s"] for r in rows), 3),
            "inference_inprocess_s": round(sum(r["inference_inprocess_s"] for r in rows), 3),
            "residual_s": round(sum(r["residual_s"] for r in rows), 3),
            "qc_page_s": round(qc_total, 3),
            "qc_page_cpu_s": round(sum(r["qc_page_cpu_s"] for r in rows), 3),
            "qc_index_s": index_s,
            "qc_over_batch_pct": round(100 * qc_total / batch_wall, 1),
            "qc_and_residual_over_batch_pct": round(
                100 * (qc_total + sum(r["residual_s"] for r in rows)) / batch_wall, 1
            ),
            "qc_over_inference_pct": round(100 * qc_total / sum(r["inference_s"] for r in rows), 1),
        }
        print(total)
        write_rows_atomic([*rows, total], args.out, fields=FIELDS)


if __name__ == "__main__":
    main()
