"""BIDS derivative helpers (mrisr.io.bids): names, layout, sidecars, dataset description, participant selection."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from mrisr.core.errors import MrisrInputError
from mrisr.io.bids import (
    BIDS_VERSION,
    ENTITY_ORDER,
    derivative_path,
    derivative_sidecar,
    is_bids_dataset,
    parse_bids_name,
    select_participants,
    write_dataset_description,
)
from mrisr.io.nifti import Volume

#: A raw name with its entities out of the specification's order (accepted; the derivative puts them in order).
OUT_OF_ORDER = "sub-01/anat/sub-01_run-1_acq-ax_T2starw.nii"

#: Raw images (relative to the dataset root) and the derivative each must map to (relative to the output folder).
CASES = [
    ("sub-01/anat/sub-01_T2w.nii.gz", "sub-01/anat/sub-01_rec-SR_T2w.nii.gz"),
    ("sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz", "sub-01/ses-2/anat/sub-01_ses-2_rec-SR_T1w.nii.gz"),
    ("sub-ms7/anat/sub-ms7_acq-ax_run-2_T2w.nii.gz", "sub-ms7/anat/sub-ms7_acq-ax_rec-SR_run-2_T2w.nii.gz"),
    (OUT_OF_ORDER, "sub-01/anat/sub-01_acq-ax_rec-SR_run-1_T2starw.nii.gz"),
    ("sub-01/anat/sub-01_rec-norm_T2w.nii.gz", "sub-01/anat/sub-01_rec-normSR_T2w.nii.gz"),
    (
        "sub-02/anat/sub-02_acq-T1w_flip-2_mt-off_MTS.nii.gz",
        "sub-02/anat/sub-02_acq-T1w_rec-SR_flip-2_mt-off_MTS.nii.gz",
    ),
    ("sub-02/anat/sub-02_flip-1_mt-on_MTS.nii.gz", "sub-02/anat/sub-02_rec-SR_flip-1_mt-on_MTS.nii.gz"),
]


def _raw(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def check_bids_name(relative: str) -> list[str]:
    """Problems of a derivative path against the BIDS naming rules (empty when it follows them).

    Rules: ``sub-<label>/[ses-<label>/]anat/<name>``; the name is ``<key>-<value>`` pairs joined by ``_``, then
    ``_<suffix><extension>``; the first pair is ``sub``, keys are known entities in the specification's order, each at
    most once; labels are letters and digits, indices digits; the folders match the ``sub``/``ses`` values; suffix
    alphanumeric; extension ``.nii.gz`` or ``.json``.
    """
    problems = []
    parts = PurePosixPath(relative).parts
    name = parts[-1]
    match = re.fullmatch(r"(?P<stem>[^.]+)(?P<ext>\..+)", name)
    if match is None or match["ext"] not in (".nii.gz", ".json"):
        return [f"{name}: extension"]
    *pairs, suffix = match["stem"].split("_")
    if not re.fullmatch(r"[A-Za-z0-9]+", suffix):
        problems.append(f"suffix {suffix!r}")
    keys = []
    values = {}
    for pair in pairs:
        if not re.fullmatch(r"[a-z]+-[A-Za-z0-9]+", pair):
            problems.append(f"pair {pair!r}")
            continue
        key, value = pair.split("-")
        keys.append(key)
        values[key] = value
        if key in ("run", "echo", "flip", "inv") and not value.isdigit():
            problems.append(f"index {pair!r}")
    if not keys or keys[0] != "sub":
        problems.append("does not start with sub-")
    if any(k not in ENTITY_ORDER for k in keys):
        problems.append(f"unknown key in {keys}")
    elif [ENTITY_ORDER.index(k) for k in keys] != sorted({ENTITY_ORDER.index(k) for k in keys}):
        problems.append(f"entity order or repetition {keys}")
    expected_folders = [f"sub-{values.get('sub')}"] + ([f"ses-{values['ses']}"] if "ses" in values else []) + ["anat"]
    if list(parts[:-1]) != expected_folders:
        problems.append(f"folders {parts[:-1]} != {expected_folders}")
    return problems


def test_naming_rule_checker_catches_violations():
    assert check_bids_name("sub-01/anat/sub-01_rec-SR_T2w.nii.gz") == []
    for bad in (
        "sub-01/anat/sub-01_rec-SR_acq-ax_T2w.nii.gz",  # order
        "sub-01/anat/sub-01_rec-S_R_T2w.nii.gz",  # not key-value
        "sub-01/anat/rec-SR_sub-01_T2w.nii.gz",  # sub not first
        "sub-02/anat/sub-01_rec-SR_T2w.nii.gz",  # folder
        "sub-01/anat/sub-01_rec-SR_T2w.nii.zip",  # extension
        "sub-01/anat/sub-01_run-a_T2w.nii.gz",  # index
    ):
        assert check_bids_name(bad), bad


def test_parse_bids_name():
    name = parse_bids_name("/data/sub-01/ses-2/anat/sub-01_ses-2_acq-ax_run-3_T2w.nii.gz")
    assert name.entities == {"sub": "01", "ses": "2", "acq": "ax", "run": "3"}
    assert list(name.entities) == ["sub", "ses", "acq", "run"]
    assert (name.suffix, name.extension, name.subject, name.session) == ("T2w", ".nii.gz", "01", "2")
    assert parse_bids_name("sub-x_T1w.json").extension == ".json"
    assert parse_bids_name("sub-x_acq-a+b_T1w.nii").entities["acq"] == "a+b"
    assert parse_bids_name("sub-01_T2w").extension == ""


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("T2w.nii.gz", "no <key>-<value>"),
        ("ses-1_sub-01_T2w.nii.gz", "must start with sub-"),
        ("sub-01_foo-1_T2w.nii.gz", "unknown entity 'foo'"),
        ("sub-01_acq-a_acq-b_T2w.nii.gz", "appears twice"),
        ("sub-01_acq-a-b_T2w.nii.gz", "letters, digits and +"),
        ("sub-01_run-x_T2w.nii.gz", "digits only"),
        ("sub-01_acq_T2w.nii.gz", "is not <key>-<value>"),
        ("sub-01_T2-w.nii.gz", "suffix"),
    ],
)
def test_parse_bids_name_refuses_bad_names(name: str, problem: str):
    with pytest.raises(MrisrInputError, match=re.escape(problem)):
        parse_bids_name(name)


@pytest.mark.parametrize(("raw", "derived"), CASES)
def test_derivative_path_layout(tmp_path: Path, raw: str, derived: str):
    root, out = tmp_path / "bids", tmp_path / "bids" / "derivatives" / "mrisr"
    path = derivative_path(_raw(root, raw), root, out)
    assert path == out / derived
    assert check_bids_name(path.relative_to(out).as_posix()) == []
    sidecar = derivative_path(root / raw, root, out, extension=".json")
    assert sidecar == out / derived.replace(".nii.gz", ".json")


def test_derivative_path_keeps_two_reconstructions_apart(tmp_path: Path):
    root = tmp_path / "bids"
    a = derivative_path(_raw(root, "sub-01/anat/sub-01_rec-norm_T2w.nii.gz"), root, tmp_path / "out")
    b = derivative_path(_raw(root, "sub-01/anat/sub-01_rec-orig_T2w.nii.gz"), root, tmp_path / "out")
    assert a != b


def test_derivative_path_refusals(tmp_path: Path):
    root = tmp_path / "bids"
    outside = tmp_path / "elsewhere" / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    with pytest.raises(MrisrInputError, match="not inside the BIDS dataset"):
        derivative_path(outside, root, tmp_path / "out")
    with pytest.raises(MrisrInputError, match="not in the BIDS folder"):
        derivative_path(_raw(root, "sub-02/anat/sub-01_T2w.nii.gz"), root, tmp_path / "out")
    with pytest.raises(MrisrInputError, match="not in the BIDS folder"):
        derivative_path(_raw(root, "sub-01/sub-01_T2w.nii.gz"), root, tmp_path / "out")
    with pytest.raises(MrisrInputError, match="rec label"):
        derivative_path(_raw(root, "sub-01/anat/sub-01_T2w.nii.gz"), root, tmp_path / "out", rec="S-R")


def test_names_pass_the_bids_validator(tmp_path: Path):
    validator = pytest.importorskip("bids_validator", reason="bids-validator not installed (pip install .[dev])")
    check = validator.BIDSValidator()
    root, out = tmp_path / "bids", tmp_path / "out"
    for raw, _ in CASES:
        assert check.is_bids(f"/{raw}") == (raw != OUT_OF_ORDER), raw  # the other sources are valid raw names
        for extension in (".nii.gz", ".json"):
            relative = derivative_path(_raw(root, raw), root, out, extension=extension).relative_to(out)
            assert check.is_bids(f"/{relative.as_posix()}"), relative
    # The validator discriminates: the same names with the entities out of order, or with desc-, are refused.
    assert not check.is_bids("/sub-01/anat/sub-01_rec-SR_acq-ax_T2w.nii.gz")
    assert not check.is_bids("/sub-01/anat/sub-01_desc-SR_T2w.nii.gz")
    assert check.is_bids("/dataset_description.json")


def test_entity_order_matches_the_bids_schema():
    schema_module = pytest.importorskip("bidsschematools.schema", reason="bidsschematools not installed")
    schema = schema_module.load_schema()
    order = [schema["objects"]["entities"][name]["name"] for name in schema["rules"]["entities"]]
    assert tuple(order) == ENTITY_ORDER


def _sr_volume(spacing_z: float = 0.5) -> Volume:
    affine = np.diag([0.5, 0.5, spacing_z, 1.0])
    affine[:3, :3] = affine[:3, :3][:, [0, 2, 1]]  # through-plane axis 1 points along z
    return Volume(np.ones((4, 6, 5), dtype=np.float32), affine)


def test_derivative_sidecar(tmp_path: Path):
    root = tmp_path / "bids"
    source = _raw(root, "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz")
    record = {"model": "cubic", "thickness_mm": 7.5}
    source_sidecar = {"EchoTime": 0.1, "SliceThickness": 7.5, "SpacingBetweenSlices": 7.5, "Sources": ["x"]}
    sidecar = derivative_sidecar(source, root, _sr_volume(0.6875), 1, record, source_sidecar)
    assert sidecar["Sources"] == ["bids:raw:sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz"]
    assert sidecar["SliceThickness"] == sidecar["SpacingBetweenSlices"] == 0.6875
    assert sidecar["EchoTime"] == 0.1
    assert sidecar["mrisr"] == record
    json.dumps(sidecar)
    assert derivative_sidecar(source, root, _sr_volume(0.6875), 0, record)["SliceThickness"] == 0.5


def test_write_dataset_description(tmp_path: Path):
    root, out = tmp_path / "bids", tmp_path / "bids" / "derivatives" / "mrisr"
    path = write_dataset_description(out, "0.1.0", "cubic", None, ["infer.py", "model=cubic"], bids_root=root)
    content = json.loads(path.read_text())
    assert path == out / "dataset_description.json"
    assert content["DatasetType"] == "derivative" and content["BIDSVersion"] == BIDS_VERSION
    (generated,) = content["GeneratedBy"]
    assert generated["Name"] == "mrisr" and generated["Version"] == "0.1.0"
    assert "cubic" in generated["Description"] and "infer.py model=cubic" in generated["Description"]
    assert (out / content["DatasetLinks"]["raw"]).resolve() == root.resolve()
    assert content["mrisr"]["model"] == "cubic" and content["mrisr"]["weights_sha256"] is None
    # The same model again (another command line) updates it; another model or weights is refused.
    digest = "ab" * 32
    write_dataset_description(out, "0.1.0", "cubic", None, "infer.py model=cubic seed=1", code_url="https://x.org")
    assert json.loads(path.read_text())["GeneratedBy"][0]["CodeURL"] == "https://x.org"
    with pytest.raises(MrisrInputError, match="another run"):
        write_dataset_description(out, "0.1.0", "smore", digest, "infer.py model=smore")
    path.write_text("{not json")
    with pytest.raises(MrisrInputError, match="cannot be read"):
        write_dataset_description(out, "0.1.0", "cubic", None, "x")


def test_is_bids_dataset(tmp_path: Path):
    assert not is_bids_dataset(tmp_path)
    assert not is_bids_dataset(tmp_path / "missing")
    (tmp_path / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.10.0"}))
    assert is_bids_dataset(tmp_path)
    (tmp_path / "dataset_description.json").write_text(json.dumps({"Name": "x"}))
    with pytest.raises(MrisrInputError, match="BIDSVersion"):
        is_bids_dataset(tmp_path)
    (tmp_path / "dataset_description.json").write_text("[")
    with pytest.raises(MrisrInputError, match="cannot be read"):
        is_bids_dataset(tmp_path)


def test_select_participants():
    files = [
        Path("bids/sub-01/anat/sub-01_T2w.nii.gz"),
        Path("bids/sub-02/anat/sub-02_T2w.nii.gz"),
        Path("bids/sub-01/ses-2/anat/sub-01_ses-2_T2w.nii.gz"),
        Path("bids/sub-10/anat/scan.nii.gz"),  # subject from the folder
        Path("other/scan.nii.gz"),  # no subject
    ]
    assert select_participants(files, None) == files
    assert select_participants(files, []) == files
    assert select_participants(files, "01") == [files[0], files[2]]
    assert select_participants(files, "sub-01") == [files[0], files[2]]
    assert select_participants(files, ["sub-02", "10"]) == [files[1], files[3]]
    with pytest.raises(MrisrInputError, match="sub-03"):
        select_participants(files, ["01", "03"])
    with pytest.raises(MrisrInputError, match="not a BIDS label"):
        select_participants(files, "0_1")
