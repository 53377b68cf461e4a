"""``infer(cfg)``: inference on one volume or on many (glob, manifest CSV or BIDS directory) with verified resume.

The application behind ``infer.py`` (a thin command-line shim) and the ``mrisr-infer`` console script.

Every output is written atomically (temporary file + rename) and followed by a JSON sidecar that records the SHA-256
of the input and of the output. A later batch run skips an output only when its sidecar exists and both digests
match the files on disk (a present but truncated, stale or foreign file is redone). Per-file failures are isolated,
reported in a summary table and make the run exit non-zero.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mrisr.app.models import build_inference_model, resolve_device
from mrisr.core.atomic import check_output_folder, write_json_atomic, write_rows_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.inference import InferenceResult, InferenceSettings, VolumeSuperResolver, run_on_volume
from mrisr.io.nifti import Volume, as_volume, same_file, save_volume

log = logging.getLogger("mrisr.infer")

USAGE = """Super-resolve thick-slice volumes (Hydra application; config conf/infer.yaml).

Usage: ``python infer.py input=LR.nii.gz output=SR.nii.gz model=cubic`` (one volume; or ``mrisr-infer …``), or
``python infer.py inputs='data/**/*.nii.gz' output_dir=out/ model=smore`` (many volumes: glob, manifest CSV or BIDS
directory; completed outputs are verified and skipped, failures are isolated and summarised, exit code 1 if any).
Trained models are rebuilt from their checkpoint alone (``ckpt_path=…``); ``model=`` takes any model name of
conf/model (``cubic``, ``smore_prior``, ``zoo/…``). Outputs lie on the isotropic grid (or ``target_spacing_mm``) and
overlay their inputs in world coordinates; a JSON sidecar records what was done.
"""

#: Expected types of the options whose default (``null``) does not tell.
OPTION_TYPES: dict[str, type] = {
    "thickness": float,
    "target_spacing_mm": float,
    "budget.max_time": float,
    "budget.max_steps": int,
}

NIFTI_SUFFIXES = (".nii", ".nii.gz")

#: infer.yaml keys that set inference options of per-volume models: {key: constructor argument}.
PER_VOLUME_KEYS = {
    "thickness": "thickness_mm",
    "profile": "profile",
    "budget.max_time": "max_time_s",
    "budget.max_steps": "max_steps",
}


def nifti_stem(path: Path) -> str:
    """``a/b/sub-01_T2w.nii.gz`` → ``sub-01_T2w``."""
    return path.name.removesuffix(".gz").removesuffix(".nii")


def sidecar_path(output: Path) -> Path:
    """``SR.nii.gz`` → ``SR.mrisr.json``."""
    return output.with_name(f"{nifti_stem(output)}.mrisr.json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_option_overrides(argv: list[str]) -> list[str]:
    """Let ``model.<key>=value`` reach a checkpoint model even when the named model's YAML omits ``key``.

    With ``ckpt_path=`` the model is rebuilt from the checkpoint, and its inference options are checked against the
    options the model declares (:func:`mrisr.app.models.build_inference_model`), so the command line may name options
    that the config file leaves at their code defaults: such overrides become Hydra's add-or-override form
    ``++model.<key>=value``. Without ``ckpt_path=`` the arguments are returned unchanged (Hydra rejects typos).
    """
    if not any(arg.startswith("ckpt_path=") and arg != "ckpt_path=null" for arg in argv):
        return list(argv)
    return [f"++{arg}" if arg.startswith("model.") else arg for arg in argv]


def command_line_overrides() -> list[str]:
    """The Hydra overrides of the running command (``[]`` outside a Hydra application)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def inference_options(cfg: DictConfig, overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Inference options requested by ``cfg``: the per-volume keys that are set, and ``model.*`` overrides.

    Returns:
        ``(options, model_keys)``: ``{constructor argument: value}`` and the ``model.*`` keys given on the command
        line (they only need applying to models rebuilt from a checkpoint; config-built models already hold them).
    """
    options: dict[str, Any] = {}
    for key, argument in PER_VOLUME_KEYS.items():
        value = OmegaConf.select(cfg, key)
        if value is not None:
            if key.startswith("budget.") and not float(value) > 0:
                raise MrisrInputError(None, f"{key}={value} must be > 0", f"pass a positive {key}, or drop it")
            options[argument] = value
    model_keys = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("model."):
            model_keys.append(key)
    return options, model_keys


def build_model(cfg: DictConfig) -> tuple[VolumeSuperResolver, Any]:
    """The SR model described by ``cfg`` (a checkpoint, or ``cfg.model``) with its inference options applied.

    Returns:
        ``(model, description)``: the description (checkpoint path or resolved model config) goes to sidecars.
    """
    overrides = command_line_overrides()
    options, model_keys = inference_options(cfg, overrides)
    device = resolve_device(str(cfg.device))
    if cfg.ckpt_path:
        for key in model_keys:
            options[key.removeprefix("model.")] = OmegaConf.select(cfg, key)
        chosen = any(o.split("=", 1)[0] == "model" for o in overrides)
        model = build_inference_model(
            None, cfg.ckpt_path, options, device=device, expected_target=cfg.model._target_ if chosen else None
        )
        return model, f"checkpoint:{cfg.ckpt_path}"
    model = build_inference_model(cfg.model, None, options, device=device)
    description = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(description, dict)
    description.update(options)
    return model, description


def forward_check(source: Path, volume: Volume, result: InferenceResult, estimate: bool) -> dict[str, Any]:
    """Re-acquire the input from the SR output with the physics forward model and compare (no ground truth needed).

    The thickness is the one the model used, else the input's acquisition resolved by the same chain as a per-volume
    model's (argument, sidecar, estimate when ``estimate``, separation). A poor match is logged as a warning.
    """
    from mrisr.eval.consistency import forward_consistency
    from mrisr.inference.acquisition import resolve_acquisition

    acquisition = result.acquisition or resolve_acquisition(source, volume, result.geometry, None, estimate)
    report = forward_consistency(result.sr, volume, float(acquisition.thickness_mm), geometry=result.geometry)
    if report.warn:
        log.warning(
            "%s: the SR output re-acquired with T = %.3g mm matches its input poorly (PSNR %.1f dB); check the "
            "thickness, the axis and the model",
            source,
            acquisition.thickness_mm,
            report.psnr,
        )
    summary = report.as_dict()
    summary.update(thickness_mm=float(acquisition.thickness_mm), thickness_source=acquisition.thickness_source)
    return summary


def settings_from(cfg: DictConfig) -> InferenceSettings:
    """The :class:`~mrisr.inference.InferenceSettings` of an ``infer`` config."""
    return InferenceSettings(
        axis=cfg.axis,
        target_spacing_mm=cfg.target_spacing_mm,
        allow_anisotropic_inplane=bool(cfg.allow_anisotropic_inplane),
        seed=int(cfg.seed),
        estimate_thickness=bool(cfg.estimate_thickness),
    )


def super_resolve_file(
    model: VolumeSuperResolver, model_name: Any, source: Path, target: Path, cfg: DictConfig
) -> dict[str, Any]:
    """Super-resolve ``source`` into ``target`` (atomic) and write its sidecar; returns the sidecar record."""
    if target.exists() and same_file(source, target):
        raise MrisrInputError(target, "output is the input file", "choose another output; inputs are never overwritten")
    volume = as_volume(source)
    result = run_on_volume(model, volume, settings_from(cfg))
    geometry, grid, sr = result.geometry, result.grid, result.sr
    log.info(
        "%s: axis %d (%s), separation %.4g mm, in-plane %.4g mm, factor %.4g → %d slices of %.4g mm",
        source, geometry.axis, geometry.axis_code, geometry.separation_mm, geometry.inplane_spacing_mm,
        geometry.factor, grid.length, grid.spacing_mm,
    )  # fmt: skip
    written = save_volume(sr, target, header=volume.header)
    record: dict[str, Any] = {
        "input": str(source),
        "input_sha256": file_sha256(source),
        "output": str(written),
        "output_sha256": file_sha256(written),
        "model": model_name,
        **result.record,
    }
    if result.uncertainty is not None:
        # Per-voxel spread of repeated stochastic draws (diffusion models with samples > 1), on the output grid.
        sd_path = save_volume(
            result.uncertainty, written.with_name(f"{nifti_stem(written)}_sd.nii.gz"), header=volume.header
        )
        record.update(uncertainty=str(sd_path), uncertainty_sha256=file_sha256(sd_path))
    if cfg.forward_check:
        record["forward_consistency"] = forward_check(source, volume, result, bool(cfg.estimate_thickness))
    if result.fit is not None:
        fit_log = written.with_name(f"{nifti_stem(written)}.fit.csv")
        write_rows_atomic(result.fit.log, fit_log, fields=("step", "loss", "lr", "seconds"))
        record.update(fit=result.fit.record, fit_log=str(fit_log))
    write_json_atomic(record, sidecar_path(written))
    log.info("wrote %s (%s) in %.2f s", written, "×".join(map(str, sr.shape)), result.seconds)
    return record


# ---------------------------------------------------------------------------------------------------- batch mode
@dataclass
class Job:
    """One input volume and where its SR output goes."""

    source: Path
    target: Path


def collect_jobs(inputs: str, output_dir: Path, suffix: str = "_sr") -> list[Job]:
    """Jobs from a glob pattern, a manifest CSV (columns ``input`` and optional ``output``) or a (BIDS) directory.

    Directory and glob inputs keep their sub-directory layout below ``output_dir`` (relative to the directory, or to
    the glob's fixed prefix) and get ``<stem><suffix>.nii.gz``; a directory is searched recursively for NIfTI files
    (for BIDS: every ``*.nii(.gz)`` under ``sub-*/``, derivatives excluded).
    """
    spec = Path(inputs)
    if spec.suffix.lower() in (".csv", ".tsv") and spec.is_file():
        delimiter = "\t" if spec.suffix.lower() == ".tsv" else ","
        with open(spec, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter=delimiter))
        if not rows or "input" not in rows[0]:
            raise MrisrInputError(spec, "manifest has no 'input' column", "write a header line: input[,output]")
        jobs = []
        for row in rows:
            source = Path(row["input"])
            source = source if source.is_absolute() else spec.parent / source
            target = Path(row["output"]) if row.get("output") else output_dir / f"{nifti_stem(source)}{suffix}.nii.gz"
            jobs.append(Job(source, target if target.is_absolute() else output_dir / target))
        return jobs
    if spec.is_dir():
        root = spec
        files = sorted(p for p in spec.rglob("*") if p.name.endswith(NIFTI_SUFFIXES) and p.is_file())
        if any(p.name.startswith("sub-") for p in spec.iterdir()):  # BIDS: subjects only, no derivatives
            files = [p for p in files if p.relative_to(spec).parts[0].startswith("sub-")]
    else:
        files = sorted(Path(p) for p in glob.glob(inputs, recursive=True) if p.endswith(NIFTI_SUFFIXES))
        fixed = Path(inputs.split("*")[0].split("?")[0].split("[")[0])
        root = fixed if fixed.is_dir() else fixed.parent
    if not files:
        raise MrisrInputError(inputs, "matches no NIfTI file", "pass a glob, a manifest .csv or a directory of .nii.gz")
    return [Job(p, output_dir / p.parent.relative_to(root) / f"{nifti_stem(p)}{suffix}.nii.gz") for p in files]


def is_completed(job: Job) -> bool:
    """True when ``job.target`` and its sidecar exist and both SHA-256 digests match the files on disk."""
    sidecar = sidecar_path(job.target)
    if not (job.target.is_file() and sidecar.is_file()):
        return False
    try:
        record = json.loads(sidecar.read_text())
        return record.get("input_sha256") == file_sha256(job.source) and record.get("output_sha256") == file_sha256(
            job.target
        )
    except (OSError, ValueError):
        return False


def run_batch(cfg: DictConfig) -> list[dict[str, str]]:
    """Process every job of ``cfg.inputs`` into ``cfg.output_dir``; returns one summary row per job."""
    if not cfg.output_dir:
        raise MrisrInputError(None, "inputs= needs output_dir=", "add output_dir=<folder for the SR volumes>")
    output_dir = Path(cfg.output_dir)
    jobs = collect_jobs(str(cfg.inputs), output_dir)
    model, model_name = build_model(cfg)
    rows: list[dict[str, str]] = []
    from rich.progress import Progress

    with Progress() as progress:
        task = progress.add_task("super-resolving", total=len(jobs))
        for job in jobs:
            row = {"input": str(job.source), "output": str(job.target), "status": "", "reason": "", "seconds": ""}
            started = time.perf_counter()
            try:
                if is_completed(job):
                    row["status"] = "skipped"
                    row["reason"] = "already completed (digests verified)"
                else:
                    super_resolve_file(model, model_name, job.source, job.target, cfg)
                    row["status"] = "done"
            except MrisrInputError as err:
                row.update(status="failed", reason=str(err))
                log.error("%s", err)
            except Exception as err:
                row.update(status="failed", reason=f"{type(err).__name__}: {err}")
                log.error("%s failed:\n%s", job.source, traceback.format_exc())
            row["seconds"] = f"{time.perf_counter() - started:.1f}"
            rows.append(row)
            progress.advance(task)
    write_rows_atomic(rows, output_dir / "batch_summary.csv", fields=("input", "output", "status", "reason", "seconds"))
    print_summary(rows)
    return rows


def print_summary(rows: list[dict[str, str]]) -> None:
    """Rich table of the batch: done / skipped / failed with reasons, and totals."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mrisr batch inference")
    for column in ("input", "status", "reason", "seconds"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["input"], row["status"], row["reason"], row["seconds"])
    console = Console(stderr=False, width=160)
    console.print(table)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "skipped", "failed")}
    console.print(f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']}")


def infer(cfg: DictConfig) -> int:
    """Run the inference described by an ``infer`` config (``conf/infer.yaml``); returns the process exit code.

    One volume (``input=``, ``output=``) or a batch (``inputs=``, ``output_dir=``; exit code 1 when a volume failed).
    """
    if cfg.inputs:
        if cfg.output_dir:
            check_output_folder(Path(cfg.output_dir) / "batch_summary.csv")
        rows = run_batch(cfg)
        return 1 if any(row["status"] == "failed" for row in rows) else 0
    if cfg.input in (None, "???") or cfg.output in (None, "???"):
        raise MrisrInputError(None, "no input given", "pass input=LR.nii.gz output=SR.nii.gz, or inputs=… output_dir=…")
    check_output_folder(cfg.output)
    model, model_name = build_model(cfg)
    super_resolve_file(model, model_name, Path(cfg.input), Path(cfg.output), cfg)
    return 0


def infer_job(cfg: DictConfig) -> int:
    """The Hydra job: checks the overrides, runs :func:`infer`; returns its exit code."""
    import torch

    from mrisr.utils.config import check_hydra_overrides

    check_hydra_overrides(OPTION_TYPES)
    torch.set_flush_denormal(bool(cfg.flush_denormal))
    return infer(cfg)


def main(argv: list[str]) -> int:
    """Run ``infer`` on the command line ``argv``; returns the exit status (1 when a batch volume failed)."""
    from mrisr.utils.cli import print_help, run_hydra, wants_help

    if wants_help(argv):
        return print_help(USAGE, "infer", argv)
    return int(run_hydra(infer_job, "infer", checkpoint_option_overrides(argv), types=OPTION_TYPES) or 0)


def run() -> None:
    """Console-script entry point (``mrisr-infer``)."""
    from mrisr.utils.cli import run_cli

    run_cli(main)
