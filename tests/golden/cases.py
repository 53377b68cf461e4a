"""Golden inference cases: one small phantom and one model per inference path, with frozen weights.

``python tests/golden/cases.py`` writes ``tests/golden/data/<case>.pt`` (the network weights and the expected SR
volume); ``tests/inference/test_golden_inference.py`` rebuilds every model from its config, loads the frozen
weights and checks that today's code reproduces the stored output to 1e-6. Weights are drawn from a seeded normal
distribution (not the nets' own initialisation, which zero-initialises some output layers), so every output depends
on every layer.

The stored outputs were computed by the code before inference became its own layer (commit 51b4597, with this file's
``run`` adapted to that code's ``run_on_volume`` keywords); the cases pin settings whose meaning did not change since
(DDIM-20 with leading spacing; the LR-conditioned residual network).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mrisr.io.nifti import Volume

DATA = Path(__file__).resolve().parent / "data"


def phantom(shape: tuple[int, int, int] = (28, 24, 8), spacing: tuple[float, float, float] = (1.0, 1.0, 4.0)) -> Volume:
    """A smooth random field with two bright ellipsoids, thick slices along axis 2 (LPS-ish oblique-free affine)."""
    rng = np.random.default_rng(7)
    grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    x, y, z = (g * s for g, s in zip(grids, spacing, strict=True))
    field = 300 + 80 * np.sin(x / 5.0) * np.cos(y / 7.0) + 40 * np.cos(z / 9.0)
    field += 500 * (((x - 12) / 7) ** 2 + ((y - 10) / 5) ** 2 + ((z - 14) / 10) ** 2 <= 1)
    field += 250 * (((x - 20) / 4) ** 2 + ((y - 17) / 4) ** 2 + ((z - 9) / 6) ** 2 <= 1)
    field += rng.normal(0, 15, shape)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-14.0, -12.0, 5.0)
    return Volume(np.clip(field, 0, None).astype(np.float32), affine)


def randomise(module: nn.Module, seed: int, scale: float = 0.05) -> None:
    """Overwrite every floating-point parameter of ``module`` with seeded N(0, scale²) values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if param.is_floating_point():
                param.copy_(torch.randn(param.shape, generator=generator) * scale)


DIFFUSION = "mrisr.systems.diffusion.DiffusionSR"


def _accepts(target: str, argument: str) -> bool:
    import inspect

    from hydra.utils import get_class

    return argument in inspect.signature(get_class(target)).parameters


def _compose_model(name: str, overrides: list[str] | None = None, intensity: str = "default") -> Any:
    from hydra.utils import instantiate

    from mrisr.utils.config import compose

    cfg = compose("infer", [f"model={name}", f"intensity={intensity}", *(f"++{o}" for o in overrides or [])])
    return instantiate(cfg.model)


def supervised() -> tuple[Any, dict[str, Any]]:
    model = _compose_model("edsr_small", ["model.net.n_feats=8", "model.net.n_resblocks=2"])
    return model, {"nets": {"net": model.net}}


def _bare_generator(name: str, overrides: list[str] | None = None) -> Any:
    # The goldens were saved with the smoke generators before they gained an interpolation skip: the case keeps the
    # bare inner net, so the frozen weights and the inference path checked stay the same.
    model = _compose_model(name, overrides, intensity="prettier")
    if hasattr(model.net, "interpolate"):
        model.net = model.net.net
    return model


def prettier() -> tuple[Any, dict[str, Any]]:
    model = _bare_generator("edsr_smoke", ["model.net.net.res_scale=0.1"])  # the paper EDSR's, as saved
    return model, {"nets": {"net": model.net}}


def adversarial() -> tuple[Any, dict[str, Any]]:
    model = _bare_generator("realesrgan_smoke")
    return model, {"nets": {"net": model.net}}


def _has_field(target: str, field: str) -> bool:
    import dataclasses

    from hydra.utils import get_class

    return field in {f.name for f in dataclasses.fields(get_class(target))}


def diffusion_ddpm() -> tuple[Any, dict[str, Any]]:
    # DDIM-20 with Graf's leading spacing (950 … 0): the same schedule before and after few-step samplers moved to
    # trailing spacing.
    ddim = "mrisr.diffusion.schedulers.DDIMSampler"
    leading = ["model.sampler.timestep_spacing=leading"] if _has_field(ddim, "timestep_spacing") else []
    model = _compose_model(
        "palette_tiny",
        [f"model.sampler._target_={ddim}", "model.sampler.steps=20", "model.progress=false", *leading],
    )
    return model, {"nets": {"net": model.net}}


def diffusion_residual() -> tuple[Any, dict[str, Any]]:
    model = _compose_model(
        "palette_residual",
        [
            "model.net.sample_size=16",
            "model.net.block_out_channels=[8,16]",
            "model.net.norm_num_groups=4",
            "model.net.time_embedding_dim=32",
            "model.net.layers_per_block=1",
            "model.net.add_attention=false",
            # The LR-conditioned residual network (two input channels), as before the InDI formulation without it.
            "model.net.in_channels=2",
            *(["model.residual_condition=true"] if _accepts(DIFFUSION, "residual_condition") else []),
            "model.samples=2",
            "model.passes=2",
            "model.progress=false",
        ],
    )
    return model, {"nets": {"net": model.net}}


def zero_shot() -> tuple[Any, dict[str, Any]]:
    model = _compose_model("smore_smoke", ["model.thickness_mm=3.5"])
    return model, {"nets": {}}


def zero_shot_prior_fit() -> tuple[Any, dict[str, Any]]:
    model = _compose_model(
        "smore_prior",
        [
            "model.max_steps=6",
            "model.max_time_s=null",
            "model.progress_bar=false",
            "model.batch_size=4",
            "model.inference_precision=32",
        ],
    )
    return model, {"nets": {}}


def prior_alone() -> tuple[Any, dict[str, Any]]:
    model = _compose_model("smore_prior_pretrain", intensity="minmax")
    return model, {"nets": {"net": model.net}}


CASES: dict[str, Callable[[], tuple[Any, dict[str, Any]]]] = {
    "supervised": supervised,
    "prettier": prettier,
    "adversarial": adversarial,
    "diffusion_ddpm": diffusion_ddpm,
    "diffusion_residual": diffusion_residual,
    "zero_shot": zero_shot,
    "zero_shot_prior_fit": zero_shot_prior_fit,
    "prior_alone": prior_alone,
}


def build(case: str, weights: dict[str, dict[str, torch.Tensor]] | None = None) -> Any:
    """The model of ``case`` with frozen weights (``weights``) or freshly randomised ones (seed = case index)."""
    model, parts = CASES[case]()
    for index, (name, net) in enumerate(parts["nets"].items()):
        if weights is None:
            randomise(net, seed=1000 * list(CASES).index(case) + index)
        else:
            net.load_state_dict(weights[name])
    if hasattr(model, "ema"):  # diffusion models sample with the averaged copy: make it the frozen net
        model.ema.module.load_state_dict(model.net.state_dict())
    if hasattr(model, "eval"):
        model.eval()
    return model


def net_weights(case: str, model: Any) -> dict[str, dict[str, torch.Tensor]]:
    """State dicts of the frozen nets of ``case`` in ``model``."""
    _, parts = CASES[case]()
    return {name: {k: v.clone() for k, v in model.net.state_dict().items()} for name in parts["nets"]}


def run(model: Any) -> Volume:
    """Super-resolve the phantom with ``model`` (seed 0, slice axis 2)."""
    from mrisr.inference import InferenceSettings, run_on_volume

    torch.set_num_threads(1)
    return run_on_volume(model, phantom(), InferenceSettings(axis=2, seed=0, estimate_thickness=False)).sr


def main(cases: list[str] | None = None) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for case in cases or CASES:
        model = build(case)
        weights = net_weights(case, model)
        sr = run(model)
        torch.save(
            {"weights": weights, "sr": torch.from_numpy(sr.data.copy()), "affine": torch.from_numpy(sr.affine)},
            DATA / f"{case}.pt",
        )
        print(case, sr.shape, float(sr.data.mean()), float(sr.data.std()))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:] or None)
