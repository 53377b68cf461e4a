"""End-to-end command-line contracts on real shared data: simulate → infer → evaluate, errors, geometry.

Every entry point runs once as a real process (its ``--help``, and the API import check in a fresh interpreter);
the other contracts run the same ``main`` in this process through ``run_tool`` (exit status, stdout, stderr).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import file_digest, last_json, run_command, run_tool


def voxel_centres_world(img: nib.Nifti1Image, axis: int) -> np.ndarray:
    """World coordinates (mm) of voxel centres along ``axis`` at index 0 of the other axes: (N, 3)."""
    n = img.shape[axis]
    ijk = np.zeros((n, 4))
    ijk[:, axis] = np.arange(n)
    ijk[:, 3] = 1
    return (img.affine @ ijk.T).T[:, :3]


@pytest.fixture(scope="module")
def spine_lr(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    hr = shared_data / "spine_hr" / "errsm_11" / "t2.nii.gz"
    out = tmp_path_factory.mktemp("cli") / "lr_3_1.nii.gz"
    before = file_digest(hr)
    proc = run_tool(
        ["-m", "mrisr.cli.simulate", f"input={hr}", f"output={out}", "thickness=3", "gap=1", "axis=2", "seed=0"]
    )
    assert proc.returncode == 0, proc.stderr
    assert file_digest(hr) == before, "the input file was modified"
    result = last_json(proc.stdout)
    assert result["separation_mm"] == 4.0 and result["axis"] == 2
    return hr, out


def test_simulate_writes_exact_geometry(spine_lr: tuple[Path, Path]) -> None:
    hr_path, lr_path = spine_lr
    hr, lr = nib.load(hr_path), nib.load(lr_path)
    assert lr.shape == (384, 216, 13)
    assert lr.header.get_zooms()[:3] == pytest.approx((1.0, 1.0, 4.0), abs=1e-6)
    # Every LR slice centre sits at the centre of the 4 HR slices it samples (s = 4, N = 52 = 13·4).
    hr_centres = voxel_centres_world(hr, 2).reshape(13, 4, 3).mean(axis=1)
    np.testing.assert_allclose(voxel_centres_world(lr, 2), hr_centres, atol=1e-5)
    assert int(lr.header["qform_code"]) == int(hr.header["qform_code"])
    assert int(lr.header["sform_code"]) == int(hr.header["sform_code"])


def test_simulate_is_deterministic_and_notation_matches(spine_lr: tuple[Path, Path], tmp_path: Path) -> None:
    hr_path, lr_path = spine_lr
    again = tmp_path / "again.nii.gz"
    proc = run_tool(["-m", "mrisr.cli.simulate", f"input={hr_path}", f"output={again}", "notation='3||1'", "axis=2"])
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(nib.load(again).get_fdata(), nib.load(lr_path).get_fdata())
    np.testing.assert_array_equal(nib.load(again).affine, nib.load(lr_path).affine)


def test_infer_cubic_overlays_input_and_evaluate_reports(spine_lr: tuple[Path, Path], tmp_path: Path) -> None:
    hr_path, lr_path = spine_lr
    sr_path = tmp_path / "sr.nii.gz"
    lr_digest = file_digest(lr_path)
    proc = run_tool(["infer.py", f"input={lr_path}", f"output={sr_path}", "model=cubic", f"paths.runs_dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr
    assert file_digest(lr_path) == lr_digest
    sr, hr, lr = nib.load(sr_path), nib.load(hr_path), nib.load(lr_path)
    assert sr.shape == hr.shape
    # The SR grid nests exactly into the HR grid: same affine, and the FOV centre of the LR input is unchanged.
    np.testing.assert_allclose(sr.affine, hr.affine, atol=1e-6)
    centre = lambda img: img.affine @ np.r_[(np.array(img.shape[:3]) - 1) / 2, 1]  # noqa: E731
    np.testing.assert_allclose(centre(sr), centre(lr), atol=1e-6)
    sidecar = json.loads((tmp_path / "sr.mrisr.json").read_text())
    assert sidecar["factor"] == pytest.approx(4.0) and sidecar["output_shape"] == [384, 216, 52]

    csv_path = tmp_path / "metrics.csv"
    proc = run_tool(["-m", "mrisr.cli.evaluate", f"sr={sr_path}", f"hr={hr_path}", f"output={csv_path}"])
    assert proc.returncode == 0, proc.stderr
    metrics = last_json(proc.stdout)
    assert 20 < metrics["psnr"] < 60 and 0.5 < metrics["ssim"] < 1.0
    assert csv_path.read_text().count("\n") >= 3

    mask = hr_path.parent / "t2_manual_segmentation.nii.gz"
    proc = run_tool(["-m", "mrisr.cli.evaluate", f"sr={sr_path}", f"hr={hr_path}", f"mask={mask}"])
    assert proc.returncode == 0, proc.stderr
    masked = last_json(proc.stdout)
    assert "psnr_mask" in masked and "ssim_mask" in masked and masked["psnr"] == pytest.approx(metrics["psnr"])


def test_infer_on_real_thick_axial_input(shared_data: Path, tmp_path: Path) -> None:
    lr_path = shared_data / "thick" / "t2_axial_7p5mm_ms.nii.gz"
    sr_path = tmp_path / "sr_axial.nii.gz"
    proc = run_tool(["infer.py", f"input={lr_path}", f"output={sr_path}", "model=linear", f"paths.runs_dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr
    lr, sr = nib.load(lr_path), nib.load(sr_path)
    assert sr.shape == (320, 256, round(19 * 7.5 / 0.6875))
    assert sr.header.get_zooms()[2] == pytest.approx(0.6875, abs=1e-5)
    centre = lambda img: img.affine @ np.r_[(np.array(img.shape[:3]) - 1) / 2, 1]  # noqa: E731
    np.testing.assert_allclose(centre(sr), centre(lr), atol=1e-4)
    np.testing.assert_allclose(sr.affine[:3, :2], lr.affine[:3, :2], atol=1e-7)


def test_infer_refuses_isotropic_input_cleanly(shared_data: Path, tmp_path: Path) -> None:
    hr = shared_data / "spine_hr" / "errsm_11" / "t2.nii.gz"
    out = tmp_path / "never.nii.gz"
    proc = run_tool(["infer.py", f"input={hr}", f"output={out}", f"paths.runs_dir={tmp_path}"])
    assert proc.returncode != 0
    assert "near-isotropic" in proc.stderr and "t2.nii.gz" in proc.stderr and "axis" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_simulate_refuses_to_overwrite_input(tmp_path: Path, spine_lr: tuple[Path, Path]) -> None:
    _, lr_path = spine_lr
    copy = tmp_path / "copy.nii.gz"
    copy.write_bytes(lr_path.read_bytes())
    digest = file_digest(copy)
    proc = run_tool(["-m", "mrisr.cli.simulate", f"input={copy}", f"output={copy}", "thickness=8"])
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert file_digest(copy) == digest


def test_unknown_config_key_fails_loudly(tmp_path: Path, spine_lr: tuple[Path, Path]) -> None:
    _, lr_path = spine_lr
    proc = run_tool(["-m", "mrisr.cli.simulate", f"input={lr_path}", f"output={tmp_path / 'x.nii.gz'}", "thicknes=3"])
    assert proc.returncode != 0 and "thicknes" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------------------------------------------
# The tools: package layout, console scripts, dispatcher, --help

TOOLS = (
    "simulate",
    "evaluate",
    "segment",
    "mucca",
    "longitudinal",
    "report",
    "estimate_profile",
    "export_prior",
    "export_weights",
)


def report_cli_available() -> bool:
    """Whether ``mrisr.report.cli`` (the report package's command line) is importable."""
    import importlib.util

    try:
        return importlib.util.find_spec("mrisr.report.cli") is not None
    except ModuleNotFoundError:  # mrisr.report is still a plain module
        return False


def test_importing_the_tools_keeps_the_api_functions() -> None:
    import importlib

    import mrisr
    import mrisr.api

    for tool in TOOLS:
        module = importlib.import_module(f"mrisr.cli.{tool}")
        assert callable(module.main) and callable(module.run)
    assert mrisr.simulate is mrisr.api.simulate and mrisr.evaluate is mrisr.api.evaluate
    assert mrisr.super_resolve is mrisr.api.super_resolve
    # ... also in a fresh interpreter, where the tool module is imported first.
    code = (
        "import mrisr.cli.simulate, mrisr.cli.evaluate, mrisr, mrisr.api, types; "
        "assert isinstance(mrisr.simulate, types.FunctionType) and mrisr.simulate is mrisr.api.simulate; "
        "assert mrisr.evaluate is mrisr.api.evaluate; print('ok')"
    )
    proc = run_command(["-c", code])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_console_scripts_resolve_to_callables() -> None:
    import importlib
    import tomllib

    from conftest import REPO_ROOT

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    applications = {"mrisr-train": "mrisr.app.train", "mrisr-infer": "mrisr.app.infer"}
    assert set(scripts) == {"mrisr", *applications, *(f"mrisr-{tool.replace('_', '-')}" for tool in TOOLS)}
    for name, target in scripts.items():
        module_name, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module_name), attr)), name
        if name in applications:
            assert module_name == applications[name] and attr == "run"
        elif name != "mrisr":
            assert module_name == f"mrisr.cli.{name.removeprefix('mrisr-').replace('-', '_')}" and attr == "run"


#: Command line → an option that its --help must show with its default.
HELP_CASES = {
    "simulate": (["-m", "mrisr.cli.simulate", "--help"], "noise_std: 0.0"),
    "evaluate": (["-m", "mrisr.cli.evaluate", "-h"], "percentile: 99.5"),
    "segment": (["-m", "mrisr.cli.segment", "--help"], "segmenter=classical"),
    "mucca": (["-m", "mrisr.cli.mucca", "--help"], "pmj_label: 50"),
    "longitudinal": (["-m", "mrisr.cli.longitudinal", "--help"], "metric: mucca_mm2"),
    "report": (["-m", "mrisr.cli.report", "--help"], "alpha: 0.05"),
    "estimate_profile": (["-m", "mrisr.cli.estimate_profile", "--help"], "slab_compensation: false"),
    "export_prior": (["-m", "mrisr.cli.export_prior", "--help"], "dtype: float16"),
    "export_weights": (["-m", "mrisr.cli.export_weights", "--help"], "dtype: float16"),
    "dispatcher": (["-m", "mrisr.cli", "mucca", "--help"], "c2_label: 2"),
    "train.py": (["train.py", "--help"], "max_epochs: 6"),
    "infer.py": (["infer.py", "-h", "model=smore"], "max_steps: 20000"),
}


@pytest.mark.parametrize("case", list(HELP_CASES))
def test_help_prints_usage_and_options_with_defaults(case: str) -> None:
    args, option = HELP_CASES[case]
    proc = run_command(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr
    assert "Usage:" in proc.stdout and "Options (conf/" in proc.stdout
    assert option in proc.stdout, proc.stdout[-3000:]
    assert "\nhydra:" not in proc.stdout  # the Hydra node is not an option of the tool


def test_dispatcher_lists_tools_and_refuses_unknown_ones() -> None:
    proc = run_tool(["-m", "mrisr.cli", "--help"])
    assert proc.returncode == 0, proc.stderr
    for tool in TOOLS:
        assert f"  {tool} " in proc.stdout
    for args, fragment in ((["nosuch"], "unknown tool 'nosuch'"), ([], "no tool given")):
        proc = run_tool(["-m", "mrisr.cli", *args])
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and fragment in last and "simulate" in last


def test_dispatcher_runs_a_tool(spine_lr: tuple[Path, Path], tmp_path: Path) -> None:
    hr_path, lr_path = spine_lr
    out = tmp_path / "lr.nii.gz"
    proc = run_tool(["-m", "mrisr.cli", "simulate", f"input={hr_path}", f"output={out}", "notation='3||1'", "axis=2"])
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(nib.load(out).get_fdata(), nib.load(lr_path).get_fdata())


def test_report_tool_delegates_to_the_report_package(tmp_path: Path) -> None:
    if not report_cli_available():
        pytest.skip("mrisr.report.cli is not part of this checkout")
    proc = run_tool(["-m", "mrisr.cli.report", f"runs={tmp_path / 'none'}", f"output={tmp_path / 'out'}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
