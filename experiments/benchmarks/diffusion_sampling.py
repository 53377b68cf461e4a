"""Few-step sampling of the shipped diffusion models on held-out spines: sampler × steps → PSNR, SSIM, cord Dice, time.

Models (``--ddpm-model``, ``--residual-model``: any name ``infer.py model=…`` accepts or a checkpoint):
``zoo/palette_spine`` (conditional DDPM, ``experiment=palette_cpu``) is sampled with DDIM (Song et al. 2021),
DPM-Solver++ multistep (Lu et al. 2022) and UniPC (Zhao et al. 2023) at 1, 2, 4, 10, 20 and 50 model evaluations
("trailing" timesteps) and once with Graf et al.'s sampler (DDIM-20, "leading" timesteps 950 … 0: ``ddim_leading``);
``zoo/palette_residual_spine`` (InDI residual model, ``experiment=palette_residual_cpu``) with its Euler sampler at
1, 2 and 4 steps. Reference rows: ``cubic`` (cubic B-spline, what every model starts from), ``zeros`` (an all-zero
output) and ``constant`` (every voxel the mean of the thick input inside the box): floors that any model must beat.

Test inputs: the held-out ``errsm_11``, ``errsm_18``, ``errsm_21`` (never trained on; the subjects of
experiments/graf2024), cropped to A–P voxels 64–319, re-acquired as thick **axial** stacks by the ``graf_eval``
preset along I–S (voxel axis 1) without its final upsampling (multi-PSF SLR slices of 4–9 mm, centred gap, noise;
seed 0 + subject index, as experiments/graf2024/run.py), then super-resolved through
:func:`mrisr.inference.run_on_volume` (sagittal planes, one orientation, seed 0).

Where the models run (the **cord box**): the sagittal planes and A–P rows of the manual cord mask's bounding box
widened by :data:`MARGIN` voxels (the cord, its CSF ring and the canal wall), all I–S rows: the thick stack is cropped
to the box (exact affine) and every diffusion method super-resolves that crop. Image metrics are those of
:func:`mrisr.eval.image.image_metrics` on the HR box (intensities divided by the HR box's foreground 99.5th
percentile, clipped to [0, 1]) over the box voxels inside the thick stack's field of view (the **cord FOV**). The
cord: the classical segmenter (:class:`mrisr.segmentation.classical.ClassicalSegmenter`) on the whole cropped volume
on the HR grid, the cubic volume with the method's box pasted in (the segmenter needs the canal's surroundings),
Dice against the manual mask (a failed segmentation counts as 0); row ``HR`` is the segmenter on the HR volume.

Uncertainty: ``--sd-samplers`` (default DPM-Solver++-10) are also run with ``samples`` = 8 draws: the output is their
mean, and ``sd_error_spearman`` the Spearman rank correlation between the per-voxel SD map and |mean − HR| over the
cord FOV (``sd_error_spearman_tissue``: the FOV voxels whose normalised HR intensity exceeds 0.05, i.e. without the
air, where both are near 0). The residual model is deterministic (σ = 0): no SD map.

Time: ``seconds_box`` is the wall time of :func:`run_on_volume` on the box on CPU (threads: ``--threads``), and
``seconds_volume`` that time scaled by the number of voxels of a whole spine volume (52 sagittal planes of 384 × 225,
:data:`WHOLE_VOLUME`) over the box's — an extrapolation (sampling is linear in planes × pixels × evaluations);
``--whole-volume`` instead times the residual model on whole volumes (``results/diffusion_sampling_speed.csv``).
``dpsnr_ddim50`` is each row's PSNR minus the DDIM-50 row of the same subject and model.

Rows go to ``results/diffusion_sampling.csv`` (rows already present are skipped: an interrupted run resumes), the
plot to ``results/diffusion_sampling.png``. Example: ``OMP_NUM_THREADS=1 PYTHONPATH=src python
experiments/benchmarks/diffusion_sampling.py`` (the whole grid, about 1 h of one CPU core per subject).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrisr.core.atomic import save_figure_atomic, write_rows_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.data.pairs import crop_volume
from mrisr.diffusion.schedulers import DDIMSampler, DPMSolverSampler, UniPCSampler
from mrisr.eval.image import image_metrics
from mrisr.eval.lesions import dice
from mrisr.inference import InferenceSettings, run_on_volume
from mrisr.io.nifti import Volume, as_volume, load_volume
from mrisr.io.regrid import field_of_view_mask, on_grid

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).parent / "results"

TEST = ("errsm_11", "errsm_18", "errsm_21")
AXIS = 1  # I–S voxel axis of the shared PSR spines: an axial acquisition
AP_CROP = (64, 320)
MANUAL = "t2_manual_segmentation.nii.gz"
#: Voxels added on each side of the manual cord mask's bounding box along A–P (axis 0) and L–R (axis 2).
MARGIN = (16, 6)
#: The whole spine volume of the speed goal: 52 sagittal planes of 384 × 225 voxels.
WHOLE_VOLUME = 52 * 384 * 225

#: Sampler name → config class (Hydra-free: the benchmark sets ``model.sampler`` directly).
SAMPLERS = {"ddim": DDIMSampler, "dpmpp": DPMSolverSampler, "unipc": UniPCSampler}
STEPS = (1, 2, 4, 10, 20, 50)
RESIDUAL_STEPS = (1, 2, 4)
#: Graf et al.'s sampler: DDIM-20 with leading timesteps.
REFERENCE = ("ddim_leading", 20)
#: Row of ``dpsnr_ddim50``.
DDIM50 = ("ddim", 50)
SD_SAMPLES = 8
FIELDS = [
    "subject", "model", "method", "steps", "samples", "psnr", "ssim", "cord_dice", "dpsnr_ddim50",
    "sd_error_spearman", "sd_error_spearman_tissue", "seconds_box", "seconds_volume", "box_voxels", "threads", "status",
]  # fmt: skip


@dataclass
class Case:
    """One test subject: HR (cropped), its thick axial stack, the cord box and references.

    Attributes:
        subject: subject name.
        hr: HR volume (A–P cropped), the evaluation grid.
        lr: the thick axial stack on its own grid.
        box: ``(slice A–P, slice L–R)`` voxel ranges of the cord box on the HR grid.
        manual: manual cord mask on the HR grid (bool).
        cubic: cubic interpolation of ``lr`` on the HR grid (the composite's background).
    """

    subject: str
    hr: Volume
    lr: Volume
    box: tuple[slice, slice]
    manual: np.ndarray
    cubic: np.ndarray


def graf_eval_lr(hr: Volume, seed: int) -> Volume:
    """The ``graf_eval`` stack along I–S without its final upsampling (own thick-slice grid), seeded."""
    from hydra.utils import instantiate

    from mrisr.degradations.stack import DegradationStack
    from mrisr.utils.config import compose

    stack = instantiate(compose("train", ["degradation=graf_eval", f"++degradation.axis={AXIS}"]).degradation)
    if type(stack.steps[-1]).__name__ != "Upsample":
        raise MrisrInputError(None, "graf_eval no longer ends with Upsample", "update diffusion_sampling.py")
    return DegradationStack(stack.steps[:-1], axis=AXIS, setting="graf_eval_lr")(hr, seed=seed)


def cord_box(manual: np.ndarray, margin: tuple[int, int] = MARGIN) -> tuple[slice, slice]:
    """A–P (axis 0) and L–R (axis 2) voxel ranges of ``manual``'s bounding box widened by ``margin`` (clipped).

    Raises:
        MrisrInputError: an empty mask.
    """
    index = np.argwhere(manual)
    if index.size == 0:
        raise MrisrInputError(None, "the manual cord mask is empty", "pass the subject's t2_manual_segmentation")
    lo, hi = index.min(0), index.max(0) + 1
    return tuple(
        slice(max(int(lo[a]) - m, 0), min(int(hi[a]) + m, manual.shape[a])) for a, m in zip((0, 2), margin, strict=True)
    )  # type: ignore[return-value]


def crop_box(volume: Volume, box: tuple[slice, slice]) -> Volume:
    """``volume`` cropped to the box along axes 0 and 2 (world positions kept)."""
    return crop_volume(crop_volume(volume, 0, box[0].start, box[0].stop), 2, box[1].start, box[1].stop)


def build_case(subject: str, hr: Volume, manual: np.ndarray, seed: int, margin: tuple[int, int] = MARGIN) -> Case:
    """The :class:`Case` of an HR volume and its manual cord mask; thick stack :func:`graf_eval_lr` with ``seed``."""
    from mrisr.inference import interpolate_volume, output_grid
    from mrisr.io.geometry import detect_slice_axis

    lr = graf_eval_lr(hr, seed)
    geometry = detect_slice_axis(lr, axis=AXIS)
    cubic = interpolate_volume(lr, output_grid(geometry, lr.shape[AXIS]), order=3)
    return Case(subject, hr, lr, cord_box(manual, margin), manual, on_grid(cubic, hr, order=3).astype(np.float32))


def load_case(data: Path, subject: str, index: int, seed: int = 0, margin: tuple[int, int] = MARGIN) -> Case:
    """The ``index``-th test subject (acquisition seed ``seed + index``, as experiments/graf2024), A–P cropped."""
    base = data / "spine_hr" / subject
    hr = crop_volume(as_volume(base / "t2.nii.gz"), 0, *AP_CROP)
    manual = crop_volume(load_volume(base / MANUAL), 0, *AP_CROP).data > 0.5
    return build_case(subject, hr, manual, seed + index, margin)


def box_metrics(sr_box: Volume, case: Case) -> tuple[dict[str, float], np.ndarray, np.ndarray, np.ndarray]:
    """PSNR / SSIM over the cord FOV (module docstring); also the SR box and HR box on the HR box grid, normalised
    as the metrics normalise them, and the FOV mask."""
    from mrisr.eval.image import normalize_intensity

    hr_box = crop_box(case.hr, case.box)
    fov = field_of_view_mask(crop_box(case.lr, case.box), hr_box)
    metrics = image_metrics(sr_box, hr_box, mask=Volume(data=fov.astype(np.float32), affine=hr_box.affine))
    hr_n, sr_n = normalize_intensity(hr_box.data, on_grid(sr_box, hr_box, order=3), percentile=99.5, clip=True)
    return {"psnr": float(metrics["psnr_mask"]), "ssim": float(metrics["ssim_mask"])}, sr_n, hr_n, fov


def composite_dice(sr_box: Volume, case: Case, segmenter: Any) -> tuple[float, str]:
    """Cord Dice of the segmenter on the cubic volume with ``sr_box`` pasted into the box (0 when it fails)."""
    hr_box = crop_box(case.hr, case.box)
    volume = case.cubic.copy()
    volume[case.box[0], :, case.box[1]] = on_grid(sr_box, hr_box, order=3)
    try:
        mask = segmenter.segment(Volume(data=volume, affine=case.hr.affine))
    except (MrisrInputError, ValueError) as err:
        return 0.0, f"segmentation failed: {err}"
    return float(dice(on_grid(mask, case.hr, order=0) > 0.5, case.manual)), "ok"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equally shaped arrays (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def sd_error_correlation(sd: np.ndarray, sr_n: np.ndarray, hr_n: np.ndarray, region: np.ndarray) -> float:
    """Spearman correlation of the SD map ``sd`` and the absolute error |``sr_n`` − ``hr_n``| over ``region`` (all
    arrays on the HR box grid; a rank correlation, so the SD's intensity scale does not matter)."""
    return spearman(sd[region], np.abs(sr_n - hr_n)[region])


def floor_volume(kind: str, lr_box: Volume, like: Volume) -> Volume:
    """The ``zeros`` or ``constant`` (mean of the thick input in the box) output on ``like``'s grid."""
    value = 0.0 if kind == "zeros" else float(np.mean(lr_box.data))
    return Volume(data=np.full(like.shape, value, dtype=np.float32), affine=like.affine)


def sampler_runs(
    ddpm: Any,
    residual: Any,
    samplers: Sequence[str],
    steps: Mapping[str, Sequence[int]],
    residual_steps: Sequence[int],
    sd_samplers: Sequence[str],
) -> list[tuple[str, Any, str, int, int, Any]]:
    """``(model label, system, method, steps, samples, sampler)`` of every diffusion row, in run order."""
    runs: list[tuple[str, Any, str, int, int, Any]] = []
    if residual is not None:
        from mrisr.systems.diffusion import ResidualSampler

        runs += [
            (residual.method, residual, "residual", int(n), 1, ResidualSampler(steps=int(n))) for n in residual_steps
        ]
    if ddpm is not None:
        for name in samplers:
            runs += [(ddpm.method, ddpm, name, int(n), 1, SAMPLERS[name](steps=int(n))) for n in steps[name]]
        runs.append(
            (ddpm.method, ddpm, REFERENCE[0], REFERENCE[1], 1, DDIMSampler(steps=20, timestep_spacing="leading"))
        )
        for spec in sd_samplers:
            name, _, n = spec.partition(":")
            runs.append((ddpm.method, ddpm, name, int(n), SD_SAMPLES, SAMPLERS[name](steps=int(n))))
    return runs


def benchmark_case(
    case: Case,
    runs: Iterable[tuple[str, Any, str, int, int, Any]],
    skip: set[tuple[str, str, str, int, int]] | None = None,
    seed: int = 0,
    segmenter: Any = None,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Reference rows (HR, cubic, zeros, constant) and every diffusion run on one case (module docstring).

    Args:
        case: the test subject.
        runs: :func:`sampler_runs`.
        skip: ``(subject, model, method, steps, samples)`` already measured.
        seed: inference seed (the same noise for every row).
        segmenter: cord segmenter (default :class:`~mrisr.segmentation.classical.ClassicalSegmenter`).
        emit: called with every new row as soon as it is scored (for incremental writing).

    Returns:
        The new rows (:data:`FIELDS`; ``dpsnr_ddim50`` is filled by :func:`with_reference_gap`).
    """
    from mrisr.app.models import load_model
    from mrisr.segmentation.classical import ClassicalSegmenter

    skip = skip or set()
    segmenter = segmenter or ClassicalSegmenter()
    lr_box = crop_box(case.lr, case.box)
    hr_box = crop_box(case.hr, case.box)
    box_voxels = int(np.prod(hr_box.shape))
    threads = torch.get_num_threads()
    rows: list[dict[str, Any]] = []

    def add(model: str, method: str, steps: int, samples: int, sr_box: Volume | None, seconds: float,
            sd_box: Volume | None = None) -> None:  # fmt: skip
        row: dict[str, Any] = {"subject": case.subject, "model": model, "method": method, "steps": steps,
                               "samples": samples, "box_voxels": box_voxels, "threads": threads}  # fmt: skip
        if sr_box is None:  # the HR reference: only the segmenter
            try:
                mask = segmenter.segment(case.hr)
                row.update(cord_dice=float(dice(mask.data > 0.5, case.manual)), status="ok")
            except (MrisrInputError, ValueError) as err:
                row.update(cord_dice=0.0, status=f"segmentation failed: {err}")
        else:
            metrics, sr_n, hr_n, fov = box_metrics(sr_box, case)
            row.update(metrics)
            row["cord_dice"], row["status"] = composite_dice(sr_box, case, segmenter)
            row["seconds_box"] = round(seconds, 3)
            row["seconds_volume"] = round(seconds * WHOLE_VOLUME / box_voxels, 1)
            if sd_box is not None:
                sd = on_grid(sd_box, hr_box, order=1)
                row["sd_error_spearman"] = round(sd_error_correlation(sd, sr_n, hr_n, fov), 4)
                # Tissue only (HR above 5 % of the normalisation): air, where SD and error are both ~0, left out.
                row["sd_error_spearman_tissue"] = round(sd_error_correlation(sd, sr_n, hr_n, fov & (hr_n > 0.05)), 4)
        rows.append(row)
        if emit is not None:
            emit(row)
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k not in ("subject",)}
        print(case.subject, shown, flush=True)

    def todo(model: str, method: str, steps: int, samples: int) -> bool:
        return (case.subject, model, method, int(steps), int(samples)) not in skip

    if todo("-", "HR", 0, 1):
        add("-", "HR", 0, 1, None, 0.0)
    if todo("-", "cubic", 0, 1):
        result = run_on_volume(load_model("cubic"), lr_box, InferenceSettings(axis=AXIS, seed=seed))
        add("-", "cubic", 0, 1, result.sr, result.seconds)
    for kind in ("zeros", "constant"):
        if todo("-", kind, 0, 1):
            add("-", kind, 0, 1, floor_volume(kind, lr_box, hr_box), 0.0)
    for label, system, method, steps, samples, sampler in runs:
        if not todo(label, method, steps, samples):
            continue
        system.sampler = sampler
        system.samples, system.passes, system.progress = int(samples), 1, False
        system.validate_inference_options()
        with torch.inference_mode():
            result = run_on_volume(system, lr_box, InferenceSettings(axis=AXIS, seed=seed))
        add(label, method, steps, samples, result.sr, result.seconds, result.uncertainty)
    return rows


def with_reference_gap(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Adds ``dpsnr_ddim50`` = PSNR − PSNR of the single-sample DDIM-50 row of the same subject and model."""
    reference = {
        (r["subject"], r["model"]): float(r["psnr"])
        for r in rows
        if (r["method"], int(r["steps"])) == DDIM50 and int(r["samples"]) == 1
    }
    out = []
    for r in rows:
        ref = reference.get((r["subject"], r["model"]))
        has_psnr = r.get("psnr") not in (None, "")
        out.append({**r, "dpsnr_ddim50": round(float(r["psnr"]) - ref, 4) if ref is not None and has_psnr else ""})
    return out


def time_whole_volume(model: Any, volume: Volume, steps: Sequence[int], threads: Sequence[int], seed: int = 0,
                      ) -> list[dict[str, Any]]:  # fmt: skip
    """Wall seconds of :func:`run_on_volume` on a whole volume per residual ``steps`` and thread count."""
    from mrisr.systems.diffusion import ResidualSampler

    rows = []
    before = torch.get_num_threads()
    try:
        for n_threads in threads:
            torch.set_num_threads(int(n_threads))
            for n in steps:
                model.sampler, model.samples, model.passes, model.progress = ResidualSampler(steps=int(n)), 1, 1, False
                model.validate_inference_options()
                started, cpu = time.perf_counter(), time.process_time()
                with torch.inference_mode():
                    result = run_on_volume(model, volume, InferenceSettings(axis=AXIS, seed=seed))
                rows.append({
                    "model": model.method, "method": "residual", "steps": int(n), "threads": int(n_threads),
                    "output_shape": "x".join(str(s) for s in result.sr.shape), "seconds": round(result.seconds, 2),
                    "cpu_seconds": round(time.process_time() - cpu, 2),
                    "wall_seconds": round(time.perf_counter() - started, 2),
                    "sampling_seconds": result.details.get("sampling_seconds"),
                    "load_average_1min": round(os.getloadavg()[0], 2),
                })  # fmt: skip
                print(rows[-1], flush=True)
    finally:
        torch.set_num_threads(before)
    return rows


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MRISR_DATA", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--ddpm-model", default="zoo/palette_spine", help="name or checkpoint ('' = none)")
    parser.add_argument("--residual-model", default="zoo/palette_residual_spine", help="name or checkpoint ('' = none)")
    parser.add_argument("--subjects", nargs="+", default=list(TEST), choices=list(TEST))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--steps", nargs="+", type=int, default=list(STEPS))
    parser.add_argument("--multistep-steps", nargs="+", type=int, default=None,
                        help="steps of dpmpp / unipc (default: --steps)")  # fmt: skip
    parser.add_argument("--residual-steps", nargs="+", type=int, default=list(RESIDUAL_STEPS))
    parser.add_argument("--sd-samplers", nargs="*", default=["dpmpp:10"], help="<sampler>:<steps> run with 8 samples")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--whole-volume", action="store_true", help="time the residual model on whole volumes")
    parser.add_argument("--out", type=Path, default=RESULTS / "diffusion_sampling.csv")
    args = parser.parse_args(argv)
    from mrisr.app.models import load_model

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    ddpm = load_model(args.ddpm_model) if args.ddpm_model else None
    residual = load_model(args.residual_model) if args.residual_model else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.whole_volume:
        if residual is None:
            parser.error("--whole-volume needs --residual-model")
        speed_path = args.out.with_name("diffusion_sampling_speed.csv")
        volume = as_volume(args.data / "spine_hr" / "errsm_22" / "t2.nii.gz")  # 384 × 225 × 52: the goal's volume
        lr = graf_eval_lr(volume, args.seed)
        rows = [*read_rows(speed_path), *time_whole_volume(residual, lr, args.residual_steps, (1, 2), args.seed)]
        write_rows_atomic(rows, speed_path, list(rows[-1]))
        return
    multistep = args.multistep_steps or args.steps
    steps = {name: (args.steps if name == "ddim" else multistep) for name in args.samplers}
    runs = sampler_runs(ddpm, residual, args.samplers, steps, args.residual_steps, args.sd_samplers)
    done = read_rows(args.out)

    def emit(row: dict[str, Any]) -> None:
        done.append(row)
        write_rows_atomic(with_reference_gap(done), args.out, FIELDS)

    skip = {(r["subject"], r["model"], r["method"], int(r["steps"]), int(r["samples"])) for r in done}
    for subject in args.subjects:
        case = load_case(args.data, subject, TEST.index(subject), args.seed)
        benchmark_case(case, runs, skip, args.seed, emit=emit)
    write_rows_atomic(with_reference_gap(done), args.out, FIELDS)
    plot(args.out)


def plot(csv_path: Path) -> Path:
    """PSNR, SSIM and cord Dice against model evaluations (mean over subjects), one line per sampler, with the
    reference rows as horizontal lines; PSNR against the extrapolated seconds per whole volume."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.read_csv(csv_path)
    single = table[table.samples == 1]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [(axes[0, 0], "psnr", "PSNR in the cord FOV (dB)"), (axes[0, 1], "ssim", "mean SSIM in the cord FOV"),
              (axes[1, 0], "cord_dice", "cord Dice (classical segmenter)")]  # fmt: skip
    curves = single[~single.method.isin(["HR", "cubic", "zeros", "constant", REFERENCE[0]])]
    for index, (method, group) in enumerate(curves.groupby("method")):
        mean = group.groupby("steps")[["psnr", "ssim", "cord_dice", "seconds_volume"]].mean()
        for ax, column, _ in panels:
            ax.plot(mean.index, mean[column], "o-", color=f"C{index}", label=method)
        axes[1, 1].plot(mean.seconds_volume, mean.psnr, "o-", color=f"C{index}", label=method)
    styles = {"cubic": ("k", "--"), "constant": ("0.5", ":"), "HR": ("g", "-."), REFERENCE[0]: ("C9", "-.")}
    for method, (colour, style) in styles.items():
        rows = single[single.method == method]
        for ax, column, _ in [*panels, (axes[1, 1], "psnr", "")]:
            value = rows[column].mean() if column in rows else math.nan
            if not math.isnan(float(value)):
                label = f"{method} (Graf: DDIM-20 leading)" if method == REFERENCE[0] else method
                ax.axhline(float(value), color=colour, lw=0.9, ls=style, label=label)
    for ax, _, name in panels:
        ax.set(xscale="log", xlabel="model evaluations (steps)", ylabel=name)
    axes[1, 1].set(xscale="log", xlabel="seconds per whole spine volume (1 thread, extrapolated)", ylabel="PSNR (dB)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    models = ", ".join(sorted(m for m in table.model.astype(str).unique() if m != "-"))
    fig.suptitle(f"Diffusion SR samplers on errsm_11/18/21, graf_eval axial stacks ({models})", fontsize=10)
    fig.tight_layout()
    path = csv_path.with_suffix(".png")
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
