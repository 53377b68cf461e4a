"""``infer(cfg)``: inference on one volume or on many (glob, manifest CSV or BIDS directory) with verified resume.

The application behind ``infer.py`` (a thin command-line shim) and the ``mrisr-infer`` console script.

Every output is written atomically (temporary file + rename) and followed by a JSON sidecar ``<stem>.mrisr.json`` that
records what made it: the SHA-256 of the input and of the output, and the **recipe** — the model (its resolved config
or checkpoint, every inference option), the SHA-256 of its weights, the inference settings (axis, target spacing,
thickness estimation, seed), the output options (dtype, clip) and the mrisr version — with the recipe's own digest.

* Resume: a later batch skips an output only when its sidecar exists and the input, output *and* recipe digests all
  match the current run. An output made by another recipe (another model, option, seed or version) is redone, or —
  with ``existing=keep`` — refused (the batch table says which).
* Replay: ``infer.py replay=SR.mrisr.json [output=…]`` reruns the recipe of a sidecar on the same input; a run whose
  per-volume fit is bounded by steps alone (``budget.max_steps=N``) reproduces its output bit for bit.
* Fail before the fit: every input, sidecar and output path of a batch is checked before any model is built or fitted;
  a job that fails its check is reported and the others go on.
* Per-file failures are isolated, reported in a summary table (``batch_summary.csv``) and make the run exit non-zero.
* ``qc=<folder>``: a static HTML QC report (:mod:`mrisr.report.qc`), one page per volume and an index rebuilt from
  every page in the folder, so a resumed batch keeps a complete report.
* BIDS: a BIDS dataset as ``inputs`` (or ``bids=true``) gives a derivatives dataset in ``output_dir``
  (:mod:`mrisr.io.bids`: ``sub-*/[ses-*/]anat/sub-…_rec-SR_<suffix>.nii.gz``, sidecars, ``dataset_description.json``);
  ``participant_label=`` selects subjects.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from mrisr.app.models import build_inference_model, resolve_device
from mrisr.core.atomic import check_output_folder, write_json_atomic, write_rows_atomic
from mrisr.core.digest import file_sha256
from mrisr.core.errors import MrisrInputError
from mrisr.inference import InferenceResult, InferenceSettings, VolumeSuperResolver, run_on_volume
from mrisr.io.nifti import Volume, as_volume, check_shape, same_file, save_volume
from mrisr.utils.progress import progress_bar

log = logging.getLogger("mrisr.infer")

USAGE = """Super-resolve thick-slice volumes (Hydra application; config conf/infer.yaml).

Usage: ``python infer.py input=LR.nii.gz output=SR.nii.gz model=cubic`` (one volume; or ``mrisr-infer …``), or
``python infer.py inputs='data/**/*.nii.gz' output_dir=out/ model=smore`` (many volumes: glob, manifest CSV or BIDS
directory; completed outputs of the same recipe are verified and skipped, failures are isolated and summarised, exit
code 1 if any). ``replay=SR.mrisr.json`` reruns the recipe of a sidecar. Trained models are rebuilt from their
checkpoint alone (``ckpt_path=…``); ``model=`` takes any model name of conf/model (``cubic``, ``smore_prior``,
``zoo/…``). Outputs lie on the isotropic grid (or ``target_spacing_mm``) and overlay their inputs in world coordinates;
a JSON sidecar records what was done; ``qc=<folder>`` writes an HTML report to look at before trusting the outputs.
"""

#: Expected types of the options whose default (``null``) does not tell.
OPTION_TYPES: dict[str, type] = {
    "thickness": float,
    "target_spacing_mm": float,
    "budget.max_time": float,
    "budget.max_steps": int,
}

#: infer.yaml keys that set inference options of per-volume models: {key: constructor argument}.
PER_VOLUME_KEYS = {
    "thickness": "thickness_mm",
    "profile": "profile",
    "budget.max_time": "max_time_s",
    "budget.max_steps": "max_steps",
}

#: At most this many distinct values (all integers) make an input look like a label map, not an image.
LABEL_MAP_VALUES = 16

#: Format tag of the recipe in sidecars (bumped when its fields change meaning).
RECIPE_FORMAT = "mrisr-recipe/1"


def mrisr_version() -> str:
    """The installed mrisr version."""
    from mrisr.core.version import VERSION

    return VERSION


def nifti_stem(path: Path) -> str:
    """``a/b/sub-01_T2w.nii.gz`` → ``sub-01_T2w``."""
    return path.name.removesuffix(".gz").removesuffix(".nii")


def sidecar_path(output: Path) -> Path:
    """``SR.nii.gz`` → ``SR.mrisr.json``."""
    return output.with_name(f"{nifti_stem(output)}.mrisr.json")


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


def requested_options(cfg: DictConfig) -> dict[str, Any]:
    """Inference options requested by ``cfg``: the per-volume keys that are set and, for a checkpoint, ``model.*``.

    ``budget.max_steps`` without ``budget.max_time`` bounds the fit by steps alone (``max_time_s = None``): the fit is
    then independent of the machine's load, and a replay reproduces it bit for bit.

    Raises:
        MrisrInputError: a non-positive budget.
    """
    options: dict[str, Any] = {}
    for key, argument in PER_VOLUME_KEYS.items():
        value = OmegaConf.select(cfg, key)
        if value is not None:
            if key.startswith("budget.") and not float(value) > 0:
                raise MrisrInputError(None, f"{key}={value} must be > 0", f"pass a positive {key}, or drop it")
            options[argument] = value
    if "max_steps" in options and "max_time_s" not in options:
        options["max_time_s"] = None
    if cfg.ckpt_path:
        for override in command_line_overrides():
            key = override.split("=", 1)[0].lstrip("+~")
            if key.startswith("model."):
                options[key.removeprefix("model.")] = OmegaConf.select(cfg, key)
    return options


@dataclass
class BuiltModel:
    """A model ready for inference and what the recipe records of it.

    Attributes:
        model: the model.
        description: its resolved config with the inference options applied, or ``{"checkpoint", "options"}``.
        options: the inference options applied.
        weights: ``[{"file", "sha256"}]`` of every weights file it was built from (checkpoint, shipped or imported).
    """

    model: VolumeSuperResolver
    description: dict[str, Any]
    options: dict[str, Any]
    weights: list[dict[str, str]] = field(default_factory=list)

    @property
    def weights_sha256(self) -> str | None:
        """One digest of all weights files (``None`` for models without weights, e.g. cubic or a fit from scratch)."""
        if not self.weights:
            return None
        if len(self.weights) == 1:
            return self.weights[0]["sha256"]
        return hashlib.sha256("".join(w["sha256"] for w in self.weights).encode()).hexdigest()


def build_model(cfg: DictConfig, options: dict[str, Any] | None = None) -> BuiltModel:
    """The SR model described by ``cfg`` (a checkpoint, or ``cfg.model``) with its inference options applied.

    Args:
        cfg: an ``infer`` config.
        options: the inference options (default: :func:`requested_options` of ``cfg``; a replay passes its record's).
    """
    options = requested_options(cfg) if options is None else dict(options)
    device = resolve_device(str(cfg.device))
    if cfg.ckpt_path:
        chosen = any(o.split("=", 1)[0] == "model" for o in command_line_overrides())
        model = build_inference_model(
            None, cfg.ckpt_path, options, device=device, expected_target=cfg.model._target_ if chosen else None
        )
        path = Path(cfg.ckpt_path)
        weights = [{"file": str(path), "sha256": file_sha256(path)}]
        return BuiltModel(model, {"checkpoint": str(path), "options": options}, options, weights)
    model = build_inference_model(cfg.model, None, options, device=device)
    description = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(description, dict)
    description.update(options)
    files = getattr(model, "weights_files", lambda: [])()
    weights = [{"file": str(f), "sha256": file_sha256(Path(f))} for f in files]
    return BuiltModel(model, description, options, weights)


def settings_from(cfg: DictConfig) -> InferenceSettings:
    """The :class:`~mrisr.inference.InferenceSettings` of an ``infer`` config."""
    return InferenceSettings(
        axis=cfg.axis,
        target_spacing_mm=cfg.target_spacing_mm,
        allow_anisotropic_inplane=bool(cfg.allow_anisotropic_inplane),
        seed=int(cfg.seed),
        estimate_thickness=bool(cfg.estimate_thickness),
    )


def recipe(cfg: DictConfig, built: BuiltModel) -> dict[str, Any]:
    """Everything that determines an output besides its input (module docstring), JSON-ready."""
    settings = settings_from(cfg)
    return {
        "format": RECIPE_FORMAT,
        "mrisr_version": mrisr_version(),
        "model": built.description,
        "method": getattr(built.model, "method", None),
        "weights": built.weights,
        "weights_sha256": built.weights_sha256,
        "settings": {
            "axis": settings.axis,
            "target_spacing_mm": settings.target_spacing_mm,
            "allow_anisotropic_inplane": settings.allow_anisotropic_inplane,
            "estimate_thickness": settings.estimate_thickness,
            "seed": settings.seed,
        },
        "device": resolve_device(str(cfg.device)),
        "output_dtype": str(cfg.output_dtype),
        "clip": str(cfg.clip),
        "forward_check": bool(cfg.forward_check),
    }


def recorded_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved ``infer`` config as a sidecar records it (for a replay); the run directory is left out."""
    kept = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "paths"])
    record = OmegaConf.to_container(kept, resolve=True)
    assert isinstance(record, dict)
    return record


def recipe_digest(record: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a recipe."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------------------- checks and outputs
def check_input(source: Path) -> None:
    """Refuse, before any model work, an input that is missing, not a readable 3-D NIfTI header, or whose BIDS sidecar
    is not valid JSON (the image data are read later)."""
    from mrisr.io.sidecar import read_sidecar
    from mrisr.io.sidecar import sidecar_path as bids_sidecar

    if source.is_dir():
        raise MrisrInputError(source, "is a directory, not a NIfTI file", "pass the .nii or .nii.gz file inside it")
    if not source.is_file():
        raise MrisrInputError(source, "input file not found", "check the path (inputs= glob, manifest or folder)")
    try:
        image = nib.load(str(source))
    except Exception as err:
        problem = f"not a readable NIfTI file ({type(err).__name__})"
        raise MrisrInputError(source, problem, "pass a .nii/.nii.gz image") from err
    check_shape(tuple(int(n) for n in image.shape), source)
    side = bids_sidecar(source)
    if side.is_file():
        read_sidecar(side)


def check_job(source: Path, target: Path, extra_outputs: list[Path] = ()) -> None:  # type: ignore[assignment]
    """All checks of one job that need no model: the input (:func:`check_input`) and every output path."""
    check_input(source)
    if target.exists() and same_file(source, target):
        raise MrisrInputError(target, "output is the input file", "choose another output; inputs are never overwritten")
    for path in (target, *extra_outputs):
        check_output_folder(path)


def looks_like_label_map(data: np.ndarray) -> int | None:
    """The number of distinct values when ``data`` holds at most :data:`LABEL_MAP_VALUES` integers, else ``None``."""
    sample = np.asarray(data).ravel()[:: max(1, data.size // 200_000)]
    values = np.unique(sample)
    if values.size > LABEL_MAP_VALUES or not np.all(np.isfinite(values)) or not np.all(values == np.rint(values)):
        return None
    full = np.unique(np.asarray(data))
    return int(full.size) if full.size <= LABEL_MAP_VALUES and np.all(full == np.rint(full)) else None


def stored_output(sr: Volume, source: Path, cfg: DictConfig) -> tuple[Volume, Any, tuple[float, float] | None, dict]:
    """The output as it is stored: ``clip`` applied, in ``output_dtype``; returns (volume, dtype, slope/inter, record).

    ``clip=input_range`` clips to the input's minimum and maximum (interpolation and networks over- and undershoot:
    negative voxels in non-negative images, values above the input's maximum). ``output_dtype=input`` stores the
    input's on-disk dtype with its scaling (``scl_slope``/``scl_inter``): values rounded to the nearest stored step and
    clipped to the dtype's range (reported). ``float32`` stores float32.
    """
    image = nib.load(str(source))
    data = sr.data
    report: dict[str, Any] = {"output_dtype": str(cfg.output_dtype), "clip": str(cfg.clip)}
    if cfg.clip == "input_range":
        raw = np.asarray(image.dataobj, dtype=np.float32)
        lo, hi = float(raw.min()), float(raw.max())
        report["clipped_fraction"] = float(np.mean((data < lo) | (data > hi)))
        data = np.clip(data, lo, hi)
    elif cfg.clip != "none":
        raise MrisrInputError(None, f"clip={cfg.clip} is not an option", "use clip=none or clip=input_range")
    if cfg.output_dtype == "float32":
        return Volume(data.astype(np.float32), sr.affine, sr.header, None), np.float32, None, report
    if cfg.output_dtype != "input":
        raise MrisrInputError(None, f"output_dtype={cfg.output_dtype} is not an option", "use float32 or input")
    dtype = image.get_data_dtype()
    # nibabel moves the file's scl_slope / scl_inter from the header to the data proxy when it reads an image.
    slope, inter = float(getattr(image.dataobj, "slope", 1.0)), float(getattr(image.dataobj, "inter", 0.0))
    slope = 1.0 if not np.isfinite(slope) or slope == 0 else slope
    inter = 0.0 if not np.isfinite(inter) else inter
    stored = (data.astype(np.float64) - inter) / slope
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        stored = np.rint(stored)
        report["dtype_clipped_fraction"] = float(np.mean((stored < info.min) | (stored > info.max)))
        stored = np.clip(stored, info.min, info.max)
    report["stored_dtype"] = str(np.dtype(dtype))
    return Volume(stored.astype(dtype), sr.affine, sr.header, None), dtype, (slope, inter), report


def forward_check(
    source: Path, volume: Volume, result: InferenceResult, estimate: bool
) -> tuple[dict[str, Any], Volume | None]:
    """Re-acquire the input from the SR output with the physics forward model and compare (no ground truth needed).

    The thickness is the one the model used, else the input's acquisition resolved by the same chain as a per-volume
    model's (argument, sidecar, estimate when ``estimate``, separation). A poor match is logged as a warning.

    Returns:
        The JSON-ready report and the residual (re-acquired − input) on the input grid, for the QC report.
    """
    from mrisr.eval.consistency import forward_consistency
    from mrisr.inference.acquisition import resolve_acquisition

    note = None
    try:
        acquisition = result.acquisition or resolve_acquisition(source, volume, result.geometry, None, estimate)
    except MrisrInputError as err:  # the image estimate cannot be made (e.g. too few voxels): T = S, said so
        acquisition = resolve_acquisition(source, volume, result.geometry, None, estimate=False)
        note = f"the slice thickness could not be estimated ({err.problem}): the forward check assumed T = S"
    report = forward_consistency(
        result.sr, volume, float(acquisition.thickness_mm), geometry=result.geometry, keep_resimulated=True
    )
    summary = report.as_dict()
    summary.update(thickness_mm=float(acquisition.thickness_mm), thickness_source=acquisition.thickness_source)
    if note is not None:
        summary["note"] = note
    residual = None
    if report.resimulated is not None:
        residual = Volume((report.resimulated - volume.data).astype(np.float32), volume.affine, volume.header, None)
    return summary, residual


@dataclass
class Job:
    """One input volume and where its SR output goes.

    Attributes:
        source: the input image.
        target: the SR output.
        bids_root: the raw BIDS dataset the source belongs to (BIDS derivatives mode), else ``None``.
    """

    source: Path
    target: Path
    bids_root: Path | None = None

    @property
    def name(self) -> str:
        """The job's identifier in reports: the output's file stem."""
        return nifti_stem(self.target)


def super_resolve_file(built: BuiltModel, job: Job, cfg: DictConfig, command: str | None = None) -> dict[str, Any]:
    """Super-resolve ``job.source`` into ``job.target`` (atomic) and write its sidecar (and QC page, BIDS sidecar).

    Returns:
        The sidecar record.
    """
    check_job(job.source, job.target)
    source, target = job.source, job.target
    volume = as_volume(source)
    warnings: list[str] = []
    labels = looks_like_label_map(volume.data)
    if labels is not None and getattr(built.model, "method", "") != "nearest":
        warnings.append(
            f"the input holds only {labels} distinct integer values, like a label map or mask: smooth interpolation "
            "blurs and overshoots labels; use model=nearest (labels) or model=linear (soft masks)"
        )
    result = run_on_volume(built.model, volume, settings_from(cfg))
    warnings += result.warnings
    geometry, grid = result.geometry, result.grid
    log.info(
        "%s: axis %d (%s), separation %.4g mm, in-plane %.4g mm, factor %.4g → %d slices of %.4g mm",
        source, geometry.axis, geometry.axis_code, geometry.separation_mm, geometry.inplane_spacing_mm,
        geometry.factor, grid.length, grid.spacing_mm,
    )  # fmt: skip
    stored, dtype, slope_inter, output_record = stored_output(result.sr, source, cfg)
    written = save_volume(stored, target, header=volume.header, dtype=dtype, slope_inter=slope_inter)
    plan = recipe(cfg, built)
    record: dict[str, Any] = {
        "input": str(source),
        "input_sha256": file_sha256(source),
        "output": str(written),
        "output_sha256": file_sha256(written),
        "mrisr_version": plan["mrisr_version"],
        "model": built.description,
        "weights_sha256": built.weights_sha256,
        "recipe": plan,
        "recipe_sha256": recipe_digest(plan),
        "config": recorded_config(cfg),
        "model_options": built.options,
        "command": command,
        **result.record,
        "output_storage": output_record,
    }
    if result.uncertainty is not None:
        # Per-voxel spread of repeated stochastic draws (diffusion models with samples > 1), on the output grid.
        sd_path = save_volume(
            result.uncertainty, written.with_name(f"{nifti_stem(written)}_sd.nii.gz"), header=volume.header
        )
        record.update(uncertainty=str(sd_path), uncertainty_sha256=file_sha256(sd_path))
    residual = None
    if cfg.forward_check:
        record["forward_consistency"], residual = forward_check(source, volume, result, bool(cfg.estimate_thickness))
        if "note" in record["forward_consistency"]:
            warnings.append(record["forward_consistency"]["note"])
        if record["forward_consistency"]["warn"]:
            warnings.append(
                f"the output re-acquired with T = {record['forward_consistency']['thickness_mm']:.3g} mm matches its "
                f"input poorly (PSNR {record['forward_consistency']['psnr']:.1f} dB): check the thickness, the axis "
                "and the model"
            )
    if result.fit is not None:
        fit_log = written.with_name(f"{nifti_stem(written)}.fit.csv")
        write_rows_atomic(result.fit.log, fit_log, fields=("step", "loss", "lr", "seconds"))
        record.update(fit=result.fit.record, fit_log=str(fit_log))
    record["warnings"] = warnings
    for warning in warnings:
        log.warning("%s: %s", source, warning)
    if job.bids_root is not None:
        from mrisr.io.bids import derivative_sidecar
        from mrisr.io.sidecar import read_sidecar
        from mrisr.io.sidecar import sidecar_path as bids_sidecar

        side = bids_sidecar(source)
        source_sidecar = read_sidecar(side) if side.is_file() else None
        content = derivative_sidecar(source, job.bids_root, result.sr, geometry.axis, record, source_sidecar)
        write_json_atomic(content, bids_sidecar(written))
    write_json_atomic(record, sidecar_path(written))
    if cfg.qc:
        write_qc(job, volume, result, residual, record, Path(cfg.qc))
    log.info("wrote %s (%s) in %.2f s", written, "×".join(map(str, result.sr.shape)), result.seconds)
    return record


def write_qc(
    job: Job, volume: Volume, result: InferenceResult, residual: Volume | None, record: dict[str, Any], folder: Path
) -> Path:
    """The QC page of one output (:func:`mrisr.report.qc.write_qc_page`)."""
    from mrisr.report.qc import QCEntry, write_qc_page

    shown = {
        "model": record["recipe"]["method"],
        "mrisr_version": record["mrisr_version"],
        "weights_sha256": record["weights_sha256"],
        "thickness_mm": record.get("thickness_mm", record.get("forward_consistency", {}).get("thickness_mm")),
        "thickness_source": record.get(
            "thickness_source", record.get("forward_consistency", {}).get("thickness_source")
        ),
        "seconds": record.get("seconds"),
        "forward_consistency": {k: record.get("forward_consistency", {}).get(k) for k in ("psnr", "ssim")},
        "warnings": record["warnings"],
        "input": record["input"],
        "output": record["output"],
        "recipe_sha256": record["recipe_sha256"],
    }
    if result.fit is not None:
        shown["fit"] = {k: result.fit.record.get(k) for k in ("steps", "expected_steps", "fit_seconds", "seed")}
    entry = QCEntry(
        name=job.name, input=volume, output=result.sr, record=shown, residual=residual, sd=result.uncertainty
    )
    return write_qc_page(entry, folder)


# ---------------------------------------------------------------------------------------------------- batch mode
def bids_root_of(inputs: str, cfg: DictConfig) -> Path | None:
    """The BIDS dataset root of a batch: ``inputs`` itself when it is a BIDS dataset (``bids=auto``) or when asked."""
    from mrisr.io.bids import is_bids_dataset

    spec = Path(inputs)
    mode = str(cfg.bids)
    if mode == "false":
        return None
    if spec.is_dir() and is_bids_dataset(spec):
        return spec
    if mode == "true":
        raise MrisrInputError(
            spec, "bids=true needs inputs= the root folder of a BIDS dataset", "pass the dataset root"
        )
    return None


NIFTI_SUFFIXES = (".nii", ".nii.gz")


def collect_jobs(
    inputs: str,
    output_dir: Path,
    suffix: str = "_sr",
    bids_root: Path | None = None,
    participant_label: str | list[str] | None = None,
) -> list[Job]:
    """Jobs from a glob pattern, a manifest CSV (columns ``input`` and optional ``output``) or a directory.

    Directory and glob inputs keep their sub-directory layout below ``output_dir`` (relative to the directory, or to
    the glob's fixed prefix) and get ``<stem><suffix>.nii.gz``. A BIDS dataset (``bids_root``) gives BIDS derivative
    names (:func:`mrisr.io.bids.derivative_path`) for the images under ``sub-*/`` (derivatives excluded), of the
    participants in ``participant_label`` when given.
    """
    spec = Path(inputs)
    if bids_root is not None:
        from mrisr.io.bids import derivative_path, select_participants

        files = sorted(p for p in spec.rglob("*") if p.name.endswith(NIFTI_SUFFIXES) and p.is_file())
        files = [p for p in files if p.relative_to(spec).parts[0].startswith("sub-")]
        files = select_participants(files, participant_label)
        if not files:
            raise MrisrInputError(spec, "the BIDS dataset holds no NIfTI image under sub-*/", "check inputs=")
        return [Job(p, derivative_path(p, bids_root, output_dir), bids_root) for p in files]
    if participant_label:
        raise MrisrInputError(None, "participant_label= selects subjects of a BIDS dataset", "pass a BIDS inputs=")
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
        if any(p.name.startswith("sub-") for p in spec.iterdir()):  # BIDS-like layout: subjects only, no derivatives
            files = [p for p in files if p.relative_to(spec).parts[0].startswith("sub-")]
    else:
        files = sorted(Path(p) for p in glob.glob(inputs, recursive=True) if p.endswith(NIFTI_SUFFIXES))
        fixed = Path(inputs.split("*")[0].split("?")[0].split("[")[0])
        root = fixed if fixed.is_dir() else fixed.parent
    # Outputs of an earlier run into the same tree are not inputs.
    files = [p for p in files if not p.name.endswith((f"{suffix}.nii.gz", f"{suffix}_sd.nii.gz"))]
    if not files:
        raise MrisrInputError(inputs, "matches no NIfTI file", "pass a glob, a manifest .csv or a directory of .nii.gz")
    return [Job(p, output_dir / p.parent.relative_to(root) / f"{nifti_stem(p)}{suffix}.nii.gz") for p in files]


def completion(job: Job, digest: str) -> tuple[str, str]:
    """Whether ``job`` is done with the recipe of ``digest``: ``("done", why)``, ``("other", why)`` or ``("todo", "")``.

    ``done``: the output and its sidecar exist and the input, output and recipe digests all match. ``other``: an
    output exists but was made from another input or recipe, or does not match its sidecar (``why`` says which).
    """
    sidecar = sidecar_path(job.target)
    if not job.target.is_file():
        return "todo", ""
    if not sidecar.is_file():
        return "other", "an output without a sidecar exists"
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return "other", "the sidecar cannot be read"
    if record.get("input_sha256") != file_sha256(job.source):
        return "other", "made from another input"
    if record.get("output_sha256") != file_sha256(job.target):
        return "other", "the output does not match its sidecar (modified or truncated)"
    if record.get("recipe_sha256") != digest:
        before = record.get("recipe", {}).get("method") or "an unrecorded model"
        return "other", f"made by another recipe (method {before}, recipe {str(record.get('recipe_sha256'))[:12]})"
    return "done", "already completed (input, output and recipe digests verified)"


def run_batch(cfg: DictConfig, command: str | None = None) -> list[dict[str, str]]:
    """Process every job of ``cfg.inputs`` into ``cfg.output_dir``; returns one summary row per job.

    Every job's input and output paths are checked first; the model is built (and per-volume fits run) only for jobs
    that passed and are not already done with this recipe.
    """
    if not cfg.output_dir:
        raise MrisrInputError(None, "inputs= needs output_dir=", "add output_dir=<folder for the SR volumes>")
    output_dir = Path(cfg.output_dir)
    bids_root = bids_root_of(str(cfg.inputs), cfg)
    jobs = collect_jobs(str(cfg.inputs), output_dir, bids_root=bids_root, participant_label=cfg.participant_label)
    rows: dict[Path, dict[str, str]] = {
        job.target: {"input": str(job.source), "output": str(job.target), "status": "", "reason": "", "seconds": ""}
        for job in jobs
    }
    ready: list[Job] = []
    for job in jobs:
        try:
            check_job(job.source, job.target)
            ready.append(job)
        except MrisrInputError as err:
            rows[job.target].update(status="failed", reason=str(err))
            log.error("%s", err)
    built = build_model(cfg)
    digest = recipe_digest(recipe(cfg, built))
    if bids_root is not None:
        from mrisr.io.bids import write_dataset_description

        write_dataset_description(
            output_dir, mrisr_version(), str(built.model.method), built.weights_sha256, command or "", bids_root
        )
    for job in progress_bar(ready, desc="super-resolving", unit="volume"):
        row = rows[job.target]
        started = time.perf_counter()
        try:
            state, why = completion(job, digest)
            if state == "done":
                row.update(status="skipped", reason=why)
            elif state == "other" and cfg.existing == "keep":
                row.update(status="refused", reason=f"existing output kept (existing=keep): {why}")
            else:
                super_resolve_file(built, job, cfg, command)
                row.update(status="redone" if state == "other" else "done", reason=why)
        except MrisrInputError as err:
            row.update(status="failed", reason=str(err))
            log.error("%s", err)
        except Exception as err:
            row.update(status="failed", reason=f"{type(err).__name__}: {err}")
            log.error("%s failed:\n%s", job.source, traceback.format_exc())
        row["seconds"] = f"{time.perf_counter() - started:.1f}"
    table = [rows[job.target] for job in jobs]
    write_rows_atomic(
        table, output_dir / "batch_summary.csv", fields=("input", "output", "status", "reason", "seconds")
    )
    if cfg.qc:
        from mrisr.report.qc import write_qc_index

        write_qc_index(Path(cfg.qc))
    print_summary(table)
    return table


def print_summary(rows: list[dict[str, str]]) -> None:
    """Rich table of the batch: done / redone / skipped / refused / failed with reasons, and totals."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mrisr batch inference")
    for column in ("input", "status", "reason", "seconds"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["input"], row["status"], row["reason"], row["seconds"])
    console = Console(stderr=False, width=160)
    console.print(table)
    states = ("done", "redone", "skipped", "refused", "failed")
    console.print(", ".join(f"{s} {sum(r['status'] == s for r in rows)}" for s in states))


# ---------------------------------------------------------------------------------------------------- replay
def replay_config(sidecar: Path, output: str | None) -> tuple[DictConfig, dict[str, Any]]:
    """The ``infer`` config and inference options recorded in an output's sidecar, for a rerun into ``output``.

    Raises:
        MrisrInputError: not an mrisr sidecar, its input missing or changed since, or ``output`` = the recorded output.
    """
    from mrisr.io.sidecar import read_sidecar
    from mrisr.utils.config import compose

    record = read_sidecar(sidecar)
    if "config" not in record or "recipe" not in record:
        raise MrisrInputError(sidecar, "not an mrisr output sidecar with a recorded recipe", "pass <output>.mrisr.json")
    source = Path(record["input"])
    if not source.is_file():
        raise MrisrInputError(source, "the recorded input no longer exists", "restore it to replay this output")
    if file_sha256(source) != record.get("input_sha256"):
        raise MrisrInputError(source, "the input changed since the output was made", "a replay needs the same input")
    cfg = compose("infer", [])  # the run directory of this process; every recorded option replaces the default
    with open_dict(cfg):
        for key, value in record["config"].items():
            cfg[key] = value
    recorded = Path(record["output"])
    target = Path(output) if output else recorded.with_name(f"{nifti_stem(recorded)}_replay.nii.gz")
    if target.exists() and same_file(target, recorded):
        raise MrisrInputError(target, "a replay would overwrite the output it reproduces", "pass another output=")
    cfg.input, cfg.output, cfg.inputs, cfg.output_dir, cfg.replay = str(source), str(target), None, None, None
    return cfg, dict(record.get("model_options") or {})


def infer(cfg: DictConfig, command: str | None = None) -> int:
    """Run the inference described by an ``infer`` config (``conf/infer.yaml``); returns the process exit code.

    One volume (``input=``, ``output=``), a batch (``inputs=``, ``output_dir=``; exit code 1 when a volume failed), or
    the replay of a sidecar's recipe (``replay=``).
    """
    from mrisr.utils.progress import set_progress

    set_progress(bool(cfg.progress))
    options = None
    if cfg.replay:
        cfg, options = replay_config(Path(cfg.replay), cfg.output)
    if cfg.inputs:
        if cfg.output_dir:
            check_output_folder(Path(cfg.output_dir) / "batch_summary.csv")
        rows = run_batch(cfg, command)
        return 1 if any(row["status"] in ("failed", "refused") for row in rows) else 0
    if cfg.input in (None, "???") or cfg.output in (None, "???"):
        raise MrisrInputError(None, "no input given", "pass input=LR.nii.gz output=SR.nii.gz, or inputs=… output_dir=…")
    job = Job(Path(cfg.input), Path(cfg.output))
    check_job(job.source, job.target)
    if cfg.qc:
        check_output_folder(Path(cfg.qc) / "index.html")
    built = build_model(cfg, options)
    super_resolve_file(built, job, cfg, command)
    if cfg.qc:
        from mrisr.report.qc import write_qc_index

        write_qc_index(Path(cfg.qc))
    return 0


def infer_job(cfg: DictConfig) -> int:
    """The Hydra job: checks the overrides, runs :func:`infer`; returns its exit code."""
    import torch

    from mrisr.utils.config import check_hydra_overrides

    check_hydra_overrides(OPTION_TYPES)
    torch.set_flush_denormal(bool(cfg.flush_denormal))
    command = " ".join(["infer.py", *sys.argv[1:]])
    return infer(cfg, command)


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
