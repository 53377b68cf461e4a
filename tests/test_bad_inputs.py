"""Bad-input corpus: every case exits non-zero with one specific message (file, problem, fix), no traceback,
no output file, and leaves its inputs byte-identical."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import file_digest, run_command

AFFINE_THICK = np.diag([1.0, 1.0, 3.0, 1.0])


def volume(shape: tuple[int, ...] = (24, 20, 8), zooms: tuple[float, float, float] = (1.0, 1.0, 3.0)) -> np.ndarray:
    return (np.random.default_rng(0).random(shape) + 1).astype(np.float32), np.diag([*zooms, 1.0])


def save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@dataclass
class Case:
    name: str
    make: Callable[[Path], Path]  # builds the bad input, returns it
    command: Callable[[Path, Path], list[str]]  # (input, output) → argv after python
    expected: str  # fragment of the message


def infer(bad: Path, out: Path) -> list[str]:
    return ["infer.py", f"input={bad}", f"output={out}", "model=cubic", f"paths.runs_dir={out.parent / 'runs'}"]


def good(tmp: Path) -> Path:
    return save(tmp / "good.nii.gz", *volume())


def truncated(tmp: Path) -> Path:
    raw = good(tmp).read_bytes()
    path = tmp / "truncated.nii.gz"
    path.write_bytes(raw[: len(raw) // 2])
    return path


def random_bytes(tmp: Path) -> Path:
    path = tmp / "random.nii.gz"
    path.write_bytes(gzip.compress(np.random.default_rng(1).bytes(4000)))
    return path


def text_file(tmp: Path) -> Path:
    path = tmp / "notes.nii"
    path.write_text("this is not an image\n" * 20)
    return path


def four_d(tmp: Path) -> Path:
    data, affine = volume((24, 20, 8, 3))
    return save(tmp / "fmri.nii.gz", data, affine)


def with_nan(tmp: Path) -> Path:
    data, affine = volume()
    data[3, 4, 5] = np.nan
    return save(tmp / "nan.nii.gz", data, affine)


def with_inf(tmp: Path) -> Path:
    data, affine = volume()
    data[1, 1, 1] = np.inf
    return save(tmp / "inf.nii.gz", data, affine)


def all_zero(tmp: Path) -> Path:
    data, affine = volume()
    return save(tmp / "zero.nii.gz", np.zeros_like(data), affine)


def isotropic(tmp: Path) -> Path:
    return save(tmp / "iso.nii.gz", *volume(zooms=(1.0, 1.0, 1.0)))


def anisotropic_inplane(tmp: Path) -> Path:
    return save(tmp / "aniso.nii.gz", *volume(zooms=(0.5, 1.0, 4.0)))


def tiny(tmp: Path) -> Path:
    return save(tmp / "tiny.nii.gz", *volume((24, 20, 2)))


def huge(tmp: Path) -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape((6000, 6000, 300))
    header.set_data_dtype(np.float32)
    header.set_xyzt_units("mm")
    path = tmp / "huge.nii"
    with open(path, "wb") as handle:
        header.write_to(handle)
    return path


def directory(tmp: Path) -> Path:
    path = tmp / "folder.nii.gz"
    path.mkdir()
    return path


def missing(tmp: Path) -> Path:
    return tmp / "does_not_exist.nii.gz"


def corrupt_checkpoint(tmp: Path) -> Path:
    path = tmp / "model.ckpt"
    path.write_bytes(b"not a checkpoint" * 10)
    return path


CASES = [
    Case("truncated gzip", truncated, infer, "truncated"),
    Case("random bytes", random_bytes, infer, "NIfTI"),
    Case("text file", text_file, infer, "NIfTI"),
    Case("4-D volume", four_d, infer, "4-D"),
    Case("NaN voxels", with_nan, infer, "NaN"),
    Case("Inf voxels", with_inf, infer, "Inf"),
    Case("all zero", all_zero, infer, "constant"),
    Case("isotropic without axis", isotropic, infer, "near-isotropic"),
    Case("anisotropic in-plane", anisotropic_inplane, infer, "in-plane"),
    Case("too few slices", tiny, infer, "slice"),
    Case("huge dimensions", huge, infer, "voxels"),
    Case("directory", directory, infer, "directory"),
    Case("missing file", missing, infer, "not"),
    Case("output is the input", good, lambda bad, out: infer(bad, bad), "input"),
    Case(
        "missing checkpoint",
        missing,
        lambda bad, out: ["infer.py", f"input={good(out.parent)}", f"output={out}", f"ckpt_path={bad}"],
        "checkpoint",
    ),
    Case(
        "corrupt checkpoint",
        corrupt_checkpoint,
        lambda bad, out: ["infer.py", f"input={good(out.parent)}", f"output={out}", f"ckpt_path={bad}"],
        "checkpoint",
    ),
    Case(
        "unknown config key",
        good,
        lambda bad, out: ["-m", "mrisr.cli.simulate", f"input={bad}", f"output={out}", "thicknes=3"],
        "thicknes",
    ),
    Case(
        "mask outside the image",
        good,
        lambda bad, out: [
            "-m",
            "mrisr.cli.evaluate",
            f"sr={bad}",
            f"hr={bad}",
            f"mask={far_mask(out.parent)}",
            f"output={out}",
        ],
        "mask",
    ),
    Case(
        "images of different spaces",
        good,
        lambda bad, out: ["-m", "mrisr.cli.evaluate", f"sr={far_image(out.parent)}", f"hr={bad}", f"output={out}"],
        "field of view",
    ),
]


def far_mask(tmp: Path) -> Path:
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    affine[:3, 3] = 500.0
    return save(tmp / "far_mask.nii.gz", np.ones((5, 5, 5), np.float32), affine)


def far_image(tmp: Path) -> Path:
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    affine[:3, 3] = 500.0
    return save(tmp / "far_image.nii.gz", *volume()[:1], affine)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_cleanly(case: Case, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    bad = case.make(work)
    before = {p: file_digest(p) for p in work.rglob("*") if p.is_file()}
    out = work / "output.nii.gz" if case.name != "mask outside the image" else work / "metrics.csv"
    proc = run_command(case.command(bad, out))
    assert proc.returncode != 0, f"{case.name}: exit 0\n{proc.stdout[-1500:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert case.expected.lower() in proc.stderr.lower(), f"{case.name}: {message}"
    assert bad.name in proc.stderr or case.name == "unknown config key", (
        f"{case.name}: message names no file: {message}"
    )
    assert not out.exists()
    after = {p: file_digest(p) for p in before}
    assert after == before, f"{case.name}: an input changed"
