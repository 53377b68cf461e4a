"""What the QC report costs: a 20-volume cubic batch with and without ``qc=``, and screenshots of the report.

The batch: the four real thick scans of ``<data>/thick`` (axial 5 and 7.5 mm spine acquisitions; not the cord
segmentation), each linked five times under distinct names (20 inputs), super-resolved by ``model=cubic`` through
:func:`mrisr.app.infer.infer` (one process, the same config but ``qc``), first without a report, then with
``qc=<folder>``; each run writes into a fresh output folder so nothing is skipped. ``--repeats`` alternates the two runs
to even out the load of a shared machine. Rows (``results/qc_overhead.csv``): run, volumes, wall seconds, and the
overhead of the report relative to the run without it. With ``--screenshots DIR`` (headless Chromium on PATH), the index
page and the first volume's page of the last report are rendered to ``DIR/qc_index.png`` and ``DIR/qc_volume.png``.

Example: ``OMP_NUM_THREADS=1 python experiments/benchmarks/qc_overhead.py --screenshots docs/images``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mrisr.core.atomic import write_rows_atomic

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results"
COPIES = 5


def batch_inputs(data: Path, folder: Path) -> list[Path]:
    """Link every thick scan (not its segmentation) :data:`COPIES` times into ``folder``; returns the links."""
    scans = sorted(p for p in (data / "thick").glob("*.nii.gz") if not p.name.endswith("_seg.nii.gz"))
    if not scans:
        raise SystemExit(f"no thick scans under {data / 'thick'}")
    links = []
    for copy in range(COPIES):
        for scan in scans:
            link = folder / f"c{copy}_{scan.name}"
            link.symlink_to(scan)
            links.append(link)
    return links


def run_batch(inputs: Path, output_dir: Path, qc: Path | None) -> float:
    """Wall seconds of one ``infer`` batch of ``inputs/*.nii.gz`` with ``model=cubic``."""
    from mrisr.app.infer import infer
    from mrisr.utils.config import compose

    overrides = [f"inputs={inputs}/*.nii.gz", f"output_dir={output_dir}", "model=cubic", "progress=false"]
    if qc is not None:
        overrides.append(f"qc={qc}")
    cfg = compose("infer", overrides)
    start = time.perf_counter()
    status = infer(cfg)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"the batch failed (exit {status}); see the log above")
    return seconds


def screenshot(page: Path, target: Path) -> None:
    """Render ``page`` with headless Chromium to the PNG ``target``."""
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if chromium is None:
        raise SystemExit("headless chromium not found (apt-get install chromium)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
             "--window-size=1280,1400", f"--screenshot={target}", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--screenshots", type=Path, default=None, help="folder for the two report screenshots")
    parser.add_argument("--out", type=Path, default=RESULTS / "qc_overhead.csv")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inputs = root / "inputs"
        inputs.mkdir()
        volumes = len(batch_inputs(args.data, inputs))
        qc = None
        for repeat in range(args.repeats):
            plain = run_batch(inputs, root / f"plain{repeat}", None)
            qc = root / f"qc{repeat}"
            with_qc = run_batch(inputs, root / f"sr{repeat}", qc)
            rows.append({"repeat": repeat, "volumes": volumes, "seconds_without_qc": round(plain, 2),
                         "seconds_with_qc": round(with_qc, 2),
                         "overhead_percent": round(100 * (with_qc - plain) / plain, 1),
                         "load_average": round(os.getloadavg()[0], 2)})  # fmt: skip
            print(rows[-1], flush=True)
        write_rows_atomic(rows, args.out, fields=list(rows[0]))
        if args.screenshots is not None and qc is not None:
            pages = sorted(qc.glob("*/index.html"))  # one folder per volume
            screenshot(qc / "index.html", args.screenshots / "qc_index.png")
            screenshot(pages[0], args.screenshots / "qc_volume.png")
            print(f"screenshots in {args.screenshots}", flush=True)


if __name__ == "__main__":
    main()
