"""Pure helpers for BIDS derivatives of super-resolved images (docs/qc.md §5).

The Brain Imaging Data Structure (BIDS; Gorgolewski et al., *Sci. Data* 2016) names a file
``sub-<label>[_ses-<label>][_<key>-<value>…]_<suffix><extension>`` inside ``sub-<label>/[ses-<label>/]<datatype>/``.
An SR output of ``<bids_root>/sub-01/ses-1/anat/sub-01_ses-1_acq-ax_T2w.nii.gz`` is written as::

    <output_dir>/dataset_description.json                       DatasetType "derivative", GeneratedBy mrisr
    <output_dir>/sub-01/ses-1/anat/sub-01_ses-1_acq-ax_rec-SR_T2w.nii.gz
    <output_dir>/sub-01/ses-1/anat/sub-01_ses-1_acq-ax_rec-SR_T2w.json   Sources, SliceThickness, … and "mrisr"

The ``rec`` (reconstruction) entity marks the output, not ``desc``: super-resolution reconstructs the image on a new
grid, which is what ``rec`` is defined for, and ``rec`` is allowed on every anatomical suffix, so the derivative name
is also a valid raw-data name (``desc`` is not) and tools that index raw datasets (pybids, the Spinal Cord Toolbox's
batch scripts) read the derivatives folder as a dataset of the same subjects. A source that already has ``rec-<x>``
gets ``rec-<x>SR``: the original label is kept, so two reconstructions of one acquisition (``rec-norm``,
``rec-orig``) never map to the same output, and the label stays alphanumeric (the ``+`` concatenation that BIDS
allows since 2025 would read better, ``rec-norm+SR``, but earlier validators and parsers reject it). Entities are
written in the order of the specification's entity table (:data:`ENTITY_ORDER`).

Everything here is pure (no file system access) except :func:`is_bids_dataset` (reads ``dataset_description.json``)
and :func:`write_dataset_description` (writes it, atomically).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from mrisr.core.atomic import write_json_atomic
from mrisr.core.errors import MrisrInputError
from mrisr.io.nifti import Volume

__all__ = [
    "BIDS_VERSION",
    "DATATYPES",
    "ENTITY_ORDER",
    "BIDSName",
    "bids_uri",
    "derivative_path",
    "derivative_sidecar",
    "is_bids_dataset",
    "parse_bids_name",
    "select_participants",
    "write_dataset_description",
]

#: BIDS version declared in ``dataset_description.json`` (the names written are valid from 1.10 on).
BIDS_VERSION = "1.10.0"

#: Entity keys in the order the specification writes them (the entity table of the BIDS schema, 1.11; the tests
#: compare it with the schema that ships with ``bidsschematools`` when that is installed).
ENTITY_ORDER: tuple[str, ...] = (
    "sub", "tpl", "ses", "cohort", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain", "rec",
    "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space", "split", "recording", "chunk",
    "atlas", "seg", "scale", "res", "den", "label", "desc",
)  # fmt: skip

#: Entities whose value is an index (digits) rather than a label.
INDEX_ENTITIES = frozenset({"run", "echo", "flip", "inv", "split", "chunk"})

#: Datatype folders of the specification.
DATATYPES = frozenset(
    {"anat", "beh", "dwi", "eeg", "fmap", "func", "ieeg", "meg", "micr", "motion", "mrs", "nirs", "perf", "pet"}
)

_LABEL = re.compile(r"^[0-9a-zA-Z+]+$")
_INDEX = re.compile(r"^[0-9]+$")
_SUFFIX = re.compile(r"^[0-9a-zA-Z]+$")
_EXTENSION = re.compile(r"^(\.[0-9a-zA-Z]+)+$")


@dataclass(frozen=True)
class BIDSName:
    """The parts of a BIDS file name.

    Attributes:
        entities: ``{key: value}`` in the order of the name (e.g. ``{"sub": "01", "acq": "ax"}``).
        suffix: e.g. ``T2w``.
        extension: everything from the first dot, e.g. ``.nii.gz`` (may be empty).
    """

    entities: dict[str, str]
    suffix: str
    extension: str

    @property
    def subject(self) -> str:
        """The ``sub`` label."""
        return self.entities["sub"]

    @property
    def session(self) -> str | None:
        """The ``ses`` label, ``None`` when absent."""
        return self.entities.get("ses")

    def with_entities(self, **changes: str | None) -> BIDSName:
        """A copy with entities set (``None`` removes one)."""
        entities = dict(self.entities)
        for key, value in changes.items():
            if value is None:
                entities.pop(key, None)
            else:
                entities[key] = value
        return BIDSName(entities, self.suffix, self.extension)

    def filename(self, extension: str | None = None) -> str:
        """The file name, entities in :data:`ENTITY_ORDER` (``extension`` replaces the name's own)."""
        ordered = sorted(self.entities.items(), key=lambda item: ENTITY_ORDER.index(item[0]))
        stem = "_".join(f"{key}-{value}" for key, value in ordered)
        return f"{stem}_{self.suffix}{self.extension if extension is None else extension}"


def parse_bids_name(path: str | os.PathLike[str]) -> BIDSName:
    """Parse the entities, suffix and extension of a BIDS file name (the folder part of ``path`` is ignored).

    Args:
        path: e.g. ``sub-01/anat/sub-01_ses-1_acq-ax_run-2_T2w.nii.gz``.

    Returns:
        The :class:`BIDSName`.

    Raises:
        MrisrInputError: no ``sub`` entity first, an entity that is not ``key-value``, an unknown or repeated key,
            a label with characters other than letters, digits and ``+`` (an index: digits only), or a missing or
            non-alphanumeric suffix.
    """
    name = PurePath(os.fspath(path)).name
    stem, dot, rest = name.partition(".")
    extension = dot + rest
    fix = "name the file as BIDS does: sub-<label>[_ses-<label>][_<key>-<value>…]_<suffix>.nii.gz"
    if extension and not _EXTENSION.match(extension):
        raise MrisrInputError(path, f"not a BIDS file name: bad extension {extension!r}", fix)
    parts = stem.split("_")
    if len(parts) < 2:
        raise MrisrInputError(path, "not a BIDS file name: no <key>-<value>_<suffix> parts", fix)
    *pairs, suffix = parts
    if not _SUFFIX.match(suffix):
        raise MrisrInputError(path, f"not a BIDS file name: suffix {suffix!r} is not alphanumeric", fix)
    entities: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("-")
        if not sep or not key or not value:
            raise MrisrInputError(path, f"not a BIDS file name: {pair!r} is not <key>-<value>", fix)
        if key not in ENTITY_ORDER:
            raise MrisrInputError(path, f"not a BIDS file name: unknown entity {key!r}", fix)
        if key in entities:
            raise MrisrInputError(path, f"not a BIDS file name: entity {key!r} appears twice", fix)
        pattern = _INDEX if key in INDEX_ENTITIES else _LABEL
        if not pattern.match(value):
            allowed = "digits" if key in INDEX_ENTITIES else "letters, digits and +"
            raise MrisrInputError(path, f"not a BIDS file name: {key}-{value} (a {key} value has {allowed} only)", fix)
        entities[key] = value
    if next(iter(entities), None) != "sub":
        raise MrisrInputError(path, "not a BIDS file name: it must start with sub-<label>", fix)
    return BIDSName(entities, suffix, extension)


def _relative_to_root(source: Path, bids_root: Path) -> PurePath:
    try:
        return source.resolve().relative_to(bids_root.resolve())
    except ValueError:
        try:
            return source.absolute().relative_to(bids_root.absolute())
        except ValueError:
            raise MrisrInputError(
                source, f"is not inside the BIDS dataset {bids_root}", "pass the dataset that holds the file"
            ) from None


def derivative_path(
    source: str | os.PathLike[str],
    bids_root: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    rec: str = "SR",
    extension: str = ".nii.gz",
) -> Path:
    """Path of the SR derivative of a BIDS source image (module doc).

    ``<output_dir>/sub-<s>/[ses-<t>/]<datatype>/<source entities with rec-SR>_<suffix><extension>``.

    Args:
        source: the input image inside ``bids_root``, e.g. ``<root>/sub-01/anat/sub-01_T2w.nii.gz``.
        bids_root: the raw dataset's root folder.
        output_dir: the derivatives dataset's root (e.g. ``<root>/derivatives/mrisr``).
        rec: reconstruction label added (or appended to the source's own ``rec`` label: ``rec-normSR``).
        extension: of the returned path (``.json`` for the sidecar).

    Returns:
        The derivative's path.

    Raises:
        MrisrInputError: a source outside ``bids_root``, not named as BIDS, not in ``sub-<s>/[ses-<t>/]<datatype>/``
            matching its entities, or a ``rec`` label with characters other than letters and digits.
    """
    if not re.match(r"^[0-9a-zA-Z]+$", rec):
        raise MrisrInputError(None, f"rec label {rec!r} must be letters and digits", "choose e.g. rec='SR'")
    src = Path(source)
    name = parse_bids_name(src)
    relative = _relative_to_root(src, Path(bids_root))
    folders = relative.parts[:-1]
    expected = (f"sub-{name.subject}",) + ((f"ses-{name.session}",) if name.session else ())
    if len(folders) != len(expected) + 1 or tuple(folders[:-1]) != expected or folders[-1] not in DATATYPES:
        layout = "/".join((*expected, "<datatype>"))
        raise MrisrInputError(
            src,
            f"is not in the BIDS folder its name implies ({layout}/, datatype one of anat, dwi, …)",
            "fix the layout",
        )
    own = name.entities.get("rec")
    derived = name.with_entities(rec=f"{own}{rec}" if own else rec)
    return Path(output_dir).joinpath(*folders, derived.filename(extension))


def bids_uri(source: str | os.PathLike[str], bids_root: str | os.PathLike[str], dataset: str = "raw") -> str:
    """BIDS URI of a file of a linked dataset: ``bids:<dataset>:<path relative to its root>`` (POSIX separators).

    The dataset name must be a key of ``DatasetLinks`` in the citing dataset's ``dataset_description.json``
    (:func:`write_dataset_description` links ``raw``).
    """
    relative = _relative_to_root(Path(source), Path(bids_root))
    return f"bids:{dataset}:{relative.as_posix()}"


def derivative_sidecar(
    source: str | os.PathLike[str],
    bids_root: str | os.PathLike[str],
    sr: Volume,
    axis: int,
    record: Mapping[str, Any],
    source_sidecar: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """JSON sidecar of an SR derivative.

    The source sidecar's fields (acquisition parameters such as ``EchoTime``) are kept; ``SliceThickness`` and
    ``SpacingBetweenSlices`` become the SR grid's spacing along the through-plane axis — the nominal thickness of the
    reconstructed slices, not a measured resolution (the effective resolution of an SR image is coarser and
    unknown); ``Sources`` is the source as a BIDS URI; ``mrisr`` is the run's record (model, weights, thickness used,
    forward consistency, …).

    Args:
        source: the input image inside ``bids_root``.
        bids_root: the raw dataset's root.
        sr: the SR output (its affine gives the spacing).
        axis: through-plane voxel axis of ``sr``.
        record: what mrisr did, JSON-serialisable.
        source_sidecar: the source's own sidecar content, or ``None``.

    Returns:
        The sidecar as a dict, ready for :func:`json.dump`.
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    spacing = float(np.linalg.norm(sr.affine[:3, axis]))
    sidecar = {key: value for key, value in (source_sidecar or {}).items() if key not in ("Sources", "mrisr")}
    sidecar.update(
        Sources=[bids_uri(source, bids_root)],
        SliceThickness=round(spacing, 6),
        SpacingBetweenSlices=round(spacing, 6),
        mrisr=dict(record),
    )
    return sidecar


def write_dataset_description(
    output_dir: str | os.PathLike[str],
    version: str,
    model: str,
    weights_sha256: str | None,
    command: str | Sequence[str],
    bids_root: str | os.PathLike[str] | None = None,
    code_url: str | None = None,
) -> Path:
    """Write ``<output_dir>/dataset_description.json`` of the derivatives dataset (atomically).

    ``DatasetType`` "derivative"; ``GeneratedBy`` [{Name "mrisr", Version, Description (model, weights digest and the
    command), CodeURL when given}]; with ``bids_root``: ``DatasetLinks`` {"raw": the raw dataset, relative to
    ``output_dir``} (the dataset the sidecars' ``bids:raw:`` URIs point into) and ``SourceDatasets``. The same
    model, digest and command are also under the custom key ``mrisr`` for programs.

    An existing description written by mrisr for another model, weights or version is refused: one derivatives
    folder holds the outputs of one model.

    Args:
        output_dir: the derivatives dataset's root.
        version: mrisr version.
        model: model name or checkpoint.
        weights_sha256: SHA-256 of the weights file, ``None`` for models without weights (interpolation).
        command: the command line (a string or its arguments).
        bids_root: the raw dataset, or ``None``.
        code_url: URL of the code, or ``None``.

    Returns:
        The written file.

    Raises:
        MrisrInputError: an existing description of another model, weights or mrisr version, or one that cannot be
            read; an output folder that cannot be written.
    """
    out = Path(output_dir)
    command_text = command if isinstance(command, str) else " ".join(str(c) for c in command)
    ours = {"model": str(model), "weights_sha256": weights_sha256, "version": str(version), "command": command_text}
    target = out / "dataset_description.json"
    if target.exists():
        try:
            existing = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise MrisrInputError(target, f"cannot be read ({err})", "repair or delete it") from err
        before = existing.get("mrisr") if isinstance(existing, dict) else None
        if isinstance(before, dict):
            differ = [k for k in ("model", "weights_sha256", "version") if before.get(k) != ours[k]]
            if differ:
                changes = ", ".join(f"{k} {before.get(k)!r} → {ours[k]!r}" for k in differ)
                raise MrisrInputError(
                    target,
                    f"this derivatives folder holds the outputs of another run ({changes})",
                    "choose another output folder for this model",
                )
    weights = f"weights sha256 {weights_sha256}" if weights_sha256 else "no weights"
    generated: dict[str, Any] = {
        "Name": "mrisr",
        "Version": str(version),
        "Description": f"Through-plane super-resolution with model {model} ({weights}). Command: {command_text}",
    }
    if code_url:
        generated["CodeURL"] = code_url
    description: dict[str, Any] = {
        "Name": "mrisr super-resolution",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
    }
    if bids_root is not None:
        link = Path(os.path.relpath(Path(bids_root).absolute(), out.absolute())).as_posix()
        description["DatasetLinks"] = {"raw": link}
        description["SourceDatasets"] = [{"URL": link}]
    description["mrisr"] = ours
    return write_json_atomic(description, target)


def is_bids_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the root of a BIDS dataset: a folder with a ``dataset_description.json``.

    Raises:
        MrisrInputError: the description exists but is not a JSON object with ``BIDSVersion`` (a broken BIDS dataset
            must not pass as a plain folder of images).
    """
    root = Path(path)
    description = root / "dataset_description.json"
    if not root.is_dir() or not description.is_file():
        return False
    try:
        content = json.loads(description.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MrisrInputError(description, f"cannot be read as JSON ({err})", "repair the dataset description") from err
    if not isinstance(content, dict) or "BIDSVersion" not in content:
        raise MrisrInputError(description, "has no BIDSVersion", 'add e.g. "BIDSVersion": "1.10.0"')
    return True


def _subject_of(path: str | os.PathLike[str]) -> str | None:
    """The ``sub`` label of a BIDS path (from its name, else from a ``sub-<label>`` folder), ``None`` without one."""
    try:
        return parse_bids_name(path).subject
    except MrisrInputError:
        pass
    for part in reversed(PurePath(os.fspath(path)).parts[:-1]):
        if part.startswith("sub-") and _LABEL.match(part[4:]):
            return part[4:]
    return None


def select_participants(
    files: Iterable[str | os.PathLike[str]], participant_label: str | Sequence[str] | None
) -> list[Path]:
    """The files of the given participants (BIDS-App ``--participant-label``), in their order.

    Args:
        files: candidate images.
        participant_label: labels with or without ``sub-`` (``"01"``, ``"sub-01"``, or a list); ``None`` or empty:
            every file.

    Returns:
        The selected files.

    Raises:
        MrisrInputError: a label that is not a valid BIDS label, or one that matches no file.
    """
    paths = [Path(f) for f in files]
    if not participant_label:
        return paths
    labels = [participant_label] if isinstance(participant_label, str) else list(participant_label)
    wanted = []
    for label in labels:
        bare = str(label).removeprefix("sub-")
        if not _LABEL.match(bare):
            raise MrisrInputError(None, f"participant label {label!r} is not a BIDS label", "pass e.g. 01 or sub-01")
        wanted.append(bare)
    selected = [p for p in paths if _subject_of(p) in wanted]
    found = {_subject_of(p) for p in selected}
    missing = [w for w in wanted if w not in found]
    if missing:
        raise MrisrInputError(
            None,
            f"no input image of participant(s) {', '.join('sub-' + m for m in missing)}",
            "check the labels against the dataset's sub-<label> folders",
        )
    return selected
