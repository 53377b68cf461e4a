"""Conditional diffusion SR system (docs/models.md §3): training objective, EMA, seeded volume inference, geometry,
uncertainty, inference options, and the train.py → infer.py round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrisr.core.errors import MrisrInputError
from mrisr.diffusion import DDIMSampler, DPMSolverSampler, sample
from mrisr.diffusion.sampling import from_signed, to_signed
from mrisr.inference import (
    InferenceOutput,
    InferenceSettings,
    interpolate_volume,
    output_grid,
    run_on_volume,
    set_inference_options,
)
from mrisr.inference.diffusion import stack_axes
from mrisr.io.geometry import detect_slice_axis
from mrisr.io.nifti import Volume
from mrisr.nets.diffusion_unet import TINY_UNET, ConditionalUNet
from mrisr.systems.diffusion import DiffusionSR, ResidualSampler
from support.volumes import axial_volume

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_system(formulation: str = "ddpm", seed: int = 0, **kwargs: object) -> DiffusionSR:
    torch.manual_seed(seed)
    sampler = DDIMSampler(steps=2) if formulation == "ddpm" else ResidualSampler(steps=2)
    options = {"sampler": sampler, "progress": False, "inference_batch_size": 8, **kwargs}
    # The residual network sees x_t and t only (one input channel) unless it is given the condition.
    in_channels = 1 if formulation == "residual" and not kwargs.get("residual_condition") else 2
    return DiffusionSR(ConditionalUNet(**{**TINY_UNET, "in_channels": in_channels}), formulation=formulation, **options)


def planes(batch: int = 4, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    hr = torch.rand((batch, 1, size, size), generator=generator)
    lr = (hr + 0.1 * torch.randn(hr.shape, generator=generator)).clamp(0, 1)
    return {"hr": hr, "lr": lr}


def infer(model: DiffusionSR, volume: Volume, seed: int) -> InferenceOutput:
    geometry = detect_slice_axis(volume)
    grid = output_grid(geometry, volume.shape[geometry.axis])
    return model.inferer()(volume, geometry, grid, torch.Generator().manual_seed(seed))


def run(model: DiffusionSR, volume: Volume, seed: int) -> Volume:
    return infer(model, volume, seed).sr


def test_signed_mapping_round_trips_unit_interval() -> None:
    x = torch.linspace(0, 1, 11)
    assert to_signed(x)[0] == -1 and to_signed(x)[-1] == 1
    torch.testing.assert_close(from_signed(to_signed(x)), x)
    assert float(to_signed(torch.tensor(1.7))) == 1.0 and float(to_signed(torch.tensor(-0.2))) == -1.0


@pytest.mark.parametrize("formulation", ["ddpm", "residual"])
def test_training_steps_give_finite_loss_that_decreases(formulation: str) -> None:
    model = tiny_system(formulation)
    optimiser = torch.optim.Adam(model.net.parameters(), lr=3e-3)
    batch = planes()
    generator_seed = 0
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = model.objective(model.net, batch, torch.Generator().manual_seed(generator_seed))
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    # Same noise and times every step: the net fits them, so the loss must fall.
    assert losses[-1] < 0.7 * losses[0]


def test_ddpm_objective_is_epsilon_mse_of_the_graf_schedule() -> None:
    model = tiny_system()
    config = model.train_scheduler.config
    assert (config.num_train_timesteps, config.beta_start, config.beta_end) == (1000, 1e-4, 0.02)
    assert config.beta_schedule == "linear" and config.prediction_type == "epsilon"

    class Zero(torch.nn.Module):
        def forward(self, x_t: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x_t)

    # A zero prediction has loss E[ε²] = 1 against ε targets.
    batch = planes(batch=64, size=16)
    loss = model.objective(Zero(), batch, torch.Generator().manual_seed(3))
    assert float(loss) == pytest.approx(1.0, abs=0.02)


def test_ema_is_updated_after_each_batch_and_used_for_sampling() -> None:
    assert tiny_system().ema.warmup and tiny_system().ema.decay_at(0) == pytest.approx(0.1)
    model = tiny_system(ema_decay=0.5, ema_warmup=False)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.05)
    before = [p.clone() for p in model.ema.module.parameters()]
    model.on_train_batch_end(None, None, 0)
    assert int(model.ema.num_updates) == 1
    for old, new, live in zip(before, model.ema.module.parameters(), model.net.parameters(), strict=True):
        torch.testing.assert_close(new, 0.5 * old + 0.5 * live)
    condition = to_signed(planes(2)["lr"])
    noise = torch.randn((1, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    got = model.sample_planes(condition, noise)
    with_ema = sample(model.ema.module, condition, model.sampler, noise, model.train_scheduler.config)
    with_live = sample(model.net, condition, model.sampler, noise, model.train_scheduler.config)
    torch.testing.assert_close(got, with_ema)
    assert not torch.allclose(got, with_live)
    assert any(k.startswith("ema.module.") for k in model.state_dict())


class Fixed(torch.nn.Module):
    """Network with a fixed rule ``fn(x_t, condition, timesteps)`` that records the timesteps it is called with."""

    def __init__(self, fn: object) -> None:
        super().__init__()
        self.fn, self.seen = fn, []

    def forward(self, x_t: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.seen.append(timesteps.clone())
        return self.fn(x_t, condition, timesteps)


def test_time_bin_errors_of_the_trivial_and_the_exact_ddpm_predictor() -> None:
    model = tiny_system()
    assert model.time_bin_names() == ["t0-250", "t250-500", "t500-750", "t750-1000"]
    assert model.time_bin_quantities() == ("eps", "x0")
    batch = planes(batch=16)
    hr, lr = to_signed(batch["hr"]), to_signed(batch["lr"])
    lr_mse = float(torch.mean((lr - hr) ** 2))
    zero = Fixed(lambda x, c, t: torch.zeros_like(x))
    errors = model.time_bin_errors(zero, batch, torch.Generator().manual_seed(0))
    # ε̂ = 0 is the trivial ε-predictor itself (ratio 1), and E[ε²] ≈ 1 over 16·256 draws ...
    assert all(m == t and 0.9 < t < 1.1 for m, t in errors["eps"])
    # ... but its x̂₀ = x_t/√ᾱ is noise at high t: a one-step sample from there would be far worse than the input.
    assert all(t == pytest.approx(lr_mse) for _, t in errors["x0"])
    assert errors["x0"][-1][0] > 10 * lr_mse
    for k, seen in enumerate(zero.seen):  # one call per bin, t inside the bin
        assert 250 * k <= int(seen.min()) and int(seen.max()) < 250 * (k + 1)
    alphas = model.train_scheduler.alphas_cumprod

    def knows(image: torch.Tensor) -> Fixed:
        """The ε-predictor whose clean image is ``image``: ε̂ = (x_t − √ᾱ·image)/√(1 − ᾱ)."""

        def fn(x: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            a = alphas[t].view(-1, 1, 1, 1)
            return (x - a.sqrt() * image) / (1 - a).sqrt()

        return Fixed(fn)

    errors = model.time_bin_errors(knows(hr), batch, torch.Generator().manual_seed(0))
    assert all(m < 1e-6 * t for m, t in errors["eps"]) and all(m < 1e-6 * t for m, t in errors["x0"])
    # A predictor that returns the condition as its clean image is the trivial x̂₀-predictor (ratio 1).
    errors = model.time_bin_errors(knows(lr), batch, torch.Generator().manual_seed(0))
    assert all(m == pytest.approx(t, rel=1e-3) for m, t in errors["x0"])


@pytest.mark.parametrize("prediction", ["sample", "velocity"])
def test_time_bin_errors_of_the_residual_formulation(prediction: str) -> None:
    model = tiny_system("residual", residual_prediction=prediction)
    assert model.time_bin_names() == ["t0.00-0.25", "t0.25-0.50", "t0.50-0.75", "t0.75-1.00"]
    batch = planes(batch=8)
    hr, lr = to_signed(batch["hr"]), to_signed(batch["lr"])
    per_crop = torch.mean((lr - hr) ** 2, dim=(1, 2, 3))
    assert float(per_crop.min()) > 0
    # The net's input x_t = (1 − t)·HR + t·LR already holds part of HR; returning it unchanged (x̂ = x_t, i.e.
    # v̂ = 0) is the trivial predictor (ratio 1), with MSE t²·MSE(LR, HR) inside each bin.
    identity = Fixed(lambda x, c, t: x if prediction == "sample" else torch.zeros_like(x))
    assert model.time_bin_quantities() == ("x0",)
    errors = model.time_bin_errors(identity, batch, torch.Generator().manual_seed(1))["x0"]
    assert len(errors) == len(identity.seen) == 4
    for k, (m, t) in enumerate(errors):
        assert m == pytest.approx(t, rel=1e-5)
        assert (k / 4) ** 2 * float(per_crop.min()) <= t <= ((k + 1) / 4) ** 2 * float(per_crop.max())
    for k, seen in enumerate(identity.seen):
        assert k / 4 <= float(seen.min()) / 999.0 and float(seen.max()) / 999.0 <= (k + 1) / 4
    # Returning the LR plane (x̂ = LR, v̂ = (x_t − LR)/t) throws away the HR share of x_t: worse than trivial in
    # every bin, by a factor ≥ 1/t² ≥ 16 in the first.
    if prediction == "sample":
        copy = Fixed(lambda x, c, t: lr)
    else:
        copy = Fixed(lambda x, c, t: (x - lr) / (t / 999.0).view(-1, 1, 1, 1))
    errors = model.time_bin_errors(copy, batch, torch.Generator().manual_seed(1))["x0"]
    assert all(m == pytest.approx(float(per_crop.mean()), rel=1e-4) and m > t for m, t in errors)
    assert errors[0][0] > 16 * errors[0][1] * float(per_crop.min() / per_crop.max())
    exact = Fixed(lambda x, c, t: hr if prediction == "sample" else lr - hr)
    assert all(m < 1e-10 for m, _ in model.time_bin_errors(exact, batch, torch.Generator().manual_seed(1))["x0"])


def test_residual_network_never_sees_the_lr_plane_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training, validation and sampling give the residual net (x_t, t) only: with y as a condition the objective
    is met by inverting x_t = (1 − t)·x + t·y, which sampling cannot use (mrisr.diffusion.residual)."""
    model = tiny_system("residual")
    assert model.net.in_channels == 1 and not model.residual_condition
    channels: list[int] = []
    for net in (model.net, model.ema.module):
        net.register_forward_pre_hook(lambda module, args: channels.append(args[1].shape[1]))
    model.objective(model.net, planes(), torch.Generator().manual_seed(0))
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    model.validation_step(planes(), 0)
    run(model, axial_volume(), 0)
    assert len(channels) > 5 and set(channels) == {0}
    # A two-channel net needs residual_condition=True, which then hands it y.
    with pytest.raises(MrisrInputError, match="in_channels = 1"):
        DiffusionSR(ConditionalUNet(**TINY_UNET), formulation="residual")
    conditioned = tiny_system("residual", residual_condition=True)
    channels.clear()
    conditioned.net.register_forward_pre_hook(lambda module, args: channels.append(args[1].shape[1]))
    conditioned.objective(conditioned.net, planes(), torch.Generator().manual_seed(0))
    assert channels == [1]


def test_validation_logs_the_time_bin_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_system()
    logged: dict[str, float] = {}
    monkeypatch.setattr(model, "log", lambda name, value, **kwargs: logged.__setitem__(name, float(value)))
    model.validation_step(planes(batch=4), 0)
    model.validation_step(planes(batch=4, seed=1), 1)
    model.on_validation_epoch_end()
    for label in model.time_bin_names():
        mse, trivial = logged[f"val/eps_mse_{label}"], logged[f"val/eps_mse_trivial_{label}"]
        assert logged[f"val/eps_mse_ratio_{label}"] == pytest.approx(mse / trivial) and 0.8 < trivial < 1.2
        mse, trivial = logged[f"val/x0_mse_{label}"], logged[f"val/x0_mse_trivial_{label}"]
        assert logged[f"val/x0_mse_ratio_{label}"] == pytest.approx(mse / trivial)
    assert {"val/loss", "val/psnr", "val/psnr_input"} <= set(logged)
    assert len(logged) == 3 + 2 * 3 * 4
    none = tiny_system(val_time_bins=0)
    logged.clear()
    monkeypatch.setattr(none, "log", lambda name, value, **kwargs: logged.__setitem__(name, float(value)))
    none.validation_step(planes(batch=2), 0)
    none.on_validation_epoch_end()
    assert set(logged) == {"val/loss", "val/psnr", "val/psnr_input"}


def test_super_resolve_is_deterministic_under_a_seed() -> None:
    model = tiny_system()
    volume = axial_volume()
    a, b, c = run(model, volume, 1), run(model, volume, 1), run(model, volume, 2)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.allclose(a.data, c.data)


def test_one_noise_map_per_volume_makes_batching_irrelevant(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_system()
    volume = axial_volume()
    seen: list[torch.Tensor] = []
    original = model.sample_planes

    def spy(condition: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        seen.append(noise.clone())
        return original(condition, noise, generator)

    monkeypatch.setattr(model, "sample_planes", spy)
    model.inference_batch_size = 3
    small_batches = run(model, volume, 5)
    assert len(seen) == 5  # 14 planes stacked along the L–R axis 0, 3 per batch
    for noise in seen:
        assert noise.shape[0] == 1
        torch.testing.assert_close(noise, seen[0])
    model.inference_batch_size = 64
    one_batch = run(model, volume, 5)
    # Equal up to float32 reassociation in batched convolutions, which the first step from t = 999 amplifies
    # 1/√ᾱ = 156-fold in x̂₀ (a random net's ε̂ is not consistent with x_t); a real coupling between planes would
    # show as O(0.1) of the intensity scale.
    scale = model.intensity.scaling(volume.data).scale
    np.testing.assert_allclose(small_batches.data, one_batch.data, rtol=0, atol=2e-4 * scale)


def test_output_lies_on_the_grid_with_the_cubic_affine() -> None:
    model = tiny_system()
    volume = axial_volume()
    geometry = detect_slice_axis(volume)
    grid = output_grid(geometry, volume.shape[geometry.axis])
    sr = model.inferer()(volume, geometry, grid, torch.Generator().manual_seed(0)).sr
    cubic = interpolate_volume(volume, grid, order=3)
    assert geometry.axis == 2 and sr.shape == (14, 12, 15) == cubic.shape
    np.testing.assert_array_equal(sr.affine, cubic.affine)
    assert np.isfinite(sr.data).all() and sr.data.dtype == np.float32
    # Sagittal planes (stacked along the L–R axis) first; the second pass adds the coronal ones.
    assert stack_axes(volume, 2, 1) == [0] and stack_axes(volume, 2, 2) == [0, 1]


def test_two_passes_and_residual_formulation_keep_geometry() -> None:
    volume = axial_volume()
    for model in (tiny_system(passes=2), tiny_system("residual")):
        sr = run(model, volume, 0)
        assert sr.shape == (14, 12, 15) and np.isfinite(sr.data).all()


def test_samples_give_a_standard_deviation_map() -> None:
    model = tiny_system(samples=3)
    volume = axial_volume()
    output = infer(model, volume, 0)
    sr, sd = output.sr, output.uncertainty
    assert sd is not None and sd.shape == sr.shape
    np.testing.assert_array_equal(sd.affine, sr.affine)
    assert (sd.data >= 0).all() and sd.data.max() > 0
    model.samples = 1
    assert infer(model, volume, 0).uncertainty is None


def test_nested_sampler_options_are_applied() -> None:
    model = tiny_system()
    model.sampler = DDIMSampler(steps=20, eta=0.0, clip_sample=False)
    set_inference_options(model, {"sampler.steps": 3})
    assert model.sampler == DDIMSampler(steps=3, eta=0.0, clip_sample=False)
    set_inference_options(model, {"sampler._target_": "mrisr.diffusion.schedulers.DPMSolverSampler"})
    assert model.sampler == DPMSolverSampler(steps=3)
    set_inference_options(model, {"sampler": {"_target_": "mrisr.diffusion.schedulers.DDIMSampler", "steps": 4}})
    assert model.sampler == DDIMSampler(steps=4)
    with pytest.raises(ValueError, match="ResidualSampler"):
        set_inference_options(tiny_system("residual"), {"sampler": DDIMSampler(steps=2)})
    with pytest.raises(ValueError, match="passes"):
        set_inference_options(model, {"passes": 3})


def test_palette_configs_choose_the_sampler_spacing_and_residual_inputs() -> None:
    from hydra.utils import instantiate

    from mrisr.utils.config import compose

    def model_config(*overrides: str) -> object:
        return compose("train", list(overrides)).model

    # The paper configuration keeps Graf's leading DDIM-20; everything else samples from t = 999.
    assert model_config("experiment=palette").sampler.timestep_spacing == "leading"
    for overrides in (["model=palette"], ["experiment=palette_smoke"], ["model=palette_tiny"]):
        sampler = instantiate(model_config(*overrides).sampler)
        assert isinstance(sampler, DDIMSampler) and sampler.timestep_spacing == "trailing"
    residual = model_config("model=palette_residual")
    assert residual.net.in_channels == 1 and residual.formulation == "residual"
    model = instantiate(
        model_config(
            "model=palette_tiny",
            "+model.formulation=residual",
            "++model.net.in_channels=1",
            "model.sampler._target_=mrisr.systems.diffusion.ResidualSampler",
        )
    )
    assert model.net.in_channels == 1 and not model.residual_condition and model.ema.warmup


def test_run_on_volume_records_the_method() -> None:
    result = run_on_volume(tiny_system(method="palette_tiny"), axial_volume(), InferenceSettings(seed=3))
    assert result.record["method"] == "palette_tiny" and result.sr.shape == (14, 12, 15)


# ---------------------------------------------------------------------------------------------- train → infer


class ConditionOracle(torch.nn.Module):
    """ε-denoiser whose clean image is the condition itself: ε̂ = (x_t − √ᾱ_t·c) / √(1 − ᾱ_t)."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.alphas_cumprod = alphas_cumprod

    def forward(self, x_t: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod[timesteps.long().cpu()].to(x_t).view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * condition) / (1 - a).sqrt()


@pytest.mark.parametrize("passes", [1, 2])
def test_an_oracle_denoiser_reproduces_the_cubic_condition(passes: int) -> None:
    """Normalisation, padding, plane orientation and the inverse mapping are consistent end to end."""
    model = tiny_system(passes=passes, sampler=DDIMSampler(steps=3))
    model.ema.module = ConditionOracle(model.train_scheduler.alphas_cumprod)
    volume = axial_volume((15, 13, 5))  # odd sizes: reflection padding to multiples of 2 and cropping back
    geometry = detect_slice_axis(volume)
    grid = output_grid(geometry, volume.shape[geometry.axis])
    sr = model.inferer()(volume, geometry, grid, torch.Generator().manual_seed(0)).sr
    cubic = interpolate_volume(volume, grid, order=3).data
    scale = model.intensity.scaling(volume.data).scale
    expected = np.clip(cubic, 0, scale)  # the model's range is [0, robust max]
    np.testing.assert_allclose(sr.data, expected, rtol=0, atol=1e-3 * scale)


@pytest.mark.parametrize(("scale", "sampler"), [(1.0, DDIMSampler(steps=4)), (3.0, DPMSolverSampler(steps=4))])
def test_residual_ddpm_diffuses_hr_minus_condition_and_adds_the_condition_back(scale: float, sampler: object) -> None:
    """SRDiff target: x₀ = s·(HR − c) in training; a net that predicts a zero residual samples the condition itself,
    one that predicts the true residual samples HR (not clipped by the scale), and the x̂ of the validation bins is the
    condition plus the residual."""
    model = tiny_system(prediction_type="sample", ddpm_target="residual", ddpm_residual_scale=scale, sampler=sampler)
    batch = planes(batch=8)
    hr, lr = to_signed(batch["hr"]), to_signed(batch["lr"])
    pair = model.training_pair(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(pair["target"], scale * (hr - lr))
    assert float(pair["target"].abs().max()) > 1.0 or scale == 1.0  # the scaled residual leaves [−1, 1]
    torch.testing.assert_close(pair["condition"], lr)

    noise = torch.randn((1, 1, 16, 16), generator=torch.Generator().manual_seed(1))
    model.ema.module = Fixed(lambda x, c, t: torch.zeros_like(x))
    torch.testing.assert_close(model.sample_planes(lr, noise), lr, rtol=0, atol=1e-6)
    errors = model.time_bin_errors(model.ema.module, batch, torch.Generator().manual_seed(0))
    assert all(m == pytest.approx(t, rel=1e-6) for m, t in errors["x0"])  # zero residual = trivial predictor

    model.ema.module = Fixed(lambda x, c, t: scale * (hr - c))
    torch.testing.assert_close(model.sample_planes(lr, noise), hr, rtol=0, atol=1e-5)
    errors = model.time_bin_errors(model.ema.module, batch, torch.Generator().manual_seed(0))
    assert all(m < 1e-10 for m, _ in errors["x0"])
    # An image-target model with the same zero net samples an empty plane, far from the condition.
    image = tiny_system(prediction_type="sample", sampler=DDIMSampler(steps=4))
    image.ema.module = Fixed(lambda x, c, t: torch.zeros_like(x))
    assert float(torch.mean((image.sample_planes(lr, noise) - lr) ** 2)) > 0.1


def test_residual_ddpm_target_is_refused_outside_the_ddpm_formulation() -> None:
    with pytest.raises(MrisrInputError, match="ddpm_target"):
        tiny_system("residual", ddpm_target="residual")
    with pytest.raises(MrisrInputError, match="ddpm_target"):
        tiny_system(ddpm_target="noise")
    with pytest.raises(MrisrInputError, match="ddpm_residual_scale"):
        tiny_system(ddpm_residual_scale=2.0)  # an image target cannot be scaled
