"""Conditional diffusion building blocks: U-Net config, schedulers, sampling loop, residual path, EMA, uncertainty."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import DDIMScheduler
from hydra.utils import instantiate
from torch import nn

from mrisr.core.errors import MrisrInputError
from mrisr.diffusion import (
    EMA,
    MAX_START_SIGNAL,
    DDIMSampler,
    DPMSolverSampler,
    Sampler,
    UniPCSampler,
    ddpm_scheduler,
    diffusion_draws,
    diffusion_training_target,
    epsilon_and_sample,
    residual_time_grid,
    residual_timesteps,
    residual_training_target,
    sample,
    sample_residual,
    sample_statistics,
    seeded_draws,
    slice_coherent_noise,
)
from mrisr.nets.diffusion_unet import GRAF_PARAMETER_COUNT, TINY_UNET, ConditionalUNet

pytestmark = pytest.mark.usefixtures("one_thread")


SAMPLERS = [DDIMSampler(steps=5), DPMSolverSampler(steps=5), UniPCSampler(steps=5)]


def tiny_unet(seed: int = 0, zero_init: bool = False) -> ConditionalUNet:
    torch.manual_seed(seed)
    return ConditionalUNet(**TINY_UNET, zero_init=zero_init).eval()


def images(batch: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((batch, 1, size, size), generator=generator) * 1.6 - 0.8


class Oracle:
    """Denoiser that knows x0: returns the output the scheduler's prediction type asks for, from x_t and t."""

    def __init__(self, x0: torch.Tensor, train: object) -> None:
        self.x0, self.train = x0, train

    def __call__(self, x_t: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha_bar = self.train.alphas_cumprod.double()[timesteps.long()].view(-1, 1, 1, 1)
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        x_t, x0 = x_t.double(), self.x0.double()
        eps = (x_t - a * x0) / s
        kind = self.train.config.prediction_type
        out = {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[kind]
        return out.float()


class GaussianOracle:
    """Exact posterior-mean denoiser for images x0 ~ N(mean, tau²·I) (what a perfectly trained network returns).

    With x_t = √ᾱ·x0 + √(1 − ᾱ)·ε: E[x0 | x_t] = m + √ᾱ·τ²/(ᾱτ² + 1 − ᾱ)·(x_t − √ᾱ·m) and
    E[ε | x_t] = √(1 − ᾱ)/(ᾱτ² + 1 − ᾱ)·(x_t − √ᾱ·m). Unlike :class:`Oracle` it cannot tell noise from signal better
    than the noise level allows: at t ≈ 0 it returns (almost) its input, so a schedule that starts at t = 0 returns the
    starting noise, while one that starts from the noisiest level returns an image within a few τ of the mean.
    """

    def __init__(self, mean: torch.Tensor, tau: float, train: object) -> None:
        self.mean, self.tau, self.train = mean.double(), tau, train

    def __call__(self, x_t: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha_bar = self.train.alphas_cumprod.double()[timesteps.long()].view(-1, 1, 1, 1)
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        centred = x_t.double() - a * self.mean
        variance = alpha_bar * self.tau**2 + 1 - alpha_bar
        x0 = self.mean + a * self.tau**2 / variance * centred
        eps = s / variance * centred
        kind = self.train.config.prediction_type
        return {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[kind].float()


class UncheckedLeadingDDIM:
    """The DDIM sampler as it was before trailing spacing and the start check: diffusers' step, "leading" spacing."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def build(self, train_config: dict, device: torch.device | str | None = None) -> DDIMScheduler:
        scheduler = DDIMScheduler.from_config(
            dict(train_config), timestep_spacing="leading", set_alpha_to_one=True, steps_offset=0
        )
        scheduler.set_timesteps(self.steps, device=device)
        return scheduler

    def step(
        self, scheduler: DDIMScheduler, output: torch.Tensor, t: torch.Tensor, x: torch.Tensor, generator: None = None
    ) -> torch.Tensor:
        return scheduler.step(output, t, x).prev_sample


# --- U-Net -------------------------------------------------------------------------------------------------------


def test_graf_unet_has_the_reference_parameter_count() -> None:
    net = ConditionalUNet()
    assert sum(p.numel() for p in net.parameters()) == GRAF_PARAMETER_COUNT == 9_834_753
    assert net.size_multiple == 8
    assert net.unet.config.in_channels == 2 and net.unet.config.out_channels == 1
    assert net.unet.config.resnet_time_scale_shift == "scale_shift"
    assert net.unet.time_embedding.linear_1.in_features == 64 and net.unet.time_embedding.linear_2.out_features == 512
    assert net.unet.mid_block.attentions[0].heads == 1


def test_unet_is_hydra_instantiable() -> None:
    net = instantiate({"_target_": "mrisr.nets.diffusion_unet.ConditionalUNet", **TINY_UNET})
    assert isinstance(net, ConditionalUNet) and net.size_multiple == 2


def test_conditioning_concatenates_two_channels() -> None:
    net = tiny_unet()
    seen: list[torch.Size] = []
    net.unet.conv_in.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    out = net(torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16), torch.tensor([0, 10, 999]))
    assert out.shape == (3, 1, 16, 16) and seen == [torch.Size([3, 2, 16, 16])]
    # The condition changes the output (it is not ignored).
    x = torch.randn(1, 1, 16, 16)
    assert not torch.allclose(net(x, torch.zeros_like(x), 5), net(x, torch.ones_like(x), 5))


@pytest.mark.parametrize(
    ("x_shape", "c_shape", "match"),
    [
        ((2, 1, 16, 16), (2, 1, 16, 8), "does not match"),
        ((2, 1, 16, 16), (1, 1, 16, 16), "does not match"),
        ((2, 1, 16, 16), (2, 2, 16, 16), "channels"),
        ((2, 1, 15, 16), (2, 1, 15, 16), "multiple of 2"),
        ((2, 16, 16), (2, 16, 16), r"\(B, C, H, W\)"),
    ],
)
def test_wrong_condition_shape_is_a_clear_error(x_shape: tuple, c_shape: tuple, match: str) -> None:
    with pytest.raises(MrisrInputError, match=match):
        tiny_unet()(torch.zeros(x_shape), torch.zeros(c_shape), 1)


def test_fractional_timesteps_reach_the_embedding() -> None:
    net, x = tiny_unet(), torch.randn(1, 1, 16, 16)
    assert not torch.equal(net(x, x, 10.5), net(x, x, 10))
    torch.testing.assert_close(net(x, x, 10.5), net(x, x, torch.tensor([10.5])))
    with pytest.raises(MrisrInputError, match="timesteps"):
        net(x, x, torch.tensor([1, 2]))


def test_zero_init_starts_from_zero_output() -> None:
    net = tiny_unet(zero_init=True)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in tiny_unet().parameters())
    out = net(torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16), torch.tensor([3, 500]))
    assert torch.count_nonzero(out) == 0
    assert torch.count_nonzero(tiny_unet()(torch.randn(1, 1, 16, 16), torch.randn(1, 1, 16, 16), 3)) > 0


def test_bad_group_count_is_refused() -> None:
    with pytest.raises(MrisrInputError, match="norm_num_groups"):
        ConditionalUNet(block_out_channels=(8, 12), norm_num_groups=8, attention_head_dim=4)


# --- schedulers ----------------------------------------------------------------------------------------------------


def test_ddim20_leading_is_graf_striding_and_matches_diffusers_step() -> None:
    train = ddpm_scheduler()
    config = {"_target_": "mrisr.diffusion.schedulers.DDIMSampler", "steps": 20, "timestep_spacing": "leading"}
    sampler = instantiate(config)
    ddim = sampler.build(train.config)
    assert ddim.timesteps.tolist() == list(range(950, -1, -50))
    assert ddim.config.timestep_spacing == "leading" and ddim.config.steps_offset == 0
    assert ddim.config.set_alpha_to_one and ddim.config.clip_sample
    assert ddim.final_alpha_cumprod.item() == 1.0
    # With leading spacing the update equals diffusers' DDIMScheduler.step (Graf parity), clipping included.
    generator = torch.Generator().manual_seed(0)
    for t in ddim.timesteps:
        x = torch.randn((2, 1, 8, 8), generator=generator)
        out = torch.randn((2, 1, 8, 8), generator=generator) * 3
        torch.testing.assert_close(sampler.step(ddim, out, t, x), ddim.step(out, t, x).prev_sample)


def test_ddim_default_is_trailing_from_the_noisiest_level() -> None:
    train = ddpm_scheduler()
    assert DDIMSampler().timestep_spacing == "trailing"
    assert DDIMSampler(steps=20).build(train.config).timesteps.tolist() == list(range(999, 0, -50))
    assert DDIMSampler(steps=2).build(train.config).timesteps.tolist() == [999, 499]
    assert DDIMSampler(steps=1).build(train.config).timesteps.tolist() == [999]


@pytest.mark.parametrize("factory", [DDIMSampler, DPMSolverSampler, UniPCSampler])
@pytest.mark.parametrize("steps", [1, 2, 4, 10, 20])
def test_default_schedules_start_from_pure_noise(factory: type, steps: int) -> None:
    train = ddpm_scheduler()
    total = train.config.num_train_timesteps
    timesteps = factory(steps=steps).build(train.config).timesteps.tolist()
    assert len(timesteps) == steps
    # The first timestep is T − 1 (≥ T − T/n for every n), and the schedule ends within the last T/n.
    assert timesteps[0] == total - 1 >= total - total / steps
    assert timesteps[-1] < total / steps
    assert float(train.alphas_cumprod[timesteps[0]].sqrt()) <= MAX_START_SIGNAL


@pytest.mark.parametrize(
    ("sampler", "start"),
    [
        (DDIMSampler(steps=1, timestep_spacing="leading"), 0),
        (DDIMSampler(steps=2, timestep_spacing="leading"), 500),
        (DDIMSampler(steps=3, timestep_spacing="leading"), 666),
        (DDIMSampler(steps=1, timestep_spacing="linspace"), 0),
        (DPMSolverSampler(steps=1, timestep_spacing="leading"), 500),
        (UniPCSampler(steps=2, timestep_spacing="leading"), 666),
    ],
    ids=repr,
)
def test_schedules_that_start_near_the_data_are_refused(sampler: Sampler, start: int) -> None:
    with pytest.raises(MrisrInputError, match=f"starts at t = {start} of 1000") as error:
        sampler.build(ddpm_scheduler().config)
    assert "trailing" in error.value.fix


def test_leading_schedules_from_far_enough_are_kept_and_bad_spacings_refused() -> None:
    train = ddpm_scheduler()
    assert DDIMSampler(steps=4, timestep_spacing="leading").build(train.config).timesteps.tolist() == [750, 500, 250, 0]
    assert DPMSolverSampler(steps=3, timestep_spacing="leading").build(train.config).timesteps[0] == 750
    with pytest.raises(MrisrInputError, match="timestep_spacing"):
        DDIMSampler(timestep_spacing="uniform").build(train.config)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spacing", "steps"),
    [(s, n) for s in ("trailing", "linspace") for n in (3, 7, 20)] + [("leading", n) for n in (4, 7, 20)],
)
def test_ddim_steps_land_on_the_next_listed_timestep(spacing: str, steps: int) -> None:
    """With the exact ε of a known x0, every DDIM step keeps the state on x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε* at the next
    *listed* timestep. diffusers' own step assumes t − ⌊T/n⌋, one off for trailing spacing when n ∤ T."""
    train = ddpm_scheduler()
    sampler = DDIMSampler(steps=steps, timestep_spacing=spacing)
    scheduler = sampler.build(train.config)
    x0 = images(1).double()
    x = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    alphas = train.alphas_cumprod.double()
    eps = None
    for t in scheduler.timesteps:
        a = alphas[int(t)]
        implied = (x - a.sqrt() * x0) / (1 - a).sqrt()
        if eps is None:
            eps = implied  # the start defines ε*
        torch.testing.assert_close(implied, eps, atol=1e-9, rtol=0)
        x = sampler.step(scheduler, implied, t, x)
    torch.testing.assert_close(x, x0.clamp(-1, 1))


def test_training_scheduler_matches_graf() -> None:
    train = ddpm_scheduler()
    cfg = train.config
    assert (cfg.num_train_timesteps, cfg.beta_schedule, cfg.variance_type) == (1000, "linear", "fixed_large")
    assert cfg.clip_sample and cfg.prediction_type == "epsilon"
    assert train.betas[0].item() == pytest.approx(1e-4) and train.betas[-1].item() == pytest.approx(0.02)


@pytest.mark.parametrize("factory", [DPMSolverSampler, UniPCSampler, DDIMSampler])
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_sampler_timesteps_count_and_order(factory: type, steps: int) -> None:
    train = ddpm_scheduler()
    sampler = factory(steps=steps)
    assert isinstance(sampler, Sampler)
    scheduler = sampler.build(train.config)
    timesteps = scheduler.timesteps.tolist()
    assert len(timesteps) == steps
    assert all(a > b for a, b in itertools.pairwise(timesteps))
    assert 0 <= min(timesteps) and max(timesteps) <= 999
    # Betas come from the training schedule.
    assert torch.allclose(scheduler.alphas_cumprod, train.alphas_cumprod)


def test_dpm_solver_options() -> None:
    scheduler = DPMSolverSampler(steps=10, order=2).build(ddpm_scheduler().config)
    cfg = scheduler.config
    assert cfg.algorithm_type == "dpmsolver++" and cfg.solver_order == 2 and not cfg.thresholding
    assert cfg.variance_type is None and cfg.final_sigmas_type == "zero"
    assert DPMSolverSampler(thresholding=True).build(ddpm_scheduler().config).config.thresholding


def test_samplers_inherit_a_non_default_training_schedule() -> None:
    train = ddpm_scheduler(beta_end=0.01, prediction_type="v_prediction")
    for sampler in SAMPLERS:
        scheduler = sampler.build(train.config)
        assert scheduler.config.prediction_type == "v_prediction"
        assert torch.allclose(scheduler.alphas_cumprod, train.alphas_cumprod)


def test_sampler_steps_out_of_range_are_refused() -> None:
    with pytest.raises(MrisrInputError, match="steps"):
        DDIMSampler(steps=0).build(ddpm_scheduler().config)
    with pytest.raises(MrisrInputError, match="steps"):
        UniPCSampler(steps=1001).build(ddpm_scheduler().config)


# --- training target ↔ sampler identity ----------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_training_target_is_what_the_oracle_returns(prediction_type: str) -> None:
    train = ddpm_scheduler(prediction_type=prediction_type)
    x0 = images(4)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 250, 600, 999])
    x_t, target = diffusion_training_target(train, x0, noise, t)
    expected_x_t = (
        train.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1) * x0
        + (1 - train.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1) * noise
    )
    torch.testing.assert_close(x_t, expected_x_t)
    torch.testing.assert_close(Oracle(x0, train)(x_t, x0, t), target, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_epsilon_and_sample_invert_the_training_target(prediction_type: str) -> None:
    train = ddpm_scheduler(prediction_type=prediction_type)
    x0 = images(4).double()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.tensor([0, 250, 600, 999])
    x_t, target = diffusion_training_target(train, x0, noise, t)
    eps, x0_hat = epsilon_and_sample(target, x_t, train.alphas_cumprod.double()[t].view(-1, 1, 1, 1), prediction_type)
    torch.testing.assert_close(eps, noise)
    torch.testing.assert_close(x0_hat, x0)
    with pytest.raises(MrisrInputError, match="prediction_type"):
        epsilon_and_sample(target, x_t, train.alphas_cumprod[t].view(-1, 1, 1, 1), "score")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler", [DDIMSampler(steps=20), DPMSolverSampler(steps=10), UniPCSampler(steps=10)])
def test_oracle_denoiser_through_sampler_returns_x0(prediction_type: str, sampler: Sampler) -> None:
    train = ddpm_scheduler(prediction_type=prediction_type)
    x0 = images(2)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    out = sample(Oracle(x0, train), torch.zeros_like(x0), sampler, noise, train.config)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


#: Spread of the Gaussian-oracle images around their mean: small against the data range, so a correct sampler lands
#: within a few τ of the mean (between the posterior mean and the exact ODE solution m + τ·z), while returning the
#: starting noise misses it by O(1).
TAU = 0.02


def gaussian_oracle_error(sampler: Sampler, prediction_type: str = "epsilon", seed: int = 3) -> float:
    """Largest |sample − mean| of a Gaussian-oracle run, in units of τ."""
    train = ddpm_scheduler(prediction_type=prediction_type)
    mean = images(2)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed))
    out = sample(GaussianOracle(mean, TAU, train), torch.zeros_like(mean), sampler, noise, train.config)
    return float((out - mean).abs().max()) / TAU


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [1, 2, 4, 10, 20])
@pytest.mark.parametrize("factory", [DDIMSampler, DPMSolverSampler, UniPCSampler])
def test_posterior_mean_oracle_through_few_steps_returns_an_image(
    factory: type, steps: int, prediction_type: str
) -> None:
    # 512 pixels of m + τ·z stay within 5τ of m; the starting noise itself would be ≈ 3.5/τ = 175τ away.
    assert gaussian_oracle_error(factory(steps=steps), prediction_type) < 5.0


def test_posterior_mean_oracle_catches_a_schedule_that_starts_at_t0() -> None:
    # The previous DDIM (leading spacing, diffusers' step) evaluated only t = 0 for one step and returned the noise,
    # and started at t = 500 for two; the Gaussian oracle exposes the first (the start check refuses both now).
    assert UncheckedLeadingDDIM(1).build(ddpm_scheduler().config).timesteps.tolist() == [0]
    assert gaussian_oracle_error(UncheckedLeadingDDIM(1)) > 50.0
    assert gaussian_oracle_error(UncheckedLeadingDDIM(20)) < 5.0


def test_training_target_rejects_bad_timesteps() -> None:
    train = ddpm_scheduler()
    x0 = images(2)
    with pytest.raises(MrisrInputError, match="timesteps"):
        diffusion_training_target(train, x0, torch.zeros_like(x0), torch.tensor([0, 1000]))


# --- slice-coherent noise and sampling loop ------------------------------------------------------------------------


def test_slice_coherent_noise_is_one_map_per_volume() -> None:
    noise = slice_coherent_noise((16, 24), 5, torch.Generator().manual_seed(7))
    assert noise.shape == (5, 1, 16, 24)
    assert all(torch.equal(noise[0], noise[k]) for k in range(5))
    assert torch.equal(noise[:2], slice_coherent_noise((16, 24), 2, torch.Generator().manual_seed(7)))
    assert not torch.equal(noise[0], slice_coherent_noise((16, 24), 1, torch.Generator().manual_seed(8))[0])
    assert abs(noise[0].mean().item()) < 0.3 and 0.7 < noise[0].std().item() < 1.3


def test_slice_coherent_noise_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    slice_coherent_noise((8, 8), 3, torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(1), before)
    with pytest.raises(MrisrInputError, match="Generator"):
        slice_coherent_noise((8, 8), 3, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: type(s).__name__)
def test_sampling_is_seeded_and_deterministic(sampler: Sampler) -> None:
    net, train, condition = tiny_unet(), ddpm_scheduler(), images(2)

    def run(seed: int) -> torch.Tensor:
        noise = slice_coherent_noise((16, 16), 2, torch.Generator().manual_seed(seed))
        return sample(net, condition, sampler, noise, train.config)

    first = run(0)
    assert torch.equal(first, run(0))
    assert not torch.equal(first, run(1))
    assert first.shape == (2, 1, 16, 16) and first.abs().max() <= 1.0 and first.dtype == torch.float32


def test_batching_slices_does_not_change_the_result() -> None:
    net, train, condition = tiny_unet(), ddpm_scheduler(), images(4)
    noise = slice_coherent_noise((16, 16), 4, torch.Generator().manual_seed(0))
    sampler = DDIMSampler(steps=5)
    together = sample(net, condition, sampler, noise, train.config)
    alone = torch.cat([sample(net, condition[k : k + 1], sampler, noise[:1], train.config) for k in range(4)])
    # Equal up to float32 reassociation inside batched convolutions (a real cross-slice coupling would be O(0.1)).
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)
    # A (1, C, H, W) map broadcasts over the batch exactly as the expanded one does.
    assert torch.equal(together, sample(net, condition, sampler, noise[:1], train.config))


def test_sampling_restores_train_mode_and_runs_under_autocast() -> None:
    net, train, condition = tiny_unet(), ddpm_scheduler(), images(1)
    net.train()
    noise = slice_coherent_noise((16, 16), 1, torch.Generator().manual_seed(0))
    out = sample(net, condition, DDIMSampler(steps=2), noise, train.config, autocast_dtype=torch.bfloat16)
    assert net.training and out.dtype == torch.float32
    ref = sample(net, condition, DDIMSampler(steps=2), noise, train.config)
    # bf16 changed the network's output (autocast is active) but not the result beyond its rounding. The bound is on
    # the mean: at t = 999 x̂₀ = (x − √(1 − ᾱ)·ε̂)/√ᾱ amplifies the bf16 rounding of ε̂ 1/√ᾱ = 156-fold, so single
    # unclipped pixels of this random net may move by a few tenths.
    assert not torch.equal(out, ref) and (out - ref).abs().mean() < 0.05


def test_stochastic_ddim_needs_a_generator() -> None:
    net, train, condition = tiny_unet(), ddpm_scheduler(), images(1)
    noise = slice_coherent_noise((16, 16), 1, torch.Generator().manual_seed(0))
    with pytest.raises(MrisrInputError, match="generator"):
        sample(net, condition, DDIMSampler(steps=2, eta=1.0), noise, train.config)
    a = sample(net, condition, DDIMSampler(steps=2, eta=1.0), noise, train.config, torch.Generator().manual_seed(4))
    b = sample(net, condition, DDIMSampler(steps=2, eta=1.0), noise, train.config, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_noise_of_the_wrong_grid_is_refused() -> None:
    with pytest.raises(MrisrInputError, match="noise"):
        sample(tiny_unet(), images(2), DDIMSampler(steps=2), torch.zeros(2, 1, 8, 8), ddpm_scheduler().config)


# --- residual (InDI) formulation -----------------------------------------------------------------------------------


def test_residual_path_end_points() -> None:
    hr, lr = images(3, seed=0), images(3, seed=1)
    x_1, _ = residual_training_target(hr, lr, torch.ones(3))
    x_0, target = residual_training_target(hr, lr, torch.zeros(3))
    assert torch.equal(x_1, lr) and torch.equal(x_0, hr) and torch.equal(target, hr)
    x_half, v = residual_training_target(hr, lr, torch.full((3,), 0.5), prediction="velocity")
    torch.testing.assert_close(x_half, 0.5 * (hr + lr))
    torch.testing.assert_close(v, lr - hr)


def test_residual_noise_scales_with_t() -> None:
    hr, lr = images(2, seed=0), images(2, seed=1)
    noise = torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.25, 1.0])
    x_t, _ = residual_training_target(hr, lr, t, noise, sigma=0.1)
    clean, _ = residual_training_target(hr, lr, t)
    torch.testing.assert_close(x_t - clean, 0.1 * t.view(-1, 1, 1, 1) * noise)
    with pytest.raises(MrisrInputError, match="noise"):
        residual_training_target(hr, lr, t, sigma=0.1)


@pytest.mark.parametrize("prediction", ["sample", "velocity"])
@pytest.mark.parametrize(("steps", "sigma"), [(1, 0.0), (4, 0.0), (3, 0.05)])
def test_residual_sampling_with_oracle_recovers_hr(prediction: str, steps: int, sigma: float) -> None:
    hr, lr = images(2, seed=0), images(2, seed=1)
    noise = torch.randn((1, 1, 16, 16), generator=torch.Generator().manual_seed(2))
    start = lr + sigma * noise
    seen: list[torch.Tensor] = []

    def oracle(x_t: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        t = timesteps[0] / 999.0
        # The sampler's state stays on the training path x_t = (1 − t)·hr + t·(lr + σ·n).
        torch.testing.assert_close(x_t, (1 - t) * hr + t * start, atol=1e-5, rtol=0)
        seen.append(timesteps)
        return hr if prediction == "sample" else start - hr

    out = sample_residual(oracle, lr, steps, noise=noise if sigma else None, sigma=sigma, prediction=prediction)
    torch.testing.assert_close(out, hr, atol=1e-5, rtol=0)
    assert len(seen) == steps and seen[0].tolist() == [999.0, 999.0]
    if steps == 1 and prediction == "sample":
        assert torch.equal(out, hr)


def test_residual_time_parameterisation() -> None:
    assert residual_time_grid(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert residual_timesteps(torch.tensor([0.0, 0.5, 1.0])).tolist() == [0.0, 499.5, 999.0]
    torch.manual_seed(0)
    net = ConditionalUNet(**{**TINY_UNET, "in_channels": 1}).eval()
    out = sample_residual(net, images(2), steps=2, generator=torch.Generator().manual_seed(0), sigma=0.02)
    again = sample_residual(net, images(2), steps=2, generator=torch.Generator().manual_seed(0), sigma=0.02)
    assert out.shape == (2, 1, 16, 16) and torch.equal(out, again)
    with pytest.raises(MrisrInputError, match="sigma"):
        sample_residual(net, images(2), steps=2, sigma=0.02)


def test_residual_network_sees_x_t_and_t_only_unless_conditioned() -> None:
    seen: list[int] = []

    def spy(x_t: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        seen.append(condition.shape[1])
        return x_t

    sample_residual(spy, images(2), steps=2)
    assert seen == [0, 0]
    sample_residual(spy, images(2), steps=2, conditioned=True)
    assert seen[2:] == [1, 1]
    # A two-channel (conditioned) net is only usable with conditioned=True.
    with pytest.raises(MrisrInputError, match="channels"):
        sample_residual(tiny_unet(), images(2), steps=1)
    assert sample_residual(tiny_unet(), images(2), steps=1, conditioned=True).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("sigma", [0.0, 0.01])
def test_conditioning_on_y_admits_a_shortcut_that_restores_nothing(sigma: float) -> None:
    """Why the residual network does not get y: (x_t − t·y)/(1 − t) meets the objective without restoring anything.

    Its training loss is 0 for σ = 0 (and σ²·t²/(1 − t)² per pixel otherwise) at every t < 1, yet sampled from y it
    returns its own t = 1 output for any number of steps; with that output being y itself, the sample is the input.
    """
    hr, lr = images(4, seed=0), images(4, seed=1)
    noise = torch.randn(hr.shape, generator=torch.Generator().manual_seed(2))

    def shortcut(x_t: torch.Tensor, condition: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        t = (timesteps / 999.0).view(-1, 1, 1, 1)
        return torch.where(t < 1, (x_t - t * condition) / (1 - t).clamp_min(1e-12), condition)

    t = torch.tensor([0.1, 0.4, 0.7, 0.9])
    x_t, target = residual_training_target(hr, lr, t, noise if sigma else None, sigma)
    loss = torch.mean((shortcut(x_t, lr, residual_timesteps(t)) - target) ** 2, dim=(1, 2, 3))
    expected = sigma**2 * (t / (1 - t)) ** 2 * torch.mean(noise**2, dim=(1, 2, 3))
    torch.testing.assert_close(loss, expected, atol=1e-10, rtol=1e-4)
    assert float(torch.mean((lr - hr) ** 2)) > 0.1  # the input is far from HR
    for steps in (1, 2, 4):
        torch.testing.assert_close(sample_residual(shortcut, lr, steps, conditioned=True), lr.clamp(-1, 1))


# --- EMA -----------------------------------------------------------------------------------------------------------


def test_ema_update_rule_is_exact() -> None:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.bias.fill_(-4.0)
    ema = EMA(model, decay=0.5, warmup=False)
    with torch.no_grad():
        model.weight.fill_(4.0)
        model.bias.fill_(0.0)
    assert ema.update(model)
    # 0.5·2 + 0.5·4 = 3 and 0.5·(−4) + 0.5·0 = −2, exactly representable.
    assert torch.equal(ema.module.weight, torch.full((2, 3), 3.0))
    assert torch.equal(ema.module.bias, torch.full((2,), -2.0))


def test_ema_decay_0999_matches_the_formula() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    ema = EMA(model, decay=0.999, warmup=False)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    ema.update(model)
    for name, param in model.named_parameters():
        expected = 0.999 * before[name] + (1 - 0.999) * param.detach()
        torch.testing.assert_close(ema.module.get_parameter(name), expected, atol=1e-7, rtol=0)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_every_n_steps() -> None:
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.5, every=3, warmup=False)
    initial = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    assert [ema.update(model) for _ in range(3)] == [False, False, True]
    assert int(ema.num_updates) == 3
    torch.testing.assert_close(ema.module.weight, initial + 1.0)


def test_ema_warmup_follows_the_net_early_and_uses_the_decay_late() -> None:
    ema = EMA(nn.Linear(1, 1), decay=0.999)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(8) == pytest.approx(0.5)
    assert ema.decay_at(80) == pytest.approx(0.9) and ema.decay_at(8989) < 0.999
    assert ema.decay_at(8990) == ema.decay_at(100_000) == 0.999
    assert EMA(nn.Linear(1, 1), decay=0.9).decay_at(80) == 0.9 == EMA(nn.Linear(1, 1), 0.9).decay_at(5000)
    assert EMA(nn.Linear(1, 1), decay=0.999, warmup=False).decay_at(0) == 0.999


def test_ema_warmup_tracks_a_moving_net_where_the_plain_average_lags() -> None:
    """A weight that moves from 0 to 1 over 200 steps: the warmed-up average is close behind, the plain one stuck."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    warm, plain = EMA(model, decay=0.999), EMA(model, decay=0.999, warmup=False)
    for step in range(1, 201):
        with torch.no_grad():
            model.weight.fill_(step / 200)
        warm.update(model)
        plain.update(model)
    # Plain: 1 − Σ-weights of the init ≈ 0.1 of the way. Warm-up (k ≤ 199, d_k ≤ 0.95): within ~0.1 of the net.
    assert float(plain.module.weight) < 0.12
    assert float(warm.module.weight) > 0.85
    # The first update of a warmed-up average is 0.1·init + 0.9·net, exactly.
    fresh = EMA(nn.Linear(1, 1, bias=False), decay=0.999)
    with torch.no_grad():
        fresh.module.weight.fill_(0.0)
        model.weight.fill_(1.0)
    fresh.update(model)
    assert float(fresh.module.weight) == pytest.approx(0.9)


def test_ema_warmup_counts_averaging_updates_and_resumes_from_the_checkpoint() -> None:
    model = nn.Linear(1, 1, bias=False)
    ema = EMA(model, decay=0.999, every=4)
    with torch.no_grad():
        ema.module.weight.fill_(0.0)
        model.weight.fill_(1.0)
    assert [ema.update(model) for _ in range(4)] == [False, False, False, True]
    # The first *averaging* update (the 4th call) uses d_0 = 0.1, not d_3.
    assert float(ema.module.weight) == pytest.approx(0.9)
    resumed = EMA(nn.Linear(1, 1, bias=False), decay=0.999, every=4)
    resumed.load_state_dict(ema.state_dict())
    for copy in (ema, resumed):
        with torch.no_grad():
            model.weight.fill_(2.0)
        for _ in range(4):
            copy.update(model)
    # Both continue with d_1 = 2/11: 0.9·2/11 + 2·9/11.
    assert float(resumed.module.weight) == pytest.approx(0.9 * 2 / 11 + 2 * 9 / 11)
    assert torch.equal(resumed.module.weight, ema.module.weight)


def test_ema_swap_restore_and_checkpoint() -> None:
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    own = model.weight.clone()
    with ema.swapped(model):
        assert torch.equal(model.weight, ema.module.weight)
    assert torch.equal(model.weight, own)
    with pytest.raises(MrisrInputError, match="store"):
        ema.restore(model)
    copy = EMA(nn.Linear(2, 2), decay=0.5)
    copy.load_state_dict(ema.state_dict())
    assert torch.equal(copy.module.weight, ema.module.weight) and int(copy.num_updates) == 1
    target = nn.Linear(2, 2)
    ema.copy_to(target)
    assert torch.equal(target.weight, ema.module.weight)


def test_ema_rejects_bad_settings() -> None:
    with pytest.raises(MrisrInputError, match="decay"):
        EMA(nn.Linear(1, 1), decay=1.0)
    with pytest.raises(MrisrInputError, match="every"):
        EMA(nn.Linear(1, 1), every=0)


# --- uncertainty ---------------------------------------------------------------------------------------------------


def test_sample_statistics_known_values() -> None:
    samples = torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 0.0]])
    mean, std = sample_statistics(samples)
    assert mean.tolist() == [3.0, 0.0] and std.tolist() == [2.0, 0.0]
    _, biased = sample_statistics(samples, unbiased=False)
    torch.testing.assert_close(biased, torch.tensor([(8 / 3) ** 0.5, 0.0]))
    with pytest.raises(MrisrInputError, match="draws"):
        sample_statistics(samples[:1])


def test_seeded_draws_are_reproducible_and_distinct() -> None:
    draws = seeded_draws(lambda g: torch.randn(3, generator=g), n=4, seed=10)
    assert draws.shape == (4, 3)
    assert torch.equal(draws[1], torch.randn(3, generator=torch.Generator().manual_seed(11)))
    assert not torch.equal(draws[0], draws[1])


def test_diffusion_draws_give_a_spread() -> None:
    net, train, condition = tiny_unet(), ddpm_scheduler(), images(2)
    draws = diffusion_draws(net, condition, DDIMSampler(steps=2), train.config, n=3, seed=0)
    assert draws.shape == (3, 2, 1, 16, 16)
    mean, std = sample_statistics(draws)
    assert mean.shape == (2, 1, 16, 16) and float(std.mean()) > 0
    noise = slice_coherent_noise((16, 16), 2, torch.Generator().manual_seed(1))
    torch.testing.assert_close(draws[1], sample(net, condition, DDIMSampler(steps=2), noise, train.config))
