"""The one intensity rule (mrisr.io.intensity.IntensityRule): what it computes, and that training pairs made with a
random degradation stack put the network input on the scale inference gives it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from mrisr.data.pairs import SimulatedPairsDataModule
from mrisr.degradations import DegradationStack, Downsample, SliceProfile, Upsample
from mrisr.degradations.intensity import RandomIntensityJitter
from mrisr.io.intensity import PRETTIER_RULE, IntensityRule, foreground_percentile
from mrisr.io.nifti import Volume
from mrisr.utils.config import compose


def test_percentile_rule_with_headroom_and_minmax() -> None:
    data = np.linspace(0.0, 200.0, 1001).astype(np.float32)
    p = foreground_percentile(data)
    assert IntensityRule().scaling(data).scale == pytest.approx(p)
    assert PRETTIER_RULE.scaling(data).scale == pytest.approx(1.25 * p)
    minmax = IntensityRule(kind="minmax").scaling(data - 50)
    assert (minmax.offset, minmax.scale) == (-50.0, 200.0)
    with pytest.raises(ValueError, match="kind"):
        IntensityRule(kind="zscore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="headroom"):
        IntensityRule(headroom=0.0)


def test_plane_correction_is_the_lr_to_hr_ratio_of_the_statistic() -> None:
    rng = np.random.default_rng(0)
    hr = rng.random((40, 30)).astype(np.float32) + 0.1
    assert IntensityRule().plane_correction(hr, 0.6 * hr) == pytest.approx(0.6)
    assert IntensityRule(kind="minmax").plane_correction(hr, 0.6 * hr) == 1.0
    assert IntensityRule().plane_correction(hr, np.zeros_like(hr)) == 1.0  # no LR foreground: nothing to carry


def test_one_rule_reaches_data_model_and_callbacks_through_the_config() -> None:
    cfg = compose("train", ["experiment=prettier_edsr_smoke"])
    assert cfg.data.intensity == cfg.model.intensity == cfg.intensity
    assert cfg.intensity.headroom == 1.25
    default = compose("train", [])
    assert default.data.intensity == default.model.intensity == default.intensity
    assert "headroom" not in default.intensity


def _phantom(tmp_path: Path) -> str:
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in (40, 36, 48)), indexing="ij")
    data = 200 + 600 * (((x - 20) / 14) ** 2 + ((y - 18) / 12) ** 2 <= 1) + 100 * np.sin(z / 5)
    path = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), path)
    return str(path)


@pytest.mark.parametrize("brightness", [0.6, 1.4])
def test_random_stack_training_input_has_the_inference_scale(tmp_path: Path, brightness: float) -> None:
    """Inference divides the LR volume by its own P99.5, so the network input's foreground P99.5 is 1. A random stack
    that changes the intensity scale (here a fixed brightness, applied at test time too) must give the LR side of the
    training pairs the same scale: the pooled P99.5 of the LR training patches ≈ 1, not ≈ ``brightness``."""
    source = _phantom(tmp_path)
    stack = DegradationStack(
        steps=[
            SliceProfile(thickness_mm=4.0, separation_mm=4.0),
            Downsample(),
            Upsample(),
            RandomIntensityJitter(brightness_range=(brightness, brightness), contrast_range=(1.0, 1.0)),
        ],
        axis=2,
    )
    assert stack.is_random
    data = SimulatedPairsDataModule([source], [source], [], stack, patch_size=24, patches_per_epoch=48, slab_axis=0)
    data.setup("fit")
    lr = np.concatenate([data.train_set[k]["lr"].numpy().ravel() for k in range(48)])
    train_scale = float(np.percentile(lr[lr > 0], 99.5))
    # What inference feeds the network: the degraded volume divided by its own statistic.
    volume = Volume(np.asarray(nib.load(source).dataobj, dtype=np.float32), np.eye(4))
    degraded = stack(volume, seed=0).data
    normalised = IntensityRule().scaling(degraded).apply(degraded)
    inference_scale = float(np.percentile(normalised[normalised > 0], 99.5))
    assert inference_scale == pytest.approx(1.0)
    assert train_scale == pytest.approx(inference_scale, rel=0.1)
    assert abs(train_scale - brightness) > 0.25  # the scale of HR-normalised pairs (the old rule) is excluded
    torch.testing.assert_close(data.train_set[3]["lr"], data.train_set[3]["lr"])  # items stay pure functions of k
    # The target keeps the scale of the acquisition without the jitter: the random gain is the input's appearance,
    # not something the network could infer from its normalised input (a target divided by it would carry a gain
    # of 1 / brightness).
    plain = DegradationStack(steps=[*stack.steps[:3], RandomIntensityJitter(brightness_range=(1.0, 1.0))], axis=2)
    reference = SimulatedPairsDataModule(
        [source], [source], [], plain, patch_size=24, patches_per_epoch=48, slab_axis=0
    )
    reference.setup("fit")
    for k in (0, 7, 31):
        torch.testing.assert_close(data.train_set[k]["hr"], reference.train_set[k]["hr"])
    hr = np.concatenate([data.train_set[k]["hr"].numpy().ravel() for k in range(48)])
    assert abs(float(np.percentile(hr[hr > 0], 99.5)) - 1 / brightness) > 0.2
