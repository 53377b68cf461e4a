"""Zero-shot SR vs cubic B-spline interpolation at wall-time budgets, on simulated thick-slice spines.

For each subject (errsm_11/18/21, 1 mm sagittal T2w) and Dewey et al. setting T||G (3||0, 3||0.3, 3||0.5, 3||1:
T = 3 mm, S = 3.0/3.3/3.5/4.0 mm, SLR profile, slices along axis 2), the LR volume is simulated once (seeded) and
super-resolved by cubic interpolation and by ``model=<model>`` with ``max_time_s`` = each budget (fit + inference;
the measured wall time from model construction to the SR volume, excluding process start-up, config composition and
file I/O, is reported beside it). PSNR / mean SSIM on the HR grid (docs/evaluation.md §1). With ``run-eclare`` on
PATH an ECLARE column is added (run from its own environment; never a dependency of mrisr).

Results are appended to ``results/zeroshot_budget.csv`` (rows already present are skipped, so an interrupted run
resumes) and plotted to ``results/zeroshot_budget.png``. The full grid (3 subjects × 4 settings × 1+2+5+10+20 min)
takes about 7.6 hours on 2 CPU cores; choose a subset with the options, e.g.
``--settings "3||1" --budgets 1 5``.

Uses the installed package (``make setup`` installs mrisr editable into ``.venv``), so no ``PYTHONPATH`` is needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import nibabel as nib
import pandas as pd
from hydra.utils import instantiate

from mrisr.api import as_volume, simulate, super_resolve
from mrisr.eval.image import image_metrics
from mrisr.inference import output_grid
from mrisr.io.geometry import detect_slice_axis
from mrisr.utils.atomic import write_atomic
from mrisr.utils.config import compose

REPO = Path(__file__).resolve().parents[2]

SETTINGS = {"3||0": 3.0, "3||0.3": 3.3, "3||0.5": 3.5, "3||1": 4.0}


def zero_shot(lr: nib.Nifti1Image, model: str, budget_s: float, seed: int) -> tuple[object, dict, float]:
    """Fit + inference; returns the SR volume, the fit summary and the wall time (s) from model construction on."""
    cfg = compose("infer", [f"model={model}", "input=x", "output=y"])
    start = time.perf_counter()
    system = instantiate(cfg.model, max_time_s=budget_s, thickness_mm=3.0, seed=seed, progress_bar=False)
    volume = as_volume(lr)
    geometry = detect_slice_axis(volume)
    grid = output_grid(geometry, volume.shape[geometry.axis])
    summary = system.fit_volume(volume, geometry, grid)
    sr = system.super_resolve(volume, geometry, grid)
    return sr, summary, time.perf_counter() - start


def eclare(lr: nib.Nifti1Image, budget_s: float) -> object | None:
    exe = shutil.which("run-eclare")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lr.nii.gz"
        nib.save(lr, path)
        subprocess.run([exe, "--in-fpath", str(path), "--out-dir", tmp], check=True, timeout=budget_s * 10)
        out = next(Path(tmp).glob("*eclare*.nii.gz"))
        return as_volume(nib.load(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--subjects", nargs="+", default=["errsm_11", "errsm_18", "errsm_21"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--budgets", nargs="+", type=float, default=[1, 2, 5, 10, 20], help="minutes")
    parser.add_argument("--model", default="smore")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "zeroshot_budget.csv")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = (
        pd.read_csv(args.out)
        if args.out.exists()
        else pd.DataFrame(columns=["subject", "setting", "method", "budget_min"])
    )
    keys = {(r.subject, r.setting, r.method, float(r.budget_min)) for r in done.itertuples()}

    def record(rows: list[dict]) -> None:
        frame = pd.concat([pd.read_csv(args.out), pd.DataFrame(rows)]) if args.out.exists() else pd.DataFrame(rows)
        write_atomic(args.out, lambda handle: frame.to_csv(handle, index=False))

    for subject in args.subjects:
        hr = as_volume(args.data / "spine_hr" / subject / "t2.nii.gz")
        for setting in args.settings:
            lr = simulate(hr, thickness_mm=3.0, separation_mm=SETTINGS[setting], axis=2, seed=args.seed)
            if (subject, setting, "cubic", 0.0) not in keys:
                metrics = image_metrics(as_volume(super_resolve(lr, model="cubic")), hr)
                record(
                    [
                        {
                            "subject": subject,
                            "setting": setting,
                            "method": "cubic",
                            "budget_min": 0.0,
                            "wall_s": 0.0,
                            "steps": 0,
                            "psnr": metrics["psnr"],
                            "ssim": metrics["ssim"],
                        }
                    ]
                )
            for budget in args.budgets:
                for method in (args.model, "eclare"):
                    if (subject, setting, method, budget) in keys:
                        continue
                    start = time.perf_counter()
                    if method == "eclare":
                        sr = eclare(lr, budget * 60)
                        steps = None
                        if sr is None:
                            continue
                    else:
                        sr, summary, wall = zero_shot(lr, method, budget * 60, args.seed)
                        steps = summary["steps"]
                    if method == "eclare":
                        wall = time.perf_counter() - start
                    metrics = image_metrics(sr, hr)
                    record(
                        [
                            {
                                "subject": subject,
                                "setting": setting,
                                "method": method,
                                "budget_min": budget,
                                "wall_s": round(wall, 1),
                                "steps": steps,
                                "psnr": metrics["psnr"],
                                "ssim": metrics["ssim"],
                            }
                        ]
                    )
                    print(subject, setting, method, budget, f"{wall:.0f}s psnr={metrics['psnr']:.3f}", flush=True)
    plot(args.out)


def plot(csv_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pd.read_csv(csv_path)
    cubic = table[table.method == "cubic"].set_index(["subject", "setting"])[["psnr", "ssim"]]
    learned = table[table.method != "cubic"].join(cubic, on=["subject", "setting"], rsuffix="_cubic")
    learned["dpsnr"] = learned.psnr - learned.psnr_cubic
    learned["dssim"] = learned.ssim - learned.ssim_cubic
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    markers = {method: marker for method, marker in zip(sorted(learned.method.unique()), "os^Dv", strict=False)}
    # One colour per setting, a line through its budgets (mean over subjects), one marker per model config.
    for index, (setting, group) in enumerate(learned.groupby("setting")):
        colour = f"C{index}"
        mean = group.groupby("budget_min")[["dpsnr", "dssim"]].mean()
        for ax, column in zip(axes, ("dpsnr", "dssim"), strict=True):
            ax.plot(mean.index, mean[column], color=colour, lw=1, label=setting)
        for method, points in group.groupby("method"):
            per_budget = points.groupby("budget_min")[["dpsnr", "dssim"]].mean()
            for ax, column in zip(axes, ("dpsnr", "dssim"), strict=True):
                ax.scatter(per_budget.index, per_budget[column], color=colour, marker=markers[method], zorder=3)
    for method, marker in markers.items():
        axes[1].scatter([], [], color="0.4", marker=marker, label=method)
    for ax, name in zip(axes, ("PSNR gain over cubic (dB)", "SSIM gain over cubic"), strict=True):
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("wall-time budget, fit + inference (min, 2 CPU cores)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="T||G (mean of subjects)", title_fontsize=8)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(csv_path.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
