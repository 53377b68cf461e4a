"""Zero-shot SR vs cubic B-spline interpolation at wall-time budgets, on simulated thick-slice spines.

For each subject (errsm_11/18/21, 1 mm sagittal T2w) and Dewey et al. setting T||G (3||0, 3||0.3, 3||0.5, 3||1:
T = 3 mm, S = 3.0/3.3/3.5/4.0 mm, SLR profile, slices along axis 2), the LR volume is simulated once (seeded) and
super-resolved by cubic interpolation and by ``model=<model>`` with ``max_time_s`` = each budget (fit + inference;
the measured wall time from model construction to the SR volume, excluding process start-up, config composition and
file I/O, is reported beside it). PSNR / mean SSIM on the HR grid (docs/evaluation.md §1). With ``run-eclare`` on
PATH an ECLARE column is added (run from its own environment; never a dependency of mrisr).

Thickness modes (``--thickness``, one or more): ``given`` passes the true T = 3 mm to the model; ``estimate``
gives it nothing, so the thickness chain of :func:`mrisr.inference.run_on_volume` estimates T from the LR image
(:mod:`mrisr.physics.estimation`; the estimate and its source are in the CSV); ``separation`` assumes T = S (what a
NIfTI header alone implies). The estimation time is part of ``wall_s``. ``--models`` compares model configs, e.g.
``smore_fast`` (from scratch) against ``smore_prior`` (pretrained prior fine-tuned per volume).

Results are appended to ``results/zeroshot_budget.csv`` (rows already present are skipped, so an interrupted run
resumes) and plotted to ``results/zeroshot_budget.png``. The full grid (3 subjects × 4 settings × 1+2+5+10+20 min)
takes about 7.6 hours on 2 CPU cores; choose a subset with the options, e.g.
``--settings "3||1" --budgets 1 5 --models smore_fast smore_prior --thickness given estimate``.

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

from mrisr.api import simulate, super_resolve
from mrisr.core.atomic import write_atomic
from mrisr.eval.image import image_metrics
from mrisr.inference import InferenceSettings, run_on_volume
from mrisr.io.nifti import as_volume
from mrisr.utils.config import compose

REPO = Path(__file__).resolve().parents[2]

SETTINGS = {"3||0": 3.0, "3||0.3": 3.3, "3||0.5": 3.5, "3||1": 4.0}


THICKNESS_MODES = ("given", "estimate", "separation")


def zero_shot(lr: nib.Nifti1Image, model: str, budget_s: float, seed: int, thickness: str) -> tuple[object, dict]:
    """Thickness resolution + fit + inference of ``model`` on ``lr``; returns the SR volume and its record.

    The record holds the fit steps, the thickness used and its source, and ``wall_s``: seconds from model
    construction to the SR volume (thickness estimation included).
    """
    cfg = compose("infer", [f"model={model}", "input=x", "output=y"])
    start = time.perf_counter()
    given = {"given": 3.0, "estimate": None, "separation": None}[thickness]
    system = instantiate(cfg.model, max_time_s=budget_s, thickness_mm=given, seed=seed, progress_bar=False)
    settings = InferenceSettings(seed=seed, estimate_thickness=thickness == "estimate")
    result = run_on_volume(system, as_volume(lr), settings)
    wall = time.perf_counter() - start
    return result.sr, {
        "steps": result.fit.record["steps"],
        "thickness_mm": result.record["thickness_mm"],
        "thickness_source": result.record["thickness_source"],
        "wall_s": wall,
    }


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


def load_rows(path: Path) -> pd.DataFrame:
    """Rows already measured (empty frame if none); rows from before the thickness modes were given T."""
    if not path.exists():
        return pd.DataFrame(columns=[*KEY, "wall_s", "steps", "thickness_mm", "thickness_source", "psnr", "ssim"])
    rows = pd.read_csv(path)
    if "thickness_mode" not in rows:
        rows["thickness_mode"] = ["given" if method != "cubic" else "" for method in rows.method]
    rows["thickness_mode"] = rows["thickness_mode"].fillna("")
    return rows


KEY = ["subject", "setting", "method", "budget_min", "thickness_mode"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--subjects", nargs="+", default=["errsm_11", "errsm_18", "errsm_21"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--budgets", nargs="+", type=float, default=[1, 2, 5, 10, 20], help="minutes")
    parser.add_argument("--models", nargs="+", default=["smore"], help="model configs (conf/model)")
    parser.add_argument("--thickness", nargs="+", default=["given"], choices=THICKNESS_MODES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "zeroshot_budget.csv")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = load_rows(args.out)
    keys = {(r.subject, r.setting, r.method, float(r.budget_min), r.thickness_mode) for r in rows.itertuples()}

    def record(row: dict) -> None:
        nonlocal rows
        rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True)
        frame = rows
        write_atomic(args.out, lambda handle: frame.to_csv(handle, index=False))

    for subject in args.subjects:
        hr = as_volume(args.data / "spine_hr" / subject / "t2.nii.gz")
        for setting in args.settings:
            lr = simulate(hr, thickness_mm=3.0, separation_mm=SETTINGS[setting], axis=2, seed=args.seed)
            if (subject, setting, "cubic", 0.0, "") not in keys:
                metrics = image_metrics(as_volume(super_resolve(lr, model="cubic")), hr)
                record(
                    {
                        "subject": subject,
                        "setting": setting,
                        "method": "cubic",
                        "budget_min": 0.0,
                        "thickness_mode": "",
                        "wall_s": 0.0,
                        "steps": 0,
                        "psnr": metrics["psnr"],
                        "ssim": metrics["ssim"],
                    }
                )
            for budget in args.budgets:
                runs = [(model, mode) for model in args.models for mode in args.thickness] + [("eclare", "")]
                for method, mode in runs:
                    if (subject, setting, method, budget, mode) in keys:
                        continue
                    if method == "eclare":
                        start = time.perf_counter()
                        sr = eclare(lr, budget * 60)
                        if sr is None:
                            continue
                        info = {"steps": None, "wall_s": time.perf_counter() - start}
                    else:
                        sr, info = zero_shot(lr, method, budget * 60, args.seed, mode)
                    metrics = image_metrics(sr, hr)
                    record(
                        {
                            "subject": subject,
                            "setting": setting,
                            "method": method,
                            "budget_min": budget,
                            "thickness_mode": mode,
                            **info,
                            "wall_s": round(info["wall_s"], 1),
                            "psnr": metrics["psnr"],
                            "ssim": metrics["ssim"],
                        }
                    )
                    print(
                        subject,
                        setting,
                        method,
                        mode,
                        budget,
                        f"{info['wall_s']:.0f}s psnr={metrics['psnr']:.3f}",
                        flush=True,
                    )
    plot(args.out)


def plot(csv_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = load_rows(csv_path)
    modes = table.thickness_mode.fillna("")
    table["method"] = [
        method if mode in ("", "given") else f"{method} (T {mode})"
        for method, mode in zip(table.method, modes, strict=True)
    ]
    cubic = table[table.method == "cubic"].set_index(["subject", "setting"])[["psnr", "ssim"]]
    learned = table[table.method != "cubic"].join(cubic, on=["subject", "setting"], rsuffix="_cubic")
    learned["dpsnr"] = learned.psnr - learned.psnr_cubic
    learned["dssim"] = learned.ssim - learned.ssim_cubic
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    markers = {method: marker for method, marker in zip(sorted(learned.method.unique()), "os^Dv<>px*", strict=False)}
    # One colour per setting, one marker per model config, a line through each config's budgets (mean of subjects).
    for index, (setting, group) in enumerate(learned.groupby("setting")):
        colour = f"C{index}"
        for number, (method, points) in enumerate(group.groupby("method")):
            per_budget = points.groupby("budget_min")[["dpsnr", "dssim"]].mean()
            label = setting if number == 0 else None
            for ax, column in zip(axes, ("dpsnr", "dssim"), strict=True):
                ax.plot(per_budget.index, per_budget[column], color=colour, lw=1, label=label)
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
