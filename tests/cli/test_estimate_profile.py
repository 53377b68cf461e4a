"""``mrisr-estimate-profile``: the same estimate as the function, a kernel file, a clear refusal of isotropic input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import run_tool
from mrisr.io.nifti import Volume
from mrisr.physics.estimation import estimate_slice_profile
from mrisr.physics.profiles import load_kernel_file
from support.volumes import ball_phantom, thick_stack


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return ball_phantom()


def test_command_line_tool(phantom: np.ndarray, tmp_path: Path) -> None:
    lr = thick_stack(phantom, 3.0, 4.0, "slr")
    image = tmp_path / "lr.nii.gz"
    nib.save(Volume(lr.astype(np.float32), np.diag([1.0, 1.0, 4.0, 1.0])).to_nifti(), image)
    kernel_file = tmp_path / "kernel.npy"
    proc = run_tool(["-m", "mrisr.cli.estimate_profile", f"input={image}", f"output={kernel_file}"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    direct = estimate_slice_profile(lr, axis=2, separation_mm=4.0, inplane_spacing_mm=1.0)
    assert result["fwhm_mm"] == pytest.approx(direct.fwhm_mm, abs=1e-5)
    assert result["separation_mm"] == 4.0 and result["axis"] == 2 and result["shape"] == "slr"
    np.testing.assert_allclose(load_kernel_file(kernel_file), direct.kernel, atol=1e-6)  # float32 file


def test_command_line_tool_refuses_isotropic_input(phantom: np.ndarray, tmp_path: Path) -> None:

    iso = tmp_path / "iso.nii.gz"
    nib.save(Volume(phantom.astype(np.float32), np.eye(4)).to_nifti(), iso)
    proc = run_tool(["-m", "mrisr.cli.estimate_profile", f"input={iso}"])
    assert proc.returncode != 0 and "near-isotropic" in proc.stderr and "Traceback" not in proc.stderr
