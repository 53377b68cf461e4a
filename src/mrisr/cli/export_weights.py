"""Ship a trained model with mrisr: its weights file and the ``model=zoo/<name>`` config that runs it by name.

Usage: ``mrisr-export-weights ckpt=<run>/checkpoints/best.ckpt name=zoo/edsr_brain command='python train.py …'
[description='…'] [dtype=float16]`` (also ``mrisr export_weights …``).

Writes ``src/mrisr/nets/weights/<name>.pt`` (the system's tensors in ``dtype``, its model config and provenance:
training data and split, degradation, intensity rule, steps, the selection metric's best value, the test metrics of
the run's ``metrics.json``, the command that trains it, the export date) and ``conf/model/<name>.yaml`` (the model
config with ``weights: <name>``, a header naming the sha256 of the weights file and the commands that rebuild it).
``python infer.py model=<name> input=… output=…`` and ``mrisr.super_resolve(…, model="<name>")`` then run it. Prints
the files, their size, the sha256 and the provenance as one JSON object on the last line.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from mrisr.core.atomic import atomic_path, write_text_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.nets.pretrained import WEIGHTS_FORMAT, weights_folder
from mrisr.utils.cli import print_help, print_json_line, run_cli, wants_help
from mrisr.utils.config import compose, conf_dir

DTYPES = {"float16": torch.float16, "float32": torch.float32}
#: Largest weights file shipped inside the package (bytes).
MAX_BYTES = 5 * 1024 * 1024


def _sources(data: dict[str, Any], split: str) -> list[str]:
    """A split's sources without the local data root (``spine_hr/errsm_20/t2.nii.gz``)."""
    out = []
    for source in data.get(split) or []:
        parts = Path(str(source)).parts
        out.append("/".join(parts[-3:]) if len(parts) >= 3 else str(source))
    return out


def export(
    ckpt: Path, name: str, command: str, description: str = "", dtype: torch.dtype = torch.float16
) -> dict[str, Any]:
    """Write the weights file and the zoo config of a ``train.py`` checkpoint (module docstring); returns a summary.

    Raises:
        MrisrInputError: not a checkpoint of train.py, a name outside ``zoo/``, or a file over 5 MB.
    """
    if not name.startswith("zoo/") or not name.removeprefix("zoo/").replace("_", "").isalnum():
        raise MrisrInputError(None, f"name={name!r} is not zoo/<letters, digits, _>", "pass e.g. name=zoo/edsr_brain")
    if not ckpt.is_file():
        raise MrisrInputError(ckpt, "checkpoint file not found", "pass a .ckpt written by train.py")
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    config = checkpoint.get("mrisr_config") if isinstance(checkpoint, dict) else None
    if not config or "model" not in config:
        raise MrisrInputError(ckpt, "not a checkpoint of mrisr's train.py", "pass a .ckpt written by train.py")
    model = dict(config["model"])
    model.update(weights=name, method=name)
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in checkpoint["state_dict"].items()}
    data = dict(config.get("data") or {})
    best = next(
        (v.get("best_model_score") for k, v in checkpoint.get("callbacks", {}).items() if "Checkpoint" in k), None
    )
    metrics_file = ckpt.parent.parent / "metrics.json"
    provenance = {
        "name": name,
        "description": description,
        "checkpoint": ckpt.name,
        "global_step": int(checkpoint.get("global_step", 0)),
        "epoch": int(checkpoint.get("epoch", 0)),
        "train_sources": _sources(data, "train"),
        "val_sources": _sources(data, "val"),
        "test_sources": _sources(data, "test"),
        "degradation": (config.get("degradation") or {}).get("setting"),
        "intensity": model.get("intensity"),
        "seed": config.get("seed"),
        "selection": {"best_score": None if best is None else float(best)},
        "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
        "command": command,
        "exported": time.strftime("%Y-%m-%d"),
        "parameters": int(sum(v.numel() for v in state.values() if v.is_floating_point())),
    }
    net = {k: v for k, v in (model.get("net") or {}).items() if k != "_partial_"}
    payload = {"format": WEIGHTS_FORMAT, "state_dict": state, "net": net, "system": model, "provenance": provenance}
    weights = weights_folder() / f"{name}.pt"
    with atomic_path(weights, suffix=".pt") as tmp:
        torch.save(payload, tmp)
    size = weights.stat().st_size
    if size > MAX_BYTES:
        weights.unlink()
        raise MrisrInputError(weights, f"{size / 2**20:.1f} MB is over the 5 MB a shipped model may take", "shrink it")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    header = [
        f"# {name}: {description}" if description else f"# {name}",
        f"# Weights shipped with mrisr: src/mrisr/nets/weights/{name}.pt (sha256 {digest}),",
        f"# {provenance['parameters']:,} parameters, {provenance['global_step']} optimiser steps, trained on "
        f"{', '.join(provenance['train_sources']) or 'see the weights file'}.",
        "# Rebuild:",
        f"#   {command}",
        f"#   mrisr-export-weights ckpt=<run dir>/checkpoints/<best>.ckpt name={name} command='…'",
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump(model, sort_keys=False)
    config_file = conf_dir() / "model" / f"{name}.yaml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(text, config_file)
    compose("infer", [f"model={name}"])  # the written config composes
    return {"weights": str(weights), "config": str(config_file), "bytes": size, "sha256": digest, **provenance}


def main(argv: list[str]) -> int:
    """Run the tool on ``argv`` (``key=value`` overrides of conf/export_weights.yaml); returns the exit status."""
    if wants_help(argv):
        return print_help(__doc__, "export_weights", argv)
    cfg = compose("export_weights", argv)
    if str(cfg.dtype) not in DTYPES:
        raise MrisrInputError(None, f"dtype={cfg.dtype} is not supported", f"pass one of {', '.join(DTYPES)}")
    summary = export(
        Path(cfg.ckpt), str(cfg.name), str(cfg.command), str(cfg.description or ""), DTYPES[str(cfg.dtype)]
    )
    print_json_line({k: v for k, v in summary.items() if k != "metrics"})
    return 0


def run() -> None:
    """Console-script entry point."""
    run_cli(main)


if __name__ == "__main__":
    run()
