"""Pure parts of the PRETTIER held-out experiment (experiments/benchmarks/prettier_brain.py, experiments/giraldo2024):
1 mm grid, brain-mask rules, scoring through the one scoring function, resumable tidy rows, method labels."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mrisr.core.errors import MrisrInputError
from mrisr.eval.prettier import PATCH_METRICS, brain_mask
from mrisr.eval.scoring import score_volume
from mrisr.experiment.prettier import method_label
from mrisr.io.nifti import Volume
from mrisr.io.regrid import isotropic_grid, resample_to_reference
from mrisr.io.rows import ROW_FIELDS, RowStore


def _score(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray, axis: int) -> dict[str, float]:
    """score_volume as the PRETTIER experiment calls it (mask = normalisation region), as {metric: value}."""
    as_vol = lambda a: Volume(data=np.asarray(a, np.float32), affine=np.eye(4))  # noqa: E731
    region = as_vol(mask)
    rows = score_volume(as_vol(sr), as_vol(hr), "v", "prettier", "m", mask=region, normalization_mask=region,
                        patch_axis=axis, patch_metrics=PATCH_METRICS)  # fmt: skip
    return {r["metric"]: r["value"] for r in rows}


bench = SimpleNamespace(isotropic_grid=isotropic_grid, brain_mask=brain_mask, score=_score)


def head_phantom(shape: tuple[int, int, int] = (40, 40, 30)) -> np.ndarray:
    """A bright shell (scalp) around a darker cavity holding a brain ball, plus a detached bright blob."""
    grid = np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    data = np.zeros(shape, np.float32)
    data[(r < 14) & (r >= 12)] = 100.0  # scalp shell
    data[r < 9] = 60.0  # brain; 9 ≤ r < 12 is dark (CSF/skull at 1 % of the scalp)
    data[(r >= 9) & (r < 12)] = 1.0
    data[1:3, 1:3, 1:3] = 100.0  # a small detached component (noise outside the head)
    return data


def test_isotropic_grid_has_exact_spacing_and_the_same_field_of_view() -> None:
    affine = np.diag([0.88, 0.88, 0.88, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 2.0]
    volume = Volume(data=np.zeros((25, 20, 10), np.float32), affine=affine)
    grid = bench.isotropic_grid(volume, 1.0)
    assert grid.shape == (22, 17, 8)  # floor(25·0.88), floor(20·0.88), floor(10·0.88)
    np.testing.assert_allclose(grid.zooms, 1.0, atol=1e-12)
    # Outer edge of the first voxel coincides: centre of new voxel 0 = old edge + 0.5 mm.
    np.testing.assert_allclose(grid.affine[:3, 3], affine[:3, 3] - 0.44 + 0.5, atol=1e-12)
    # A world-coordinate ramp (slope 2 along x) is reproduced inside the field of view up to the spline's edge
    # error (~0.01); a grid misplaced by half an input voxel (0.44 mm) would be off by ~0.9.
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij"), -1)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    ramp = Volume(data=(2.0 * world[..., 0] + world[..., 2]).astype(np.float32), affine=affine)
    out = resample_to_reference(ramp, grid, order=3)
    ijk_new = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1)
    world_new = ijk_new @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    expected = 2.0 * world_new[..., 0] + world_new[..., 2]
    np.testing.assert_allclose(out[2:-2, 2:-2, 2:-2], expected[2:-2, 2:-2, 2:-2], atol=0.05)


def test_nonzero_rule_is_exactly_the_positive_voxels() -> None:
    data = head_phantom()
    np.testing.assert_array_equal(bench.brain_mask(data, "nonzero"), data > 0)


def test_head_rule_keeps_the_largest_component_and_fills_its_cavity() -> None:
    data = head_phantom()
    mask = bench.brain_mask(data, "head")
    r_in = data > 0
    assert not mask[1:3, 1:3, 1:3].any()  # detached blob dropped
    assert mask[20, 20, 15]  # brain centre
    assert mask[data == 1.0].all()  # dark ring below the threshold, enclosed by the shell: filled
    assert mask.sum() < r_in.sum()  # the blob is gone and nothing outside the shell is added
    assert not mask[0, 20, 15] and not mask[20, 0, 15]


def test_mask_rules_refuse_empty_and_unknown() -> None:
    with pytest.raises(MrisrInputError):
        bench.brain_mask(np.zeros((8, 8, 8), np.float32), "nonzero")
    with pytest.raises(ValueError, match="mask rule"):
        bench.brain_mask(head_phantom(), "hd-bet")


def test_score_is_perfect_for_identical_volumes_and_drops_with_noise() -> None:
    hr = head_phantom((44, 44, 24))  # VIF-p needs slices ≥ 41 × 41
    mask = bench.brain_mask(hr, "nonzero")
    same = bench.score(hr.copy(), hr, mask, axis=2)
    assert same["psnr_mask"] == np.inf and same["ssim_mask"] == pytest.approx(1.0)
    assert same["patch_ssim"] == pytest.approx(1.0, abs=1e-4) and same["patch_slices"] > 0
    # Noise SD 5 in the brain ball only (60 ± 5: never clipped), scale P99.5 = 100 (the shell): the mask MSE is
    # 0.05² × the ball's share of the mask, so PSNR = 20·log10(1 / 0.05) − 10·log10(share).
    brain = hr == 60.0
    noisy = hr + np.where(brain, np.random.default_rng(0).normal(0, 5.0, hr.shape), 0.0).astype(np.float32)
    worse = bench.score(noisy, hr, mask, axis=2)
    share = brain.sum() / mask.sum()
    assert worse["psnr_mask"] == pytest.approx(20 * np.log10(20.0) - 10 * np.log10(share), abs=0.2)
    assert worse["ssim_mask"] < 0.99 and worse["patch_psnr"] < 60 and worse["patch_vif_p"] < same["patch_vif_p"]


def test_row_store_resumes_and_refuses_other_layouts(tmp_path: Path) -> None:
    store = RowStore(tmp_path / "rows.csv")
    assert store.done() == set() and list(store.read().columns) == list(ROW_FIELDS)
    hr = Volume(data=np.random.default_rng(0).random((12, 12, 12)).astype(np.float32) + 0.5, affine=np.eye(4))
    store.append(score_volume(hr, hr, "flair", "prettier", "cubic", seconds=1.234, steps=None))
    store.append(score_volume(hr, hr, "flair", "prettier", "edsr_smoke", seconds=2.0, steps=42))
    assert store.done() == {("flair", "prettier", "cubic"), ("flair", "prettier", "edsr_smoke")}
    rows = store.read()
    assert list(rows.columns) == list(ROW_FIELDS)
    edsr = rows[rows["method"] == "edsr_smoke"]
    assert set(edsr["steps"]) == {42} and set(edsr["seconds"]) == {2.0} and set(edsr["status"]) == {"ok"}
    assert rows.loc[rows["method"] == "cubic", "seconds"].iloc[0] == 1.23
    with pytest.raises(ValueError, match="outside the schema"):
        store.append([{**score_volume(hr, hr, "t1", "p", "m")[0], "train_minutes": 1.0}])
    (tmp_path / "old.csv").write_text("held_out,method,psnr_mask\nflair,cubic,19.0\n")
    with pytest.raises(MrisrInputError, match="tidy schema"):
        RowStore(tmp_path / "old.csv").read()


def test_method_labels_name_the_model_config() -> None:
    assert method_label(["experiment=prettier_edsr_smoke", "model=edsr_smoke"], "edsr") == "edsr_smoke"
    assert method_label(["experiment=x"], "realesrgan") == "realesrgan"
