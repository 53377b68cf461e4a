"""``mrisr-simulate`` with a degradation preset: seeded, and a montage."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from conftest import run_tool
from support.volumes import phantom_volume


def test_simulate_cli_with_preset_is_seeded_and_writes_montage(tmp_path: Path) -> None:
    volume = phantom_volume(shape=(24, 20, 60), seed=9)
    source = tmp_path / "hr.nii.gz"
    nib.save(volume.to_nifti(), source)
    outputs = {}
    for tag, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / f"{tag}.nii.gz"
        extra = [f"montage={tmp_path / 'preview.png'}", "montage_draws=2"] if tag == "a" else []
        args = ["-m", "mrisr.cli.simulate", f"input={source}", f"output={out}", "degradation=clinical_mix"]
        args.append(f"seed={seed}")
        proc = run_tool([*args, *extra])
        assert proc.returncode == 0, proc.stderr[-2000:]
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        assert record["setting"] == "clinical_mix" and record["seed"] == seed and record["output"] == str(out)
        assert json.loads((tmp_path / f"{tag}.mrisr.json").read_text())["steps"] == record["steps"]
        outputs[tag] = nib.load(out)
    assert np.array_equal(outputs["a"].get_fdata(), outputs["b"].get_fdata())
    assert outputs["a"].shape != outputs["c"].shape or not np.array_equal(
        outputs["a"].get_fdata(), outputs["c"].get_fdata()
    )
    assert (tmp_path / "preview.png").stat().st_size > 1000
