"""Inference on one volume or on many (glob, manifest CSV or BIDS directory) with verified resume.

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

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from mrisr.api import as_volume
from mrisr.inference import output_grid
from mrisr.io.errors import MrisrInputError
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import same_file, save_volume
from mrisr.models import load_checkpoint_model, load_model
from mrisr.utils.atomic import write_json_atomic, write_rows_atomic

log = logging.getLogger("mrisr.infer")

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Fewest slices along the thick-slice axis that interpolation (and a learned model) can work with.
MIN_SLICES = 3


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


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


def build_model(cfg: DictConfig) -> tuple[Any, Any]:
    """The SR model described by ``cfg`` (checkpoint, or ``cfg.model`` with the per-volume options applied)."""
    device = resolve_device(str(cfg.device))
    per_volume = {
        "thickness_mm": cfg.thickness,
        "profile": cfg.profile,
        "max_time_s": cfg.budget.max_time,
        "max_steps": cfg.budget.max_steps,
    }
    given = {k: v for k, v in per_volume.items() if v is not None}
    if cfg.ckpt_path:
        if given:
            raise MrisrInputError(
                cfg.ckpt_path, "thickness=/profile=/budget.* apply to per-volume fits, not to a checkpoint", "drop them"
            )
        return load_checkpoint_model(cfg.ckpt_path, device=device), f"checkpoint:{cfg.ckpt_path}"
    model_cfg = cfg.model.copy()
    if given and not getattr(get_class(model_cfg._target_), "fits_per_volume", False):
        raise MrisrInputError(
            None,
            f"{', '.join(given)} apply to models fitted per volume, not to {model_cfg._target_}",
            "drop thickness=/profile=/budget.* or choose model=smore|smore_fast|smore_v4|eclare",
        )
    with open_dict(model_cfg):
        model_cfg.update(given)
    model = load_model(model_cfg, device=device)
    if hasattr(model, "state_dict") and not getattr(model, "fits_per_volume", False):
        raise MrisrInputError(
            None,
            f"model {model_cfg._target_} is a network without trained weights",
            "pass ckpt_path= a checkpoint written by train.py, or use model=cubic|linear|nearest",
        )
    return model, OmegaConf.to_container(model_cfg, resolve=True)


def super_resolve_file(model: Any, model_name: Any, source: Path, target: Path, cfg: DictConfig) -> dict[str, Any]:
    """Super-resolve ``source`` into ``target`` (atomic) and write its sidecar; returns the sidecar record."""
    torch.manual_seed(int(cfg.seed))
    if target.exists() and same_file(source, target):
        raise MrisrInputError(target, "output is the input file", "choose another output; inputs are never overwritten")
    volume = as_volume(source)
    geometry = detect_slice_axis(volume, axis=cfg.axis, allow_anisotropic_inplane=bool(cfg.allow_anisotropic_inplane))
    n_slices = volume.shape[geometry.axis]
    if n_slices < MIN_SLICES:
        raise MrisrInputError(
            source,
            f"only {n_slices} slice(s) along the through-plane axis {geometry.axis}",
            f"through-plane super-resolution needs at least {MIN_SLICES} slices; check the file or axis=",
        )
    grid = output_grid(geometry, n_slices, cfg.target_spacing_mm)
    log.info(
        "%s: axis %d (%s), separation %.4g mm, in-plane %.4g mm, factor %.4g → %d slices of %.4g mm",
        source, geometry.axis, geometry.axis_code, geometry.separation_mm, geometry.inplane_spacing_mm,
        geometry.factor, grid.length, grid.spacing_mm,
    )  # fmt: skip
    started = time.perf_counter()
    fit_summary = model.fit_volume(volume, geometry, grid) if getattr(model, "fits_per_volume", False) else None
    sr = model.super_resolve(volume, geometry, grid)
    elapsed = time.perf_counter() - started
    written = save_volume(sr, target, header=volume.header)
    record: dict[str, Any] = {
        "input": str(source),
        "input_sha256": file_sha256(source),
        "output": str(written),
        "output_sha256": file_sha256(written),
        "model": model_name,
        "axis": geometry.axis,
        "separation_mm": geometry.separation_mm,
        "inplane_spacing_mm": geometry.inplane_spacing_mm,
        "factor": geometry.factor,
        "output_spacing_mm": grid.spacing_mm,
        "output_shape": list(sr.shape),
        "seconds": round(elapsed, 3),
    }
    if fit_summary is not None:
        fit_log = written.with_name(f"{nifti_stem(written)}.fit.csv")
        write_rows_atomic(model.fit_log, fit_log, fields=("step", "loss", "lr", "seconds"))
        record.update(fit=fit_summary, fit_log=str(fit_log))
    write_json_atomic(record, sidecar_path(written))
    log.info("wrote %s (%s) in %.2f s", written, "×".join(map(str, sr.shape)), elapsed)
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
