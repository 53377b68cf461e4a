"""Bad-input corpus: every case exits non-zero with one specific message (file, problem, fix), no traceback,
no output file, and leaves its inputs byte-identical."""

from __future__ import annotations

import gzip
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import file_digest, run_tool

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
    proc = run_tool(case.command(bad, out))
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


# ----------------------------------------------------------------------------------------------------------------
# Error kinds beyond bad files: stored voxel sizes, option values, constructor refusals, config errors, output folders


def stored_pixdim(tmp: Path, index: int, value: float) -> Path:
    """A valid volume whose header bytes then get ``pixdim[index] = value`` (nibabel would repair it on load)."""
    data, affine = volume()
    raw = bytearray(nib.Nifti1Image(data, affine).to_bytes())
    raw[76 + 4 * index : 80 + 4 * index] = np.array([value], dtype="<f4").tobytes()
    path = tmp / f"pixdim{index}.nii.gz"
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, no traceback, no result on stdout, and the last stderr line is one ``error:`` naming all."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout[-1000:]}\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not any(line.startswith("{") for line in proc.stdout.splitlines()), proc.stdout[-1000:]
    lines = proc.stderr.strip().splitlines()
    last = lines[-1] if lines else ""
    assert last.startswith("error: ") and " Fix: " in last, proc.stderr[-2000:]
    assert sum(line.startswith("error:") for line in lines) == 1
    for fragment in fragments:
        assert fragment in last, f"{fragment!r} not in {last!r}"
    return last


@pytest.mark.parametrize(
    ("index", "value", "tool"), [(3, 0.0, "infer"), (1, -1.0, "simulate"), (2, float("nan"), "evaluate")]
)
def test_unusable_stored_voxel_size_is_refused(tmp_path: Path, index: int, value: float, tool: str) -> None:
    bad = stored_pixdim(tmp_path, index, value)
    out = tmp_path / ("metrics.csv" if tool == "evaluate" else "out.nii.gz")
    args = {
        "infer": infer(bad, out),
        "simulate": ["-m", "mrisr.cli.simulate", f"input={bad}", f"output={out}", "thickness=6", "axis=2"],
        "evaluate": ["-m", "mrisr.cli.evaluate", f"sr={good(tmp_path)}", f"hr={bad}", f"output={out}"],
    }[tool]
    assert_one_line_error(run_tool(args), bad.name, f"pixdim[{index}]")
    assert not out.exists()


def _simulate(tmp: Path, *extra: str) -> list[str]:
    return ["-m", "mrisr.cli.simulate", f"input={good(tmp)}", f"output={tmp / 'out.nii.gz'}", "axis=2", *extra]


def _infer(tmp: Path, *extra: str) -> list[str]:
    return [*infer(good(tmp), tmp / "out.nii.gz"), *extra]


def _train(tmp: Path, *extra: str) -> list[str]:
    return ["train.py", f"paths.runs_dir={tmp / 'runs'}", "print_config=false", *extra]


#: name → (command for a work folder, key, value, expected type named in the message)
BAD_VALUES = {
    "simulate thickness (required, declared float)": (lambda t: _simulate(t, "thickness=abc"), "thickness", "abc"),
    "simulate seed (int default)": (lambda t: _simulate(t, "thickness=6", "seed=1.5x"), "seed", "1.5x"),
    "simulate noise_std (float default)": (
        lambda t: _simulate(t, "thickness=6", "noise_std=lots"),
        "noise_std",
        "lots",
    ),
    "evaluate percentile": (
        lambda t: ["-m", "mrisr.cli.evaluate", f"sr={good(t)}", f"hr={good(t)}", "percentile=high"],
        "percentile",
        "high",
    ),
    "mucca landmark label": (
        lambda t: ["-m", "mrisr.cli.mucca", f"seg={good(t)}", f"pmj={good(t)}", "pmj_label=fifty"],
        "pmj_label",
        "fifty",
    ),
    "longitudinal correction (declared float)": (
        lambda t: ["-m", "mrisr.cli.longitudinal", "table=t.csv", "clinical=c.csv", f"output={t}", "t1w_delta_mm2=x"],
        "t1w_delta_mm2",
        "x",
    ),
    "infer thickness (declared float)": (lambda t: _infer(t, "model=smore", "thickness=abc"), "thickness", "abc"),
    "infer budget (declared float)": (
        lambda t: _infer(t, "model=smore", "budget.max_time=5min"),
        "budget.max_time",
        "5min",
    ),
    "infer model option (constructor annotation)": (
        lambda t: _infer(t, "model=smore", "model.max_steps=many"),
        "model.max_steps",
        "many",
    ),
    "infer boolean": (lambda t: _infer(t, "allow_anisotropic_inplane=maybe"), "allow_anisotropic_inplane", "maybe"),
    "train trainer option": (lambda t: _train(t, "trainer.max_epochs=abc"), "trainer.max_epochs", "abc"),
}


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_bad_option_value_names_key_value_and_type(tmp_path: Path, name: str) -> None:
    command, key, value = BAD_VALUES[name]
    proc = run_tool(command(tmp_path))
    last = assert_one_line_error(proc, f"option {key}={value}", "expected ")
    assert any(t in last for t in ("int", "float", "number", "bool")), last
    assert not (tmp_path / "out.nii.gz").exists() and not (tmp_path / "runs").exists()


def test_report_option_value_is_checked_too(tmp_path: Path) -> None:
    pytest.importorskip("mrisr.report.cli", reason="mrisr.report.cli is not part of this checkout")
    proc = run_tool(["-m", "mrisr.cli.report", f"runs={tmp_path}", f"output={tmp_path / 'r'}", "alpha=five"])
    assert_one_line_error(proc, "option alpha=five")


def test_override_check_accepts_what_the_option_accepts() -> None:
    """Values the generic check must let through: strings where the constructor takes them, null, numbers."""
    from mrisr.core.errors import MrisrInputError
    from mrisr.utils.config import compose

    cfg = compose(
        "train",
        ["trainer.devices=auto", "trainer.max_epochs=null", "trainer.max_time=00:00:01:00", "seed=3", "model=smore"],
    )
    assert cfg.trainer.devices == "auto" and cfg.trainer.max_epochs is None and cfg.seed == 3
    assert compose("infer", ["model=smore", "model.max_time_s=12.5", "thickness=3"]).model.max_time_s == 12.5
    assert compose("simulate", ["input=a", "output=b", "thickness=3", "axis=1"]).axis == 1  # str default, int value
    with pytest.raises(MrisrInputError, match=r"option trainer\.limit_val_batches=all: .*expected"):
        compose("train", ["trainer.limit_val_batches=all"])


#: name → (command for a work folder, fragments the one line must contain)
REFUSED = {
    "interpolation order (ValueError in a constructor)": (lambda t: _infer(t, "+model.order=2"), ["model", "order"]),
    "zero-shot loss (ValueError in a constructor)": (lambda t: _infer(t, "model=smore", "+model.loss=foo"), ["loss"]),
    "degradation thickness (ValueError in a constructor)": (
        lambda t: _simulate(t, "degradation=thick_slice", "degradation.thickness_mm=-1"),
        ["degradation", "thickness_mm"],
    ),
    "supervised loss (train.py)": (lambda t: _train(t, "+model.loss=foo"), ["model", "loss"]),
    "unknown key": (lambda t: _simulate(t, "thickness=6", "thicknes=3"), ["unknown option 'thicknes'"]),
    "unknown nested key (infer.py)": (lambda t: _infer(t, "trainer.max_epochs=3"), ["'trainer.max_epochs'"]),
    "unknown group option": (lambda t: _infer(t, "model=foo"), ["model/foo", "cubic"]),
    "unparsable override": (lambda t: _simulate(t, "thickness=6", "a=b=c"), ["cannot parse"]),
    "missing mandatory value": (
        lambda t: ["-m", "mrisr.cli.simulate", f"output={t / 'out.nii.gz'}", "thickness=3"],
        ["'input'", "input="],
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_config_and_constructor_errors_end_in_one_line(tmp_path: Path, name: str) -> None:
    command, fragments = REFUSED[name]
    assert_one_line_error(run_tool(command(tmp_path)), *fragments)
    assert not (tmp_path / "out.nii.gz").exists()


def test_user_error_classifies_instantiate_failures(tmp_path: Path) -> None:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from mrisr.core.errors import MrisrInputError
    from mrisr.utils.cli import user_error

    missing = tmp_path / "missing.nii.gz"
    with pytest.raises(InstantiationException) as info:
        instantiate({"_target_": "mrisr.io.nifti.load_volume", "path": str(missing)})
    error = user_error(info.value)
    assert isinstance(error, MrisrInputError) and error.path == str(missing)  # the constructor's own message
    with pytest.raises(InstantiationException) as info:
        instantiate({"_target_": "mrisr.nowhere.Model"})
    assert "mrisr.nowhere.Model" in str(user_error(info.value))
    with pytest.raises(InstantiationException) as info:
        instantiate({"_target_": "builtins.memoryview", "object": 3})  # TypeError: a wrong argument
    assert user_error(info.value) is not None
    with pytest.raises(InstantiationException) as info:
        instantiate({"_target_": "torch.zeros", "_args_": [-1]})  # RuntimeError: negative dimension
    assert user_error(info.value) is None  # anything else is a bug: the traceback stays


#: writer → command writing under ``blocker`` (a file where a folder is needed), given the work folder
BLOCKED_OUTPUTS = {
    "NIfTI": lambda t, b: ["-m", "mrisr.cli.simulate", f"input={good(t)}", f"output={b / 'lr.nii.gz'}", "thickness=6"],
    "NIfTI (infer.py)": lambda t, b: infer(good(t), b / "sr" / "sr.nii.gz"),
    # The NIfTI output itself could be written: nothing may be.
    "PNG": lambda t, b: _simulate(t, "thickness=6", f"montage={b / 'preview.png'}"),
    "CSV": lambda t, b: ["-m", "mrisr.cli.evaluate", f"sr={good(t)}", f"hr={good(t)}", f"output={b / 'metrics.csv'}"],
    # Hydra's run folder (train.py: metrics.json, checkpoints, logs).
    "run folder (train.py)": lambda t, b: _train(t, f"paths.runs_dir={b / 'runs'}"),
}


@pytest.mark.parametrize("writer", list(BLOCKED_OUTPUTS))
def test_output_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path: Path, writer: str) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder\n")
    assert_one_line_error(run_tool(BLOCKED_OUTPUTS[writer](tmp_path, blocker)), str(blocker))
    assert not (tmp_path / "out.nii.gz").exists()
    assert blocker.read_text() == "a file, not a folder\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_output_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        proc = run_tool(infer(good(tmp_path), locked / "sr.nii.gz"))
        assert_one_line_error(proc, str(locked), "not writable")
    finally:
        locked.chmod(0o755)
    assert not list(locked.iterdir())


def test_mucca_reads_the_landmark_before_segmenting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mrisr.cli import mucca
    from mrisr.core.errors import MrisrInputError

    def segmenter_built(*args: object, **kwargs: object) -> None:
        raise AssertionError("the segmenter was built before the landmark was read")

    monkeypatch.setattr(mucca, "instantiate", segmenter_built)
    with pytest.raises(MrisrInputError, match="missing_pmj"):
        mucca.main([f"image={good(tmp_path)}", f"pmj={tmp_path / 'missing_pmj.nii.gz'}"])
