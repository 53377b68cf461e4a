"""Super-resolve a thick-slice volume: ``python infer.py input=LR.nii.gz output=SR.nii.gz model=cubic``.

Trained models are rebuilt from their checkpoint alone (``ckpt_path=…``). The output lies on the isotropic grid (or
``target_spacing_mm``) and overlays the input in world coordinates; a JSON sidecar records what was done.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import hydra
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

import mrisr.utils.config  # noqa: F401  (registers the ${repo_root:} resolver before Hydra composes)
from mrisr.api import as_volume
from mrisr.callbacks.image_metrics import write_rows_atomic
from mrisr.inference import output_grid
from mrisr.io.errors import MrisrInputError
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import same_file, save_volume
from mrisr.models import load_checkpoint_model, load_model

log = logging.getLogger("mrisr.infer")


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def sidecar_path(output: Path) -> Path:
    """``SR.nii.gz`` → ``SR.mrisr.json``."""
    stem = output.name.removesuffix(".gz").removesuffix(".nii")
    return output.with_name(f"{stem}.mrisr.json")


def infer(cfg: DictConfig) -> Path:
    """Run one inference described by ``cfg`` (see conf/infer.yaml); returns the written output path."""
    torch.manual_seed(int(cfg.seed))
    source, target = Path(cfg.input), Path(cfg.output)
    if target.exists() and same_file(source, target):
        raise MrisrInputError(
            target, "output is the input file", "choose another output path; inputs are never overwritten"
        )
    volume = as_volume(source)
    geometry = detect_slice_axis(volume, axis=cfg.axis, allow_anisotropic_inplane=bool(cfg.allow_anisotropic_inplane))
    grid = output_grid(geometry, volume.shape[geometry.axis], cfg.target_spacing_mm)
    device = resolve_device(str(cfg.device))
    zero_shot_options = {
        "thickness_mm": cfg.thickness,
        "profile": cfg.profile,
        "max_time_s": cfg.budget.max_time,
        "max_steps": cfg.budget.max_steps,
    }
    given = {k: v for k, v in zero_shot_options.items() if v is not None}
    if cfg.ckpt_path and given:
        raise MrisrInputError(
            cfg.ckpt_path,
            "thickness=/profile=/budget.* apply to per-volume fits, not to a trained checkpoint",
            "drop them",
        )
    if cfg.ckpt_path:
        model = load_checkpoint_model(cfg.ckpt_path, device=device)
        model_name = f"checkpoint:{cfg.ckpt_path}"
    else:
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
        model_name = OmegaConf.to_container(model_cfg, resolve=True)
        if hasattr(model, "state_dict") and not getattr(model, "fits_per_volume", False):
            raise MrisrInputError(
                None,
                f"model {cfg.model._target_} is a network without trained weights",
                "pass ckpt_path= a checkpoint written by train.py, or use model=cubic|linear|nearest",
            )
    log.info(
        "%s: axis %d (%s), separation %.4g mm, in-plane %.4g mm, factor %.4g → %d slices of %.4g mm",
        source,
        geometry.axis,
        geometry.axis_code,
        geometry.separation_mm,
        geometry.inplane_spacing_mm,
        geometry.factor,
        grid.length,
        grid.spacing_mm,
    )
    started = time.perf_counter()
    fit_summary = None
    if getattr(model, "fits_per_volume", False):
        fit_summary = model.fit_volume(volume, geometry, grid)
    sr = model.super_resolve(volume, geometry, grid)
    elapsed = time.perf_counter() - started
    written = save_volume(sr, target, header=volume.header)
    record = {
        "input": str(source),
        "output": str(written),
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
        record["fit"] = fit_summary
        fit_log = written.with_name(f"{sidecar_path(written).name.removesuffix('.mrisr.json')}.fit.csv")
        write_rows_atomic(model.fit_log, fit_log, fields=("step", "loss", "lr", "seconds"))
        record["fit_log"] = str(fit_log)
    sidecar = sidecar_path(written)
    fd, tmp = tempfile.mkstemp(prefix=f".{sidecar.name}.", dir=sidecar.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=2)
    os.replace(tmp, sidecar)
    log.info("wrote %s (%s) in %.2f s", written, "×".join(map(str, sr.shape)), elapsed)
    return written


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
def main(cfg: DictConfig) -> None:
    try:
        infer(cfg)
    except MrisrInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
