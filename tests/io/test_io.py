"""Tests of NIfTI loading/saving, input validation and slice-geometry detection (docs/physics.md §3-§4)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import re
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import shared_data_dir
from mrisr.core.errors import MrisrInputError
from mrisr.io import SliceGeometry, Volume, detect_slice_axis, load_volume, same_file, save_volume, volume_from_image

DATA = shared_data_dir()


def _shared(rel: str) -> Path:
    """Path of a shared data file; skips the test when the data (or the file) is absent."""
    if not DATA.is_dir():
        pytest.skip(f"shared data directory not found at {DATA} (set MRISR_DATA)")
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"shared data file {path} not found")
    return path


def _random_oblique_affine(rng: np.random.Generator) -> np.ndarray:
    """Rotation (random, proper) x anisotropic zooms + translation, rounded to float32 like NIfTI-1."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    zooms = rng.uniform(0.3, 6.0, size=3)
    affine = np.eye(4)
    affine[:3, :3] = q * zooms
    affine[:3, 3] = rng.uniform(-120.0, 120.0, size=3)
    return affine.astype(np.float32).astype(np.float64)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(path: Path, data: np.ndarray, affine: np.ndarray | None = None, **hdr_fields: object) -> Path:
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine, dtype=data.dtype)
    for key, value in hdr_fields.items():
        img.header[key] = value
    nib.save(img, path)
    return path


def _smooth(shape: tuple[int, int, int]) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n) for n in shape], indexing="ij")
    return (1.0 + grids[0] + 2.0 * grids[1] ** 2 + np.sin(3.0 * grids[2])).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# MrisrInputError


def test_error_message_names_path_problem_and_fix() -> None:
    err = MrisrInputError(Path("/x/in.nii.gz"), "file does not exist", "check the path")
    assert str(err) == "/x/in.nii.gz: file does not exist. Fix: check the path"
    assert isinstance(err, ValueError)
    assert (err.path, err.problem, err.fix) == ("/x/in.nii.gz", "file does not exist", "check the path")
    assert str(MrisrInputError(None, "bad value", "use 2")) == "bad value. Fix: use 2"
    clone = pickle.loads(pickle.dumps(err))
    assert isinstance(clone, MrisrInputError) and str(clone) == str(err)


# --------------------------------------------------------------------------------------------------
# Save / load round trip


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_round_trip_random_oblique_affine_is_bit_exact(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(7)
    affine = _random_oblique_affine(rng)
    data = rng.normal(size=(9, 7, 5)).astype(np.float32)
    out = save_volume(data, tmp_path / f"vol{suffix}", affine=affine)
    assert out == tmp_path / f"vol{suffix}"
    vol = load_volume(out)
    assert vol.affine.dtype == np.float64 and vol.affine.shape == (4, 4)
    assert np.array_equal(vol.affine, affine)  # bit-exact
    assert np.array_equal(vol.data, data)
    assert vol.data.dtype == np.float32 and vol.shape == (9, 7, 5)
    # Header zooms are read back from the affine.
    np.testing.assert_allclose(vol.zooms, np.linalg.norm(affine[:3, :3], axis=0), rtol=1e-6)
    hdr = nib.load(out).header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 1
    assert hdr.get_data_dtype() == np.float32
    # The qform describes the same geometry (no shears in a rotation x zoom affine).
    np.testing.assert_allclose(hdr.get_qform(), affine, atol=1e-4)
    assert (suffix == ".nii.gz") == (out.read_bytes()[:2] == b"\x1f\x8b")


def test_round_trip_float64_affine_is_float32_then_fixed_point(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    affine = _random_oblique_affine(rng) + rng.normal(scale=1e-4, size=(4, 4)) * np.r_[1, 1, 1, 0][:, None]
    data = rng.random((6, 6, 6)).astype(np.float32)
    first = load_volume(save_volume(data, tmp_path / "a.nii.gz", affine=affine))
    assert np.array_equal(first.affine, affine.astype(np.float32).astype(np.float64))
    second = load_volume(save_volume(first, tmp_path / "b.nii.gz"))
    assert np.array_equal(second.affine, first.affine)
    assert np.array_equal(second.data, first.data)


@pytest.mark.parametrize(("sform", "qform"), [(2, 1), (1, 2), (4, 0), (3, 3)])
def test_sform_qform_codes_are_kept(tmp_path: Path, sform: int, qform: int) -> None:
    rng = np.random.default_rng(sform * 10 + qform)
    affine = _random_oblique_affine(rng)
    template = nib.Nifti1Header()
    template.set_sform(np.eye(4), code=sform)
    template.set_qform(np.eye(4), code=qform)
    out = save_volume(rng.random((5, 6, 7)), tmp_path / "c.nii.gz", affine=affine, header=template)
    hdr = nib.load(out).header
    assert (int(hdr["sform_code"]), int(hdr["qform_code"])) == (sform, qform)
    assert np.array_equal(load_volume(out).affine, affine)
    # The template itself is not modified.
    assert np.array_equal(template.get_sform(), np.eye(4))


def test_codes_default_to_scanner_and_qform_only_template(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    affine = _random_oblique_affine(rng)
    template = nib.Nifti1Header()
    template.set_sform(None, code=0)
    template.set_qform(None, code=0)
    out = save_volume(rng.random((4, 5, 6)), tmp_path / "d.nii", affine=affine, header=template)
    hdr = nib.load(out).header
    assert (int(hdr["sform_code"]), int(hdr["qform_code"])) == (1, 1)
    # sform_code 0: the file's affine is the qform (float32 quaternion), close but not bit-exact.
    template.set_qform(np.eye(4), code=1)
    out = save_volume(rng.random((4, 5, 6)), tmp_path / "e.nii", affine=affine, header=template)
    hdr = nib.load(out).header
    assert (int(hdr["sform_code"]), int(hdr["qform_code"])) == (0, 1)
    np.testing.assert_allclose(load_volume(out).affine, affine, atol=1e-4)


def test_real_file_round_trip_keeps_affine_codes_and_data(tmp_path: Path) -> None:
    src = _shared("brain/pd_axial_2p4mm.nii.gz")
    vol = load_volume(src)
    out = save_volume(vol, tmp_path / "nested" / "dir" / "pd.nii.gz")
    back = load_volume(out)
    assert np.array_equal(back.affine, vol.affine)
    assert np.array_equal(back.data, vol.data)
    src_hdr, out_hdr = nib.load(src).header, nib.load(out).header
    for key in ("sform_code", "qform_code"):
        assert int(out_hdr[key]) == int(src_hdr[key])
    np.testing.assert_allclose(back.zooms, np.linalg.norm(vol.affine[:3, :3], axis=0), rtol=1e-6)


def test_integer_output_dtype_rounds_and_checks_range(tmp_path: Path) -> None:
    data = np.array([0.2, 0.7, 1.4, 2.6] * 6, dtype=np.float32).reshape(2, 3, 4)
    out = save_volume(data, tmp_path / "seg.nii.gz", affine=np.eye(4), dtype=np.int16)
    img = nib.load(out)
    assert img.get_data_dtype() == np.int16
    assert np.array_equal(np.asanyarray(img.dataobj), np.rint(data).astype(np.int16))
    with pytest.raises(MrisrInputError, match="do not fit"):
        save_volume(data * 1e6, tmp_path / "big.nii.gz", affine=np.eye(4), dtype=np.int16)
    assert not (tmp_path / "big.nii.gz").exists()


# --------------------------------------------------------------------------------------------------
# Atomic writing and input protection


def _listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_failed_write_leaves_no_temp_and_keeps_old_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.nii.gz"
    save_volume(np.ones((3, 3, 3)), out, affine=np.eye(4))
    before = _sha(out)
    seen: list[Path] = []

    def broken_write(self: nib.Nifti1Image, filename: str | os.PathLike[str], **kwargs: object) -> None:
        seen.append(Path(filename))
        Path(filename).write_bytes(b"partial")  # a half-written file ...
        raise OSError("disk full")  # ... then the write fails

    monkeypatch.setattr(nib.Nifti1Image, "to_filename", broken_write)
    with pytest.raises(OSError, match="disk full"):
        save_volume(np.zeros((3, 3, 3)) + 5, out, affine=np.eye(4))
    assert seen and seen[0].parent == tmp_path and seen[0] != out
    assert _listing(tmp_path) == {"out.nii.gz"}  # temporary file removed
    assert _sha(out) == before  # old output untouched
    with pytest.raises(OSError, match="disk full"):
        save_volume(np.zeros((3, 3, 3)), tmp_path / "new.nii", affine=np.eye(4))
    assert _listing(tmp_path) == {"out.nii.gz"}  # no partial new output


def test_uncastable_data_writes_nothing(tmp_path: Path) -> None:
    bad = np.array([["a"] * 2] * 2 * 2, dtype=object).reshape(2, 2, 2)
    with pytest.raises((ValueError, TypeError)):
        save_volume(bad, tmp_path / "x.nii.gz", affine=np.eye(4))
    with pytest.raises(MrisrInputError, match="complex"):
        save_volume(np.ones((2, 2, 2), dtype=np.complex64), tmp_path / "y.nii.gz", affine=np.eye(4))
    assert _listing(tmp_path) == set()


def test_refuses_to_overwrite_input(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.nii.gz", np.arange(27, dtype=np.float32).reshape(3, 3, 3))
    digest = _sha(src)
    vol = load_volume(src)
    vol.data += 100.0  # modifying the loaded array must not touch the file either
    for alias in (src, tmp_path / "." / "in.nii.gz", str(src)):
        with pytest.raises(MrisrInputError, match="overwrite the input") as info:
            save_volume(vol, alias)
        assert "in.nii.gz" in str(info.value)
    os.link(src, tmp_path / "hard.nii.gz")
    with pytest.raises(MrisrInputError):
        save_volume(vol, tmp_path / "hard.nii.gz")
    assert _sha(src) == digest
    # A different file is fine.
    assert load_volume(save_volume(vol, tmp_path / "out.nii.gz")).data[0, 0, 0] == 100.0


def test_save_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(MrisrInputError, match=r"\.nii or \.nii\.gz"):
        save_volume(np.ones((2, 2, 2)), tmp_path / "x.img", affine=np.eye(4))
    with pytest.raises(ValueError, match="affine"):
        save_volume(np.ones((2, 2, 2)), tmp_path / "x.nii.gz")
    (tmp_path / "dir.nii.gz").mkdir()
    with pytest.raises(MrisrInputError, match="directory"):
        save_volume(np.ones((2, 2, 2)), tmp_path / "dir.nii.gz", affine=np.eye(4))


def test_same_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.nii", np.ones((2, 2, 2), dtype=np.float32))
    os.link(a, tmp_path / "b.nii")
    assert same_file(a, tmp_path / "sub" / ".." / "a.nii")
    assert same_file(a, tmp_path / "b.nii")
    assert same_file(tmp_path / "missing.nii", tmp_path / "." / "missing.nii")
    assert not same_file(a, tmp_path / "missing.nii")
    assert not same_file(a, None) and not same_file(None, None)


def test_load_never_modifies_uncompressed_file(tmp_path: Path) -> None:
    src = _write(tmp_path / "raw.nii", np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    stat, digest = src.stat(), _sha(src)
    vol = load_volume(src, dtype=np.float32)
    assert not isinstance(vol.data, np.memmap) and vol.data.flags.owndata and vol.data.flags.writeable
    vol.data[:] = -1.0
    assert _sha(src) == digest and src.stat().st_mtime_ns == stat.st_mtime_ns


# --------------------------------------------------------------------------------------------------
# Input validation


def _make_bad(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """Create a bad input of the given kind; return its path and a regex its problem must match."""
    rng = np.random.default_rng(0)
    good = rng.random((12, 10, 8)).astype(np.float32)
    if kind == "missing":
        return tmp_path / "nope.nii.gz", "does not exist"
    if kind == "directory":
        (tmp_path / "folder.nii.gz").mkdir()
        return tmp_path / "folder.nii.gz", "directory"
    if kind == "empty_file":
        (tmp_path / "empty.nii.gz").write_bytes(b"")
        return tmp_path / "empty.nii.gz", "empty file"
    if kind in ("truncated_gz", "truncated_gz_header"):
        full = _write(tmp_path / "full.nii.gz", good).read_bytes()
        cut = len(full) // 2 if kind == "truncated_gz" else 60
        (tmp_path / f"{kind}.nii.gz").write_bytes(full[:cut])
        (tmp_path / "full.nii.gz").unlink()
        return tmp_path / f"{kind}.nii.gz", "truncated|corrupt"
    if kind == "corrupt_gz_stream":
        full = bytearray(_write(tmp_path / "full.nii.gz", good).read_bytes())
        full[len(full) // 2 : len(full) // 2 + 64] = bytes(64)
        (tmp_path / "full.nii.gz").unlink()
        (tmp_path / "corrupt.nii.gz").write_bytes(bytes(full))
        return tmp_path / "corrupt.nii.gz", "truncated|corrupt"
    if kind == "truncated_nii":
        full = _write(tmp_path / "full.nii", good).read_bytes()
        (tmp_path / "full.nii").unlink()
        (tmp_path / "short.nii").write_bytes(full[: len(full) - 100])
        return tmp_path / "short.nii", "truncated|corrupt|cannot be read"
    if kind == "random_gz":
        (tmp_path / "rand.nii.gz").write_bytes(rng.bytes(2000))
        return tmp_path / "rand.nii.gz", "not gzip"
    if kind == "random_nii":
        (tmp_path / "rand.nii").write_bytes(rng.bytes(2000))
        return tmp_path / "rand.nii", "not a NIfTI"
    if kind == "gz_of_random":
        (tmp_path / "gzrand.nii.gz").write_bytes(gzip.compress(rng.bytes(2000)))
        return tmp_path / "gzrand.nii.gz", "not a NIfTI"
    if kind == "text":
        (tmp_path / "notes.txt").write_text("subject,age\n1,40\n" * 50)
        return tmp_path / "notes.txt", "not a NIfTI"
    if kind == "mgh":
        nib.save(nib.MGHImage(good, np.eye(4)), tmp_path / "brain.mgz")
        return tmp_path / "brain.mgz", "MGHImage, not a NIfTI"
    if kind == "four_d":
        return _write(tmp_path / "dwi.nii.gz", rng.random((6, 5, 4, 3)).astype(np.float32)), "3 volumes"
    if kind == "two_d":
        return _write(tmp_path / "slice.nii.gz", rng.random((6, 5)).astype(np.float32)), "2 dimension"
    if kind == "zero_dim":
        return _write(tmp_path / "zero.nii.gz", np.zeros((6, 0, 4), dtype=np.float32)), "length 0"
    if kind == "nan":
        data = good.copy()
        data[0, 0, :3] = np.nan
        data[1, 1, 1] = np.inf
        return _write(tmp_path / "nan.nii.gz", data), r"4 of 960 voxels are not finite \(3 NaN, 1 Inf\)"
    if kind == "all_zero":
        return _write(tmp_path / "zeros.nii.gz", np.zeros((6, 5, 4), dtype=np.int16)), "same value"
    if kind == "nan_zoom":
        img = nib.Nifti1Image(good, np.eye(4))
        img.header["pixdim"][2] = np.nan
        nib.save(img, tmp_path / "nanzoom.nii.gz")
        return tmp_path / "nanzoom.nii.gz", "voxel sizes"
    raise AssertionError(kind)


BAD_KINDS = [
    "missing",
    "directory",
    "empty_file",
    "truncated_gz",
    "truncated_gz_header",
    "corrupt_gz_stream",
    "truncated_nii",
    "random_gz",
    "random_nii",
    "gz_of_random",
    "text",
    "mgh",
    "four_d",
    "two_d",
    "zero_dim",
    "nan",
    "all_zero",
    "nan_zoom",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_inputs_raise_input_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path, pattern = _make_bad(tmp_path, kind)
    digest = _sha(path) if path.is_file() else None
    with pytest.raises(MrisrInputError) as info:
        load_volume(path)
    err = info.value
    assert err.path == str(path)
    assert str(err).startswith(f"{path}: ")
    assert " Fix: " in str(err) and err.fix
    assert re.search(pattern, err.problem), err.problem
    if digest is not None:
        assert _sha(path) == digest  # never modified


def test_singleton_fourth_dimension_is_squeezed(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((6, 5, 4, 1)).astype(np.float32)
    vol = load_volume(_write(tmp_path / "t.nii.gz", data))
    assert vol.shape == (6, 5, 4) and np.array_equal(vol.data, data[..., 0])
    assert len(vol.zooms) == 3


def test_constant_image_allowed_on_request(tmp_path: Path) -> None:
    path = _write(tmp_path / "mask.nii.gz", np.zeros((4, 4, 4), dtype=np.uint8))
    vol = load_volume(path, allow_constant=True)
    assert vol.data.dtype == np.float32 and not vol.data.any()


def test_in_memory_image_validation_and_copy() -> None:
    data = np.random.default_rng(2).random((5, 5, 5)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    vol = volume_from_image(img)
    assert vol.path is None and vol.zooms == (2.0, 2.0, 3.0)
    vol.data[0, 0, 0] = 99.0
    assert data[0, 0, 0] != 99.0  # no aliasing of the source array
    bad = data.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(MrisrInputError) as info:
        volume_from_image(nib.Nifti1Image(bad, np.eye(4)))
    assert str(info.value).startswith("1 of 125 voxels are not finite")
    zero = nib.Nifti1Image(data, np.eye(4))
    zero.header["pixdim"][3] = 0.0
    with pytest.raises(MrisrInputError, match="voxel sizes"):
        volume_from_image(zero, path="virtual.nii.gz")


def test_singular_sform_is_rejected(tmp_path: Path) -> None:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((5, 5, 5))
    hdr.set_data_dtype(np.float32)
    singular = np.eye(4)
    singular[:3, 2] = 0.0
    hdr.set_qform(np.eye(4), code=1)
    hdr.set_sform(singular, code=1)
    data = np.random.default_rng(3).random((5, 5, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, None, header=hdr), tmp_path / "sing.nii.gz")
    with pytest.raises(MrisrInputError, match="singular") as info:
        load_volume(tmp_path / "sing.nii.gz")
    assert "sing.nii.gz" in str(info.value)


def test_scaling_and_dtype_on_load(tmp_path: Path) -> None:
    raw = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    img = nib.Nifti1Image(raw, np.eye(4), dtype=np.int16)
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    vol = load_volume(tmp_path / "scaled.nii.gz")
    np.testing.assert_array_equal(vol.data, raw * 0.5 + 10.0)
    as_int = load_volume(tmp_path / "scaled.nii.gz", dtype=np.int32)
    assert as_int.data.dtype == np.int32
    np.testing.assert_array_equal(as_int.data, np.rint(raw * 0.5 + 10.0))
    # Saving a volume from a scaled integer file writes unscaled float32.
    back = nib.load(save_volume(vol, tmp_path / "f.nii.gz"))
    assert back.get_data_dtype() == np.float32
    np.testing.assert_array_equal(back.get_fdata(), raw * 0.5 + 10.0)


@pytest.mark.parametrize(("unit", "scale"), [("micron", 1e-3), ("meter", 1e3)])
def test_spatial_units_are_converted_to_mm(tmp_path: Path, unit: str, scale: float) -> None:
    affine = np.diag([0.5, 0.5, 3.0, 1.0]) / np.r_[scale, scale, scale, 1.0]
    affine[:3, 3] = np.array([10.0, -20.0, 30.0]) / scale
    img = nib.Nifti1Image(np.random.default_rng(4).random((4, 4, 4)).astype(np.float32), affine)
    img.header.set_xyzt_units(unit, "sec")
    nib.save(img, tmp_path / "u.nii.gz")
    vol = load_volume(tmp_path / "u.nii.gz")
    np.testing.assert_allclose(vol.zooms, (0.5, 0.5, 3.0), rtol=1e-6)
    np.testing.assert_allclose(vol.affine[:3, 3], (10.0, -20.0, 30.0), rtol=1e-6)
    np.testing.assert_allclose(vol.header.get_best_affine(), vol.affine, rtol=1e-6, atol=1e-6)
    assert vol.header.get_xyzt_units() == ("mm", "sec")
    geom = detect_slice_axis(img)  # in-memory image: converted the same way
    assert geom.axis == 2 and geom.factor == pytest.approx(6.0, rel=1e-6)
    assert geom.separation_mm == pytest.approx(3.0, rel=1e-6)


def test_unknown_units_assume_mm_with_logged_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    img = nib.Nifti1Image(np.random.default_rng(5).random((4, 4, 4)).astype(np.float32), np.diag([1, 1, 4, 1.0]))
    img.header.set_xyzt_units(None, None)
    nib.save(img, tmp_path / "unk.nii.gz")
    with caplog.at_level(logging.WARNING, logger="mrisr.io.nifti"):
        vol = load_volume(tmp_path / "unk.nii.gz")
    assert any("assuming millimetres" in r.getMessage() and "unk.nii.gz" in r.getMessage() for r in caplog.records)
    assert vol.zooms == (1.0, 1.0, 4.0)


def test_nifti2_input_is_accepted(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    affine = _random_oblique_affine(rng)
    nib.save(nib.Nifti2Image(rng.random((5, 4, 3)).astype(np.float32), affine), tmp_path / "n2.nii")
    vol = load_volume(tmp_path / "n2.nii")
    assert type(vol.header) is nib.Nifti1Header
    np.testing.assert_allclose(vol.affine, affine, atol=1e-12)
    assert isinstance(vol.to_nifti(), nib.Nifti1Image)


def test_volume_header_follows_a_new_affine() -> None:
    base = Volume(np.zeros((4, 4, 4), dtype=np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    assert base.zooms == (1.0, 1.0, 1.0)
    assert (int(base.header["sform_code"]), int(base.header["qform_code"])) == (1, 1)
    lr_affine = np.diag([1.0, 1.0, 4.0, 1.0])
    lr = Volume(np.zeros((4, 4, 1), dtype=np.float32), lr_affine, header=base.header)
    assert lr.zooms == (1.0, 1.0, 4.0) and lr.shape == (4, 4, 1)
    assert base.zooms == (1.0, 1.0, 1.0)  # the shared header is not changed
    img = lr.to_nifti()
    assert np.array_equal(img.affine, lr_affine) and img.shape == (4, 4, 1)
    with pytest.raises(ValueError, match="3-D"):
        Volume(np.zeros((4, 4)), np.eye(4))


# --------------------------------------------------------------------------------------------------
# Slice-axis detection: reference cases of docs/physics.md §4 on the shared data


def test_reference_thick_t2_axial() -> None:
    vol = load_volume(_shared("thick/t2_axial_7p5mm_ms.nii.gz"))
    assert vol.shape == (320, 256, 19) and "".join(nib.aff2axcodes(vol.affine)) == "LAS"
    geom = detect_slice_axis(vol)
    assert isinstance(geom, SliceGeometry)
    assert geom.axis == 2 and geom.inplane_axes == (0, 1)
    assert geom.factor == pytest.approx(7.5 / 0.6875, abs=1e-4)
    assert round(geom.factor, 3) == 10.909
    assert geom.separation_mm == pytest.approx(7.5, abs=1e-4)
    assert geom.inplane_spacing_mm == pytest.approx(0.6875, abs=1e-6)
    assert geom.axis_code == "S"


def test_reference_pd_axial_passes_inplane_tolerance() -> None:
    files = sorted((DATA / "brain").glob("pd_axial_2p4mm*.nii*")) if DATA.is_dir() else []
    if not files:
        pytest.skip(f"brain/pd_axial_2p4mm* not found under {DATA}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in-plane difference 0.0015 mm < 0.01 mm: no warning
        geom = detect_slice_axis(load_volume(files[0]))
    assert geom.axis == 2
    assert geom.factor == pytest.approx(2.797, abs=1e-3)
    assert geom.inplane_spacing_mm == pytest.approx(0.8579, abs=1e-4)
    assert 1.0 < geom.inplane_anisotropy < 1.0 + 0.01 / 0.85
    # Full precision, not rounded to 3 decimals.
    assert geom.factor == geom.separation_mm / geom.inplane_spacing_mm and geom.factor != round(geom.factor, 3)


def test_reference_isotropic_spine_needs_explicit_axis() -> None:
    vol = load_volume(_shared("spine_hr/errsm_11/t2.nii.gz"))
    with pytest.raises(MrisrInputError, match="near-isotropic") as info:
        detect_slice_axis(vol)
    assert "t2.nii.gz" in str(info.value) and "axis=0|1|2" in str(info.value)
    geom = detect_slice_axis(vol, axis=2)
    assert geom.axis == 2 and geom.factor == pytest.approx(1.0, abs=1e-6) and geom.axis_code == "R"


def test_reference_mt_fixture() -> None:
    geom = detect_slice_axis(load_volume(_shared("fixtures/mt/mt1.nii.gz")))
    assert geom.axis == 2
    assert geom.factor == pytest.approx(20.1, abs=0.05)
    assert geom.factor == pytest.approx(17.0 / 0.84375, rel=1e-6)


# --------------------------------------------------------------------------------------------------
# Slice-axis detection: synthetic cases


def _geom_volume(zooms: tuple[float, float, float], affine: np.ndarray | None = None) -> Volume:
    aff = np.diag([*zooms, 1.0]) if affine is None else affine
    return Volume(np.zeros((4, 5, 6), dtype=np.float32), aff)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_auto_axis_is_the_coarsest(axis: int) -> None:
    zooms = [0.8, 0.8, 0.8]
    zooms[axis] = 5.0
    geom = detect_slice_axis(_geom_volume(tuple(zooms)))  # type: ignore[arg-type]
    assert geom.axis == axis
    assert geom.inplane_axes == tuple(i for i in range(3) if i != axis)
    # Full precision of the (float32) header zooms, not rounded.
    assert geom.factor == geom.separation_mm / geom.inplane_spacing_mm
    assert geom.factor == pytest.approx(5.0 / 0.8, rel=1e-6)
    assert geom.obliquity_deg == pytest.approx(0.0, abs=1e-9)


def test_min_ratio_boundary_and_explicit_axis() -> None:
    with pytest.raises(MrisrInputError, match="near-isotropic"):
        detect_slice_axis(_geom_volume((1.0, 1.0, 1.19)))
    assert detect_slice_axis(_geom_volume((1.0, 1.0, 1.21))).axis == 2
    assert detect_slice_axis(_geom_volume((1.0, 1.0, 1.19)), min_ratio=1.1).axis == 2
    # Two equally coarse axes are a tie as well.
    with pytest.raises(MrisrInputError, match="near-isotropic"):
        detect_slice_axis(_geom_volume((4.0, 1.0, 4.0)), allow_anisotropic_inplane=True)
    # An explicit axis is always accepted, even when it is not the coarsest.
    geom = detect_slice_axis(_geom_volume((1.0, 1.0, 1.0)), axis=np.int64(0))
    assert geom.axis == 0 and geom.factor == 1.0


@pytest.mark.parametrize("axis", [3, -1, "z", 1.0, True, None])
def test_invalid_axis(axis: object) -> None:
    with pytest.raises(MrisrInputError, match="invalid slice axis"):
        detect_slice_axis(_geom_volume((1.0, 1.0, 5.0)), axis=axis)  # type: ignore[arg-type]


def test_anisotropic_inplane_raises_or_warns() -> None:
    vol = _geom_volume((0.5, 0.6, 4.0))
    with pytest.raises(MrisrInputError, match="anisotropic in-plane"):
        detect_slice_axis(vol)
    with pytest.warns(UserWarning, match=r"ratio 1\.2000.*min = 0\.5"):
        geom = detect_slice_axis(vol, allow_anisotropic_inplane=True)
    assert geom.inplane_spacing_mm == 0.5 and geom.factor == 8.0
    assert geom.inplane_anisotropy == pytest.approx(1.2)
    assert detect_slice_axis(vol, inplane_tolerance_mm=0.2).factor == 8.0


def test_zoom_affine_mismatch_warns_and_trusts_affine() -> None:
    vol = _geom_volume((1.0, 1.0, 3.0))
    vol.header["pixdim"][3] = 5.0  # stale pixdim, the sform still says 3 mm
    with pytest.warns(UserWarning, match="using the affine"):
        geom = detect_slice_axis(vol)
    assert geom.separation_mm == pytest.approx(3.0) and geom.zooms[2] == pytest.approx(3.0)


def test_oblique_permuted_affine_codes_and_obliquity() -> None:
    angle = np.deg2rad(20.0)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)], [0.0, np.sin(angle), np.cos(angle)]])
    # Voxel axis 0 runs inferior->superior (5 mm), axis 1 left (R->L flipped), axis 2 anterior.
    base = np.array([[0.0, -0.7, 0.0], [0.0, 0.0, 0.7], [5.0, 0.0, 0.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ base
    geom = detect_slice_axis(_geom_volume((5.0, 0.7, 0.7), affine))
    assert geom.axis == 0
    assert geom.axis_code == nib.aff2axcodes(affine)[0]
    assert geom.obliquity_deg == pytest.approx(20.0, abs=1e-6)
    assert geom.factor == pytest.approx(5.0 / 0.7, rel=1e-6)


def test_detect_on_unloaded_image_and_4d(tmp_path: Path) -> None:
    path = _write(tmp_path / "lr.nii.gz", np.ones((8, 8, 3), dtype=np.float32), np.diag([0.9, 0.9, 5.0, 1.0]))
    geom = detect_slice_axis(nib.load(path))
    assert geom.axis == 2 and geom.factor == pytest.approx(5.0 / 0.9, rel=1e-6)
    img4 = nib.Nifti1Image(np.ones((8, 8, 3, 2), dtype=np.float32), np.diag([0.9, 0.9, 5.0, 1.0]))
    with pytest.raises(MrisrInputError, match="single 3-D volume"):
        detect_slice_axis(img4)


# --------------------------------------------------------------------------------------------------
# Stored voxel sizes: nibabel repairs zero/negative pixdim on load (zero → 1 mm, negative → absolute value)


def _with_stored_pixdim(path: Path, index: int, value: float) -> Path:
    """Write a valid 1 × 1 × 3 mm volume to ``path``, then set ``pixdim[index]`` in the file's header bytes."""
    data = _smooth((6, 5, 4))
    raw = bytearray(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])).to_bytes())
    raw[76 + 4 * index : 80 + 4 * index] = np.array([value], dtype="<f4").tobytes()  # pixdim: float32[8] at 76
    path.write_bytes(gzip.compress(bytes(raw)) if path.name.endswith(".gz") else bytes(raw))
    return path


@pytest.mark.parametrize("value", [0.0, -2.0, np.nan, np.inf])
@pytest.mark.parametrize("index", [1, 2, 3])
def test_stored_pixdim_must_be_finite_and_positive(tmp_path: Path, index: int, value: float) -> None:
    path = _with_stored_pixdim(tmp_path / f"pixdim{index}.nii.gz", index, value)
    if np.isfinite(value):
        # The repair this guards against: nibabel alone reads a positive voxel size.
        assert nib.load(path).header.get_zooms()[index - 1] > 0
    digest = _sha(path)
    with pytest.raises(MrisrInputError) as info:
        load_volume(path)
    err = info.value
    assert err.path == str(path) and f"pixdim[{index}]" in err.problem and "voxel sizes" in err.problem
    assert "header" in err.fix and len(str(err).splitlines()) == 1
    assert _sha(path) == digest


def test_stored_pixdim_checked_in_uncompressed_files_and_valid_ones_pass(tmp_path: Path) -> None:
    with pytest.raises(MrisrInputError, match=r"pixdim\[3\] = 0"):
        load_volume(_with_stored_pixdim(tmp_path / "zero.nii", 3, 0.0))
    # A positive stored voxel size passes, and the volume keeps its 3 mm slices.
    vol = load_volume(_with_stored_pixdim(tmp_path / "ok.nii", 3, 3.0))
    assert vol.zooms == pytest.approx((1.0, 1.0, 3.0))


# --------------------------------------------------------------------------------------------------
# The one atomic writer (mrisr.core.atomic): mode, durability, failures, output folders


def _writers(tmp: Path) -> dict[str, tuple[Path, object]]:
    """One call per output kind: name → (path it writes, zero-argument writer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrisr.core import atomic

    def figure(path: Path) -> None:
        fig = plt.figure(figsize=(1, 1))
        try:
            atomic.save_figure_atomic(fig, path, dpi=20)
        finally:
            plt.close(fig)

    paths = {k: tmp / f"out.{k}" for k in ("json", "csv", "txt", "png")} | {"nii.gz": tmp / "out.nii.gz"}
    return {
        "json": (paths["json"], lambda: atomic.write_json_atomic({"a": 1}, paths["json"])),
        "csv": (paths["csv"], lambda: atomic.write_rows_atomic([{"a": 1}], paths["csv"], fields=["a"])),
        "txt": (paths["txt"], lambda: atomic.write_text_atomic("x", paths["txt"])),
        "png": (paths["png"], lambda: figure(paths["png"])),
        "nii.gz": (paths["nii.gz"], lambda: save_volume(np.ones((2, 2, 2)), paths["nii.gz"], affine=np.eye(4))),
    }


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        for name, (path, write) in _writers(tmp_path).items():
            write()
            assert path.stat().st_mode & 0o777 == 0o666 & ~umask, name
    finally:
        os.umask(previous)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_every_write_is_synced_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append("folder" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    for name, (_, write) in _writers(tmp_path).items():
        synced.clear()
        write()
        assert synced.count("file") == 1, name
        if os.path.isdir("/proc/self/fd"):
            assert synced.count("folder") == 1, name


def test_failed_text_write_keeps_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    from mrisr.core.atomic import write_atomic, write_text_atomic

    target = write_text_atomic("old", tmp_path / "notes.txt")

    def broken(handle: object) -> None:
        handle.write("half of the new ")  # type: ignore[attr-defined]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, broken)
    assert target.read_text() == "old\n" and _listing(tmp_path) == {"notes.txt"}


@pytest.mark.parametrize("kind", ["json", "csv", "txt", "png", "nii.gz"])
def test_output_folder_under_a_file_is_one_clear_error(tmp_path: Path, kind: str) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder is needed\n")
    path, _ = _writers(tmp_path)[kind]
    nested = blocker / "sub" / path.name
    writers = _writers(blocker / "sub")
    with pytest.raises(MrisrInputError) as info:
        writers[kind][1]()
    err = info.value
    assert err.path == str(nested.parent) and str(blocker) in err.problem and "is a file" in err.problem
    assert "folder" in err.fix and len(str(err).splitlines()) == 1
    assert blocker.read_text() == "a file where a folder is needed\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
@pytest.mark.parametrize("kind", ["json", "csv", "txt", "png", "nii.gz"])
def test_read_only_output_folder_is_one_clear_error(tmp_path: Path, kind: str) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for folder in (locked, locked / "new"):  # writing into it, and creating a folder inside it
            with pytest.raises(MrisrInputError, match=r"permission denied|not writable") as info:
                _writers(folder)[kind][1]()
            assert str(locked) in str(info.value) and len(str(info.value).splitlines()) == 1
    finally:
        locked.chmod(0o755)
    assert _listing(locked) == set()


def test_refused_folder_and_temp_file_creation_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The errors of the system calls themselves (as for a read-only or full file system, whatever the user)."""
    from mrisr.core import atomic

    def refuse_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    with monkeypatch.context() as patch:
        patch.setattr(Path, "mkdir", refuse_mkdir)
        with pytest.raises(MrisrInputError, match=r"cannot create the output folder \(Permission denied\)") as info:
            atomic.write_text_atomic("x", tmp_path / "new" / "a.txt")
        assert info.value.path == str(tmp_path / "new")
    real_open = os.open

    def refuse_temp(path: object, flags: int, *args: object) -> int:
        if flags & os.O_CREAT:
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_temp)
    for kind in ("json", "nii.gz"):
        with pytest.raises(MrisrInputError, match="Read-only file system") as info:
            _writers(tmp_path)[kind][1]()
        assert info.value.path == str(tmp_path) and "out." in info.value.problem
    assert _listing(tmp_path) == set()


def test_check_output_folder_refuses_early(tmp_path: Path) -> None:
    from mrisr.core.atomic import check_output_folder

    (tmp_path / "file").write_text("x")
    check_output_folder(None)
    check_output_folder(tmp_path / "new" / "deeper" / "out.nii.gz")  # creatable: fine, nothing created
    assert _listing(tmp_path) == {"file"}
    with pytest.raises(MrisrInputError, match="is a file"):
        check_output_folder(tmp_path / "file" / "out.csv")
