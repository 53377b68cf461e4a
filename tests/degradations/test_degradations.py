"""Property tests of the degradation transforms and of every preset in ``conf/degradation/`` (docs/physics.md §6–§7).

Presets are globbed, so a degradation added later as one YAML file is tested here without edits: shapes and
spacing kept, identity at zero severity / probability 0, determinism under a seed, flat field kept by the geometric
steps, HR/LR centre-of-mass alignment, slice-kernel FWHM against the spec table, and that motion, bias field and
noise change only what they should.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchio as tio
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import REPO_ROOT
from mrisr.degradations import (
    AcquisitionGeometry,
    BiasField,
    DegradationStack,
    DegradedInputCache,
    Downsample,
    GaussianBlur,
    IntensityJitter,
    InterlaceMotion,
    Noise,
    RandomBiasField,
    RandomGaussianBlur,
    RandomIntensityJitter,
    RandomInterlaceMotion,
    RandomNoise,
    RandomRescale,
    RandomRotate,
    RandomSliceGap,
    RandomSliceProfile,
    Rescale,
    Rotate,
    SliceGap,
    SliceProfile,
    ThickSlice,
    Upsample,
    degrade_for_test,
    subject_seed,
    thickness_grid,
)
from mrisr.degradations.functional import gap_kernel
from mrisr.io.nifti import Volume, load_volume
from mrisr.physics import discrete_fwhm, kernel_fwhm_voxels, simulate_thick_slices, slice_kernel, upsample_to_grid
from mrisr.physics.resample import resample_affine
from mrisr.utils.config import compose
from support.volumes import phantom_volume

PRESETS = sorted(p.stem for p in (REPO_ROOT / "conf" / "degradation").glob("*.yaml"))
GRAF_ROWS = [f"graf_table2_row{r}" for r in range(1, 9)]


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread: tiny tensors run much faster without thread hand-offs on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def preset_config(name: str) -> Any:
    """Composed ``degradation`` node of a preset (through train.yaml, as the training entry point sees it)."""
    return compose("train", [f"degradation={name}"]).degradation


@functools.lru_cache(maxsize=64)
def build(name: str) -> Any:
    return instantiate(preset_config(name))


def stack_of(stack: Any, keep: Any) -> DegradationStack:
    """A stack with the steps of ``stack`` for which ``keep(step)`` holds (training and test-time lists)."""
    test_time = None
    if getattr(stack, "test_time", None) is not None:
        test_time = stack_of(stack.test_time, keep)
    steps = stack.steps if isinstance(stack, DegradationStack) else stack.as_stack().steps
    return DegradationStack(
        steps=[s for s in steps if keep(s)], axis=stack.axis, setting=stack.setting, test_time=test_time
    )


def as_stack(degradation: Any) -> DegradationStack:
    return degradation if isinstance(degradation, DegradationStack) else degradation.as_stack()


def max_separation_mm(stack: DegradationStack, spacing: float) -> float:
    """Largest slice separation any step of the stack (or its test-time stack) can produce."""
    seps = [spacing]
    for s in [*stack.steps, *(stack.test_time.steps if stack.test_time else [])]:
        if isinstance(s, SliceProfile):
            seps.append(s.separation_mm or s.thickness_mm)
        elif isinstance(s, RandomSliceProfile):
            seps.append(max(s.thicknesses_mm) + s.gap_range_mm[1])
        elif isinstance(s, Downsample) and s.separation_mm is not None:
            seps.append(s.separation_mm)
    return max(seps)


# Zero-severity version of every step kind used in a preset (a new step class needs a rule here).
def _zero_severity(node: Any, spacing: float) -> None:
    target = str(node["_target_"]).rsplit(".", 1)[-1]
    rules: dict[str, dict[str, Any]] = {
        "SliceProfile": {"thickness_mm": spacing, "separation_mm": None},
        "RandomSliceProfile": {"thicknesses_mm": [spacing], "gap_range_mm": [0.0, 0.0]},
        "Downsample": {"separation_mm": spacing} if node.get("separation_mm") is not None else {},
        "Upsample": {},
        "SliceGap": {"weights": [1.0]},
        "Noise": {"sigma": 0.0},
        "BiasField": {"coefficients": [0.0] * len(node.get("coefficients", []))},
        "IntensityJitter": {"brightness": 1.0, "contrast": 1.0},
        "GaussianBlur": {"sigma_px": 0.0},
        "Rescale": {"factor": 1.0},
        "Rotate": {"angle_deg": 0.0},
        "InterlaceMotion": {"shift_fraction": 0.0, "row_shift_fraction": 0.0},
    }
    if target.startswith("Random") and target != "RandomSliceProfile":
        node["prob"] = 0.0
        return
    assert target in rules, f"add a zero-severity rule for {target} to tests/degradations/test_degradations.py"
    for key, value in rules[target].items():
        node[key] = value


def zero_severity(name: str, spacing: float) -> Any:
    cfg = OmegaConf.create(OmegaConf.to_container(preset_config(name), resolve=True))
    if str(cfg["_target_"]).endswith("ThickSlice"):
        cfg.thickness_mm, cfg.separation_mm, cfg.noise_std = spacing, None, 0.0
        return instantiate(cfg)
    for group in (cfg.get("steps"), (cfg.get("test_time") or {}).get("steps")):
        for node in group or []:
            _zero_severity(node, spacing)
    return instantiate(cfg)


def plane_phantom(h: int = 64, w: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, 1, h, w), generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    return (0.2 + x[0]).float()  # (1, H, W), positive, ~[0.2, 1.2]


def com_rows(x: torch.Tensor) -> tuple[float, float]:
    """Centre of mass (row, column) of a (1, H, W) image."""
    img = x[0].double()
    rows = torch.arange(img.shape[0], dtype=torch.float64)[:, None]
    cols = torch.arange(img.shape[1], dtype=torch.float64)[None, :]
    total = img.sum()
    return float((img * rows).sum() / total), float((img * cols).sum() / total)


# --------------------------------------------------------------------------------------------------
# every preset
# --------------------------------------------------------------------------------------------------


def test_presets_present() -> None:
    required = {"none", "thick_slice", "slice_profile", "prettier", "clinical_mix", *GRAF_ROWS}
    assert required <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_contract_shapes_and_spacing(name: str) -> None:
    degradation = build(name)
    assert isinstance(degradation.axis, int) and degradation.axis == 2
    assert isinstance(degradation.setting, str) and degradation.setting
    assert isinstance(degradation.is_random, bool)
    assert degradation.output_grid in ("lr", "hr")
    json.dumps(degradation.describe(0))

    volume = phantom_volume()
    out = degradation(volume, seed=0)
    assert out.data.dtype == np.float32 and np.all(np.isfinite(out.data))
    assert out.shape[:2] == volume.shape[:2]
    centre = lambda v: v.affine @ np.r_[(np.array(v.shape) - 1) / 2.0, 1.0]  # noqa: E731
    np.testing.assert_allclose(centre(out), centre(volume), atol=1e-6)  # FOV centre invariant (§3)
    if degradation.output_grid == "hr":
        assert out.shape == volume.shape
        np.testing.assert_allclose(out.affine, volume.affine, atol=1e-9)
    else:
        record = degradation.describe(0, volume=volume) if hasattr(degradation, "last_record") else None
        separation = record["separation_mm"] if record else degradation.separation
        step = separation / volume.zooms[2]
        assert out.shape[2] == max(1, round(volume.shape[2] / step))
        assert out.zooms[2] == pytest.approx(separation, abs=1e-5)
        assert out.zooms[:2] == pytest.approx(volume.zooms[:2], abs=1e-6)
        expected = resample_affine(volume.affine, 2, step, volume.shape[2], out.shape[2])
        np.testing.assert_allclose(out.affine, expected, atol=1e-6)

    plane = plane_phantom(64, 40)
    hr, lr = degradation.sample_pair(plane, 1.0, torch.Generator().manual_seed(0))
    assert hr.shape == lr.shape == plane.shape and hr.dtype == lr.dtype == torch.float32
    assert torch.isfinite(lr).all()


@pytest.mark.parametrize("name", PRESETS)
def test_preset_determinism(name: str) -> None:
    degradation = build(name)
    volume = phantom_volume(seed=1)
    a, b = degradation(volume, seed=7), degradation(volume, seed=7)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.affine, b.affine)
    if isinstance(degradation, DegradationStack):
        assert degradation.describe(7, volume=volume) == degradation.last_record
    else:
        assert degradation.describe(7) == degradation.describe(7)
    test_random = any(getattr(s, "is_random", False) for s in as_stack(degradation).test_steps())
    c = degradation(volume, seed=8)
    assert (a.shape != c.shape or not np.array_equal(a.data, c.data)) == test_random

    plane = plane_phantom(48, 32, seed=2)
    pairs = [degradation.sample_pair(plane, 1.0, torch.Generator().manual_seed(s)) for s in (3, 3, 4, 5, 6)]
    torch.testing.assert_close(pairs[0], pairs[1], rtol=0, atol=0)
    train_random = any(getattr(s, "is_random", False) for s in as_stack(degradation).steps)
    differs = any(not torch.equal(pairs[0][1], p[1]) for p in pairs[2:])
    assert differs == train_random


@pytest.mark.parametrize("name", PRESETS)
def test_preset_identity_at_zero_severity(name: str) -> None:
    spacing = 1.0
    degradation = zero_severity(name, spacing)
    plane = plane_phantom(40, 24, seed=3)
    hr, lr = degradation.sample_pair(plane, spacing, torch.Generator().manual_seed(0))
    torch.testing.assert_close(hr, plane, rtol=0, atol=1e-6)
    torch.testing.assert_close(lr, plane, rtol=1e-6, atol=1e-6)
    volume = phantom_volume(seed=2)
    out = degradation(volume, seed=0)
    assert out.shape == volume.shape
    np.testing.assert_allclose(out.data, volume.data, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out.affine, volume.affine, atol=1e-9)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_flat_field(name: str) -> None:
    """Geometric steps (PSF, gap, down/up, rescale/rotate/interlace, blur) keep a constant image constant (§7)."""
    stack = stack_of(build(name), lambda s: s.preserves_flat_field)
    c = 0.7
    plane = torch.full((1, 96, 40), c)
    for seed in range(4):
        hr, lr = stack.sample_pair(plane, 0.8571, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(lr, plane, rtol=1e-5, atol=0)
        torch.testing.assert_close(hr, plane, rtol=1e-5, atol=0)
    volume = Volume(data=np.full((6, 5, 60), 300.0, dtype=np.float32), affine=np.diag([0.9, 0.9, 1.0, 1.0]))
    out = stack(volume, seed=1)
    np.testing.assert_allclose(out.data, 300.0, rtol=1e-5)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_centre_of_mass_alignment(name: str) -> None:
    """HR/LR centre of mass of a blob of σ = max(2, s) px agrees within 0.05 px (docs/physics.md §7)."""
    spacing = 1.0
    degradation = build(name)
    stack = stack_of(degradation, lambda s: s.preserves_alignment)
    s_max = max_separation_mm(as_stack(degradation), spacing) / spacing
    sigma = max(2.0, s_max)
    h, w = 256, 112
    rng = np.random.default_rng(11)
    rows = torch.arange(h, dtype=torch.float64)[:, None]
    cols = torch.arange(w, dtype=torch.float64)[None, :]
    errors = []
    for trial in range(20):
        r0 = h / 2 + rng.uniform(-36, 36)
        c0 = w / 2 + rng.uniform(-1, 1)
        blob = torch.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * sigma**2)).float()[None]
        hr, lr = stack.sample_pair(blob, spacing, torch.Generator().manual_seed(trial))
        (rh, ch), (rl, cl) = com_rows(hr), com_rows(lr)
        errors.append((rl - rh, cl - ch))
    err = np.array(errors)
    assert np.abs(err).max() <= 0.05, err
    assert np.abs(err.mean(axis=0)).max() <= 0.02, err.mean(axis=0)

    # Test-time LR on its own grid: compare in world mm through the affines (≤ 0.05·Δ).
    if stack.output_grid == "lr":
        n = 160
        z = np.arange(n, dtype=np.float64)
        world_errors = []
        for trial in range(8):
            z0 = n / 2 + rng.uniform(-20, 20)
            profile = np.exp(-((z - z0) ** 2) / (2 * sigma**2))
            data = np.broadcast_to(profile, (3, 3, n)).astype(np.float32)
            volume = Volume(data=data, affine=np.diag([1.0, 1.0, spacing, 1.0]))
            out = stack(volume, seed=trial)
            lr_profile = out.data[1, 1].astype(np.float64)
            com_lr = (lr_profile * np.arange(out.shape[2])).sum() / lr_profile.sum()
            com_hr = (profile * z).sum() / profile.sum()
            world_lr = (out.affine @ np.r_[1, 1, com_lr, 1])[2]
            world_hr = (volume.affine @ np.r_[1, 1, com_hr, 1])[2]
            world_errors.append(world_lr - world_hr)
        assert np.abs(world_errors).max() <= 0.05 * spacing, world_errors


@pytest.mark.parametrize("name", PRESETS)
def test_preset_kernel_fwhm(name: str) -> None:
    """Every slice-profile kernel of the preset has the FWHM of its thickness (docs/physics.md §2.2, §7)."""
    stack = as_stack(build(name))
    profiles = [s for s in [*stack.steps, *(stack.test_time.steps if stack.test_time else [])]]
    for step in profiles:
        if isinstance(step, SliceProfile):
            candidates = [(step.thickness_mm, step.profile)]
        elif isinstance(step, RandomSliceProfile):
            candidates = [(t, p) for t in step.thicknesses_mm for p in step.profiles]
        else:
            continue
        for spacing in (1.0, 0.8571):
            for thickness, profile in candidates:
                f = kernel_fwhm_voxels(thickness, spacing)
                assert f == pytest.approx(math.sqrt(thickness**2 - spacing**2) / spacing, rel=1e-12)
                op = SliceProfile(thickness, profile=profile)
                kernel = op.kernel(spacing)
                assert abs(kernel.sum() - 1) <= 1e-6 and np.allclose(kernel, kernel[::-1], atol=1e-7)
                assert kernel.size % 2 == 1 and np.isclose(kernel.max(), kernel[kernel.size // 2])
                if profile == "slr":
                    assert kernel.sum() / kernel.max() == pytest.approx(f, rel=0.02)
                    assert abs(discrete_fwhm(kernel) - f) <= 0.25
                elif profile == "gaussian" and f >= 2:
                    assert abs(discrete_fwhm(kernel) - f) <= 0.1
                record = op.plan(None, AcquisitionGeometry(axis=0, spacing_mm=spacing, spatial_shape=(64, 8)))
                assert record.params["fwhm_voxels"] == pytest.approx(f, rel=1e-12)


def test_kernel_table_of_the_spec() -> None:
    """docs/physics.md §2.4 / §6: f, parity L and s for the Graf and PRETTIER settings, to 3 decimals."""
    table = [  # (Δ, T, S, f, L parity, s)
        (0.8571, 4.00, 4.00, 4.558, 11, 4.667),
        (0.8571, 6.00, 6.00, 6.929, 15, 7.000),
        (0.8571, 8.75, 8.75, 10.160, 21, 10.209),
        (1.0, 5.0, 6.0, 4.899, 11, 6.0),
    ]
    for spacing, t, s, f, taps, step in table:
        geometry = AcquisitionGeometry(axis=0, spacing_mm=spacing, spatial_shape=(128, 8))
        psf = SliceProfile(t, separation_mm=s, support="parity").plan(None, geometry)
        down = Downsample().plan(None, geometry)
        assert psf.params["fwhm_voxels"] == pytest.approx(f, abs=1e-3)
        assert psf.params["taps"] == taps
        assert round(down.params["step"], 3) == pytest.approx(step, abs=1e-3)
    prettier = build("prettier").describe(0, volume=phantom_volume(spacing=1.0))
    assert prettier["steps"][0]["fwhm_voxels"] == pytest.approx(4.899, abs=1e-3)
    assert prettier["step"] == pytest.approx(6.0)
    multi = RandomSliceProfile()
    assert multi.thicknesses_mm == thickness_grid(4.0, 9.0, 0.25) and len(multi.thicknesses_mm) == 21
    assert multi.thicknesses_mm[0] == 4.0 and multi.thicknesses_mm[-1] == 9.0


def test_graf_rows_share_bit_identical_test_inputs() -> None:
    """Every Table 2 row degrades test volumes with the same graf_eval stack (fair ablation)."""
    volume = phantom_volume(seed=4)
    reference = build("graf_eval")(volume, seed=5)
    for name in GRAF_ROWS:
        row = build(name)
        assert row.test_time is not None and row.test_time.setting == "graf_eval"
        out = row(volume, seed=5)
        np.testing.assert_array_equal(out.data, reference.data)
        assert row.last_record["setting"] == row.setting and row.last_record["test_time_setting"] == "graf_eval"
    # … while the training stacks differ row by row (cumulative).
    counts = [len(build(name).steps) for name in GRAF_ROWS]
    assert counts == sorted(counts) and counts[0] == 0


# --------------------------------------------------------------------------------------------------
# single transforms
# --------------------------------------------------------------------------------------------------

RANDOM_STEPS = [
    RandomSliceGap(separation_mm=5.0),
    RandomNoise(),
    RandomNoise(kind="rician"),
    RandomBiasField(),
    RandomIntensityJitter(),
    RandomGaussianBlur(),
    RandomRescale(),
    RandomRotate(),
    RandomInterlaceMotion(),
]


@pytest.mark.parametrize("step", RANDOM_STEPS, ids=lambda s: type(s).__name__)
def test_random_step_probability_zero_is_identity(step: Any) -> None:
    plane = plane_phantom(48, 32)
    original = step.prob
    try:
        step.prob = 0.0
        stack = DegradationStack(steps=[step])
        hr, lr = stack.sample_pair(plane, 1.0, torch.Generator().manual_seed(0))
        assert torch.equal(lr, plane) and torch.equal(hr, plane)
        step.prob = 1.0
        hr, lr = stack.sample_pair(plane, 1.0, torch.Generator().manual_seed(0))
        assert not torch.equal(lr, plane)
    finally:
        step.prob = original


ZERO_OPS = [
    SliceProfile(0.8),  # T < Δ under the variance convention: identity kernel
    SliceGap([1.0]),
    Noise(0.0),
    BiasField([0.0] * 10),
    IntensityJitter(1.0, 1.0),
    GaussianBlur(0.0),
    Rescale(1.0),
    Rotate(0.0),
    InterlaceMotion(5, 0.0),
]


@pytest.mark.parametrize("op", ZERO_OPS, ids=lambda s: type(s).__name__)
def test_deterministic_op_at_zero_severity_is_identity(op: Any) -> None:
    plane = plane_phantom(48, 32)
    _, lr = DegradationStack(steps=[op]).sample_pair(plane, 1.0, None)
    torch.testing.assert_close(lr, plane, rtol=0, atol=1e-7)


def test_down_up_at_unit_step_is_identity() -> None:
    plane = plane_phantom(50, 20)
    stack = DegradationStack(steps=[Downsample(separation_mm=1.0), Upsample()])
    _, lr = stack.sample_pair(plane, 1.0, None)
    torch.testing.assert_close(lr, plane, rtol=0, atol=1e-6)


def test_gap_kernel_is_centred_and_unit_sum() -> None:
    for weights in ([1.0], [0.3, 0.3], [0.2, 0.9, 0.2], [0.5, 1.0, 1.0, 0.5], [1, 2, 3, 2, 1]):
        taps = gap_kernel(weights)
        assert taps.size % 2 == 1 and abs(taps.sum() - 1) < 1e-12
        np.testing.assert_allclose(taps, taps[::-1], atol=1e-15)
    assert gap_kernel([1, 1]).tolist() == [0.25, 0.5, 0.25]
    # Asymmetric weights: the LR slice reads Σ w_k x(c + o_k); its centroid is Σ w_k o_k (no hidden offset).
    taps = gap_kernel([0.2, 0.8])
    offsets = np.arange(taps.size) - (taps.size - 1) / 2
    assert (taps * offsets).sum() == pytest.approx(0.8 * 0.5 - 0.2 * 0.5)
    ramp = torch.arange(30, dtype=torch.float64).reshape(1, 1, 30, 1).expand(1, 1, 30, 3)
    out = SliceGap([0.2, 0.8]).apply_tensor(ramp, 0, {"weights": [0.2, 0.8]})
    torch.testing.assert_close(out[0, 0, 5:25, 0], ramp[0, 0, 5:25, 0] + 0.3)


def test_random_gap_rows_follow_graf_rule() -> None:
    """g = ⌊u·0.5·s + s/10⌋ + 1: 1–3 rows at 4 mm and 2–7 rows at 8.75 mm for Δ = 0.8571 mm (docs/physics.md §6)."""
    generator = torch.Generator().manual_seed(0)
    for thickness, expected in ((4.0, {1, 2, 3}), (8.75, {2, 3, 4, 5, 6, 7})):
        gap = RandomSliceGap(separation_mm=thickness)
        geometry = AcquisitionGeometry(axis=0, spacing_mm=0.8571, spatial_shape=(160, 160))
        seen = set()
        for _ in range(300):
            planned = gap.plan(generator, geometry)
            weights = planned.params["weights"]
            seen.add(planned.params["rows"])
            assert np.allclose(weights, weights[::-1]) and abs(sum(weights) - 1) < 1e-12
        assert seen == expected


def test_interlace_motion_moves_only_alternate_bands() -> None:
    h, w = 60, 80
    x = plane_phantom(h, w).unsqueeze(0).double()
    op = InterlaceMotion(band_rows=5, shift_fraction=0.02, phase=0)
    geometry = AcquisitionGeometry(axis=0, spacing_mm=1.0, spatial_shape=(h, w))
    params = op.plan(None, geometry).params
    assert params["shift_px"] == pytest.approx(0.02 * w) and params["shift_axis"] == 1
    y = op.apply_tensor(x, 0, params)
    band = (torch.arange(h) // 5) % 2 == 1
    assert torch.equal(y[0, 0, ~band], x[0, 0, ~band])  # unmoved bands untouched bit for bit
    assert not torch.equal(y[0, 0, band], x[0, 0, band])
    # moved rows: shifted by shift_px along the columns, row content otherwise unchanged
    blob = torch.exp(-((torch.arange(w, dtype=torch.float64) - 40.3) ** 2) / 18).expand(1, 1, h, w)
    moved = op.apply_tensor(blob, 0, params)[0, 0]
    cols = torch.arange(w, dtype=torch.float64)
    shift = (moved * cols).sum(1) / moved.sum(1) - (blob[0, 0] * cols).sum(1) / blob[0, 0].sum(1)
    torch.testing.assert_close(shift[band], torch.full_like(shift[band], 1.6), atol=1e-6, rtol=0)
    assert torch.all(shift[~band] == 0)
    # code semantics (both axes) also move the bands along the rows; the paper's do not
    both = InterlaceMotion(band_rows=5, shift_fraction=0.02, row_shift_fraction=0.05)
    ramp = torch.arange(h, dtype=torch.float64).reshape(1, 1, h, 1).expand(1, 1, h, w)
    moved_rows = both.apply_tensor(ramp, 0, both.plan(None, geometry).params)
    torch.testing.assert_close(moved_rows[0, 0, 10:50][band[10:50]], ramp[0, 0, 10:50][band[10:50]] - 3.0)
    assert torch.equal(op.apply_tensor(ramp, 0, params), ramp)  # columns-only shift of a row ramp: no change


def test_bias_field_is_multiplicative_smooth_and_content_independent() -> None:
    generator = torch.Generator().manual_seed(3)
    geometry = AcquisitionGeometry(axis=0, spacing_mm=1.0, spatial_shape=(64, 48))
    planned = RandomBiasField().plan(generator, geometry)
    a, b = plane_phantom(64, 48, 1).unsqueeze(0), plane_phantom(64, 48, 2).unsqueeze(0)
    fa, fb = planned.op.apply_tensor(a, 0, planned.params) / a, planned.op.apply_tensor(b, 0, planned.params) / b
    torch.testing.assert_close(fa, fb, rtol=1e-5, atol=0)  # the same field whatever the image
    field = fa[0, 0].double()
    bound = sum(abs(c) for c in planned.params["coefficients"])  # |monomials| <= 1 on the [−1, 1] mesh
    assert field.min() > 0 and field.log().abs().max() <= bound + 1e-4
    assert (field[2:] - 2 * field[1:-1] + field[:-2]).abs().max() < 5e-3  # smooth
    zeros = torch.zeros_like(a)
    assert torch.equal(planned.op.apply_tensor(zeros, 0, planned.params), zeros)  # background stays zero
    constant = BiasField([-0.4] + [0.0] * 9).apply_tensor(a, 0, {"coefficients": [-0.4] + [0.0] * 9, "order": 3})
    torch.testing.assert_close(constant, a * math.exp(-0.4))
    assert len(RandomBiasField().randomize(generator, AcquisitionGeometry(2, 1.0, (8, 8, 8)))["coefficients"]) == 20


def test_noise_adds_only_zero_mean_noise_of_the_requested_level() -> None:
    x = torch.full((1, 1, 256, 256), 0.5, dtype=torch.float64)
    params = {"sigma": 0.05, "kind": "gaussian", "seed": 1, "clip_min": None}
    y = Noise(0.05, seed=1, clip_min=None).apply_tensor(x, 0, params)
    d = y - x
    assert abs(float(d.mean())) < 1e-3 and float(d.std()) == pytest.approx(0.05, rel=0.02)
    assert torch.equal(y, Noise(0.05, seed=1).apply_tensor(x, 0, params))  # realisation fixed by the seed
    zero = torch.zeros_like(x)
    rician = Noise(0.05, "rician", seed=2).apply_tensor(zero, 0, {**params, "kind": "rician", "seed": 2})
    assert float(rician.mean()) == pytest.approx(0.05 * math.sqrt(math.pi / 2), rel=0.02) and rician.min() >= 0
    bright = Noise(0.05, "rician", seed=2).apply_tensor(x * 4, 0, {**params, "kind": "rician", "seed": 2})
    assert float(bright.mean()) == pytest.approx(math.sqrt(4.0 + 0.05**2), rel=1e-3)


def test_intensity_jitter_brightness_and_contrast() -> None:
    x = plane_phantom(32, 32).unsqueeze(0)
    b = IntensityJitter(1.1, 1.0).apply_tensor(x, 0, {"brightness": 1.1, "contrast": 1.0, "clip_min": 0.0})
    torch.testing.assert_close(b, x * 1.1)
    c = IntensityJitter(1.0, 0.8).apply_tensor(x, 0, {"brightness": 1.0, "contrast": 0.8, "clip_min": 0.0})
    torch.testing.assert_close(c.mean(), x.mean())
    torch.testing.assert_close(c.std(), 0.8 * x.std())


def test_rescale_and_rotate_apply_to_hr_and_lr_alike() -> None:
    plane = plane_phantom(64, 64)
    stack = DegradationStack(steps=[RandomRotate(prob=1.0), RandomRescale(prob=1.0)])
    hr, lr = stack.sample_pair(plane, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(hr, lr) and not torch.equal(hr, plane)
    with pytest.raises(ValueError, match="before the downsampling"):
        DegradationStack(steps=[SliceProfile(3.0), Downsample(), RandomRotate()]).sample_pair(plane, 1.0, None)


def test_dimensions_batches_dtypes_and_devices() -> None:
    stack = build("graf_table2_row8")
    generator = torch.Generator().manual_seed(0)
    for x in (torch.rand(2, 1, 40, 24, dtype=torch.float64), torch.rand(2, 1, 10, 12, 40)):
        ax = 0 if x.ndim == 4 else 2
        result = stack.degrade(x, 1.0, generator, axis=ax, train=True, to_hr_grid=True)
        assert result.lr.shape == x.shape and result.lr.dtype == x.dtype and result.hr.shape == x.shape
    down = build("slice_profile").degrade(torch.rand(1, 1, 40, 6), 1.0, None, axis=0)
    assert down.lr.shape == (1, 1, 10, 6) and down.geometry.grid == "lr"
    hr, lr = stack.sample_pairs(torch.rand(3, 1, 32, 32), 1.0, torch.Generator().manual_seed(1))
    assert hr.shape == lr.shape == (3, 1, 32, 32)
    assert not torch.equal(lr[0], lr[1])  # independent parameters per item


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    stack = build("graf_table2_row8")
    plane = plane_phantom(64, 48)
    hr_g, lr_g = stack.sample_pair(plane.cuda(), 1.0, torch.Generator().manual_seed(5))
    assert lr_g.device.type == hr_g.device.type == "cuda"
    # Noise realisations differ between devices (per-device generators); compare the noise-free physics.
    physics = stack_of(stack, lambda s: s.preserves_flat_field)
    _, a = physics.sample_pair(plane, 1.0, torch.Generator().manual_seed(5))
    _, b = physics.sample_pair(plane.cuda(), 1.0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(b.cpu(), a, atol=1e-5, rtol=1e-5)


def test_torchio_subject_pipeline_records_history_and_affine() -> None:
    data = torch.from_numpy(phantom_volume().data).unsqueeze(0)
    affine = phantom_volume().affine
    subject = tio.Subject(image=tio.ScalarImage(tensor=data, affine=affine))
    pipeline = tio.Compose([SliceProfile(4.0, separation_mm=5.0), Downsample()])
    out = pipeline(subject)
    lr = simulate_thick_slices(data[0].double().numpy(), 2, 1.0, 4.0, 5.0, affine=affine)
    np.testing.assert_allclose(out["image"].data[0].numpy(), lr.lr, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out["image"].affine, lr.affine, atol=1e-6)
    assert [t.name for t in out.history] == ["SliceProfile", "Downsample"]
    assert out.history[0].thickness_mm == 4.0  # parameters recorded
    assert isinstance(IntensityJitter(), tio.IntensityTransform) and isinstance(Downsample(), tio.SpatialTransform)

    jitter = RandomIntensityJitter().set_random_state(4)
    a = jitter(tio.Subject(image=tio.ScalarImage(tensor=data, affine=affine)))
    jitter.set_random_state(4)
    b = jitter(tio.Subject(image=tio.ScalarImage(tensor=data, affine=affine)))
    assert torch.equal(a["image"].data, b["image"].data) and a.history[0].name == "IntensityJitter"
    assert isinstance(jitter, tio.transforms.augmentation.RandomTransform)


def test_thick_slice_contract() -> None:
    ts = ThickSlice(thickness_mm=3.0, separation_mm=4.0)
    assert ts.setting == "T3_S4_slr" and ts.output_grid == "lr" and ts.is_random is False and ts.axis == 2
    assert ts.describe(0)["separation_mm"] == 4.0
    plane = plane_phantom(48, 16)
    hr, lr = ts.sample_pair(plane, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(hr, plane.float())
    kernel = slice_kernel(kernel_fwhm_voxels(3.0, 1.0), "slr")
    ref = simulate_thick_slices(plane[0].double().numpy(), 0, 1.0, 3.0, 4.0)
    expected = upsample_to_grid(ref.lr, 0, 4.0, 48)
    np.testing.assert_allclose(lr[0].numpy(), expected, atol=1e-5)
    assert kernel.size == ref.kernel.size
    noisy = ThickSlice(thickness_mm=3.0, noise_std=0.01)
    assert noisy.is_random
    a = noisy.sample_pair(plane, 1.0, torch.Generator().manual_seed(1))[1]
    assert torch.equal(a, noisy.sample_pair(plane, 1.0, torch.Generator().manual_seed(1))[1])


# --------------------------------------------------------------------------------------------------
# fair evaluation inputs
# --------------------------------------------------------------------------------------------------


def test_subject_seed_is_stable() -> None:
    assert subject_seed(0, "errsm_11/t2") == subject_seed(0, "errsm_11/t2")
    assert subject_seed(0, "errsm_11/t2") != subject_seed(1, "errsm_11/t2")
    assert subject_seed(0, "errsm_11/t2") != subject_seed(0, "errsm_18/t2")
    assert 0 <= subject_seed(12345, "x") < 2**31


def test_degrade_for_test_and_cache_give_bit_identical_inputs(tmp_path: Path) -> None:
    degradation = build("clinical_mix")
    volume = phantom_volume(seed=6)
    lr, record = degrade_for_test(degradation, volume, "sub-01", base_seed=3)
    assert record["seed"] == subject_seed(3, "sub-01") and record["setting"] == "clinical_mix"
    assert record["degradation"]["steps"][0]["transform"] == "RandomSliceProfile"
    json.dumps(record)
    again, _ = degrade_for_test(build("clinical_mix"), volume, "sub-01", base_seed=3)
    np.testing.assert_array_equal(again.data, lr.data)

    cache = DegradedInputCache(tmp_path)
    first, rec1 = cache.get(degradation, volume, "sub-01", base_seed=3)
    second, rec2 = cache.get(instantiate(preset_config("clinical_mix")), volume, "sub-01", base_seed=3)
    assert rec1["cached"] is False and rec2["cached"] is True
    np.testing.assert_array_equal(first.data, second.data)
    np.testing.assert_array_equal(first.affine, second.affine)
    np.testing.assert_array_equal(first.data, lr.data)
    image_path, record_path = cache.paths("clinical_mix", "sub-01", record["seed"])
    assert image_path.is_file() and json.loads(record_path.read_text())["lr_sha256"] == rec2["lr_sha256"]


# --------------------------------------------------------------------------------------------------
# real data and command line
# --------------------------------------------------------------------------------------------------


def test_every_preset_runs_on_a_real_spine_volume(shared_data: Path) -> None:
    """All presets compose and run on a real 1 mm spine (a central crop keeps this fast; full volume: slow test)."""
    full = load_volume(shared_data / "spine_hr" / "errsm_11" / "t2.nii.gz")
    crop = Volume(data=np.ascontiguousarray(full.data[150:230, 60:140, :]), affine=full.affine)
    plane = torch.from_numpy(np.ascontiguousarray(full.data[100:260, 100, :].T)).unsqueeze(0) / 600.0
    for name in PRESETS:
        degradation = build(name)
        out = degradation(crop, seed=0)
        assert np.isfinite(out.data).all() and out.shape[:2] == crop.shape[:2]
        if degradation.output_grid == "lr" and name != "none":
            assert out.shape[2] < crop.shape[2]
        _, lr = degradation.sample_pair(plane, 1.0, torch.Generator().manual_seed(0))
        assert lr.shape == plane.shape and torch.isfinite(lr).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_preset_on_full_real_volume(shared_data: Path, name: str) -> None:
    volume = load_volume(shared_data / "spine_hr" / "errsm_11" / "t2.nii.gz")
    degradation = build(name)
    out = degradation(volume, seed=1)
    assert np.isfinite(out.data).all() and out.shape[:2] == volume.shape[:2]
    np.testing.assert_array_equal(out.data, degradation(volume, seed=1).data)
