"""Atomic, durable file writing: the one implementation behind every output of mrisr (NIfTI, JSON, CSV, text, PNG).

Each output goes to a temporary file in the target folder, is flushed to disk (``os.fsync``) and renamed over the
target in one step; the folder is then synced too, so that the rename itself survives a crash where the platform
supports it. A reader (or a resumed batch) therefore sees either the previous file or the complete new one, never a
partial write; the temporary file is removed when writing fails. Files get the mode of a normal ``open``
(``0o666`` minus the umask), not the owner-only mode of :func:`tempfile.mkstemp`.

An output folder that cannot be created or written raises :class:`~mrisr.core.errors.MrisrInputError` naming it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

#: Attempts at a fresh temporary name before giving up (names carry 48 random bits).
_NAME_ATTEMPTS = 100


_FOLDER_FIX = "choose an output path in a folder you can write to"


def _output_error(path: Path, problem: str, fix: str = _FOLDER_FIX) -> Exception:
    from mrisr.core.errors import MrisrInputError

    return MrisrInputError(path, problem, fix)


def _folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written to, as far as can be told without writing; ``None`` if it can."""
    existing = next((p for p in (folder, *folder.parents) if p.exists() or p.is_symlink()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return f"cannot create the output folder: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write into the output folder" if existing == folder else "create the output folder"
        return f"cannot {what}: {existing} is not writable (permission denied)"
    return None


def check_output_folder(path: str | os.PathLike | None) -> None:
    """Refuse, before any work is done, an output file whose folder cannot be created or written.

    The writers check the same when they write; tools call this first so that a long run does not end in an
    error after its other outputs were written. ``None`` (no output requested) passes.

    Raises:
        MrisrInputError: naming the folder (e.g. a file stands where a folder is needed, or it is read-only).
    """
    if path is None:
        return
    folder = Path(path).parent
    problem = _folder_problem(folder)
    if problem is not None:
        raise _output_error(folder, problem)


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents; a folder that cannot be created is a user error naming it."""
    if folder.is_dir():
        return
    problem = _folder_problem(folder)
    if problem is not None:
        raise _output_error(folder, problem)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _output_error(folder, f"cannot create the output folder ({err.strerror or type(err).__name__})") from err


def _create_temp(target: Path, suffix: str) -> Path:
    """Create an empty, uniquely named file next to ``target`` with mode ``0o666 & ~umask`` (like ``open``)."""
    for _ in range(_NAME_ATTEMPTS):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp{suffix}")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the kernel applies the umask
        except FileExistsError:
            continue
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise _output_error(target.parent, f"cannot write {target.name} into the output folder ({reason})") from err
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name next to {target} after {_NAME_ATTEMPTS} attempts")


def fsync_file(path: str | os.PathLike) -> None:
    """Flush ``path``'s data to disk (``os.fsync`` on a new descriptor: it syncs the file, not the descriptor)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a completed rename) to disk; a no-op where folders cannot be opened (Windows)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on folders
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path``, on failure it is deleted.

    Parent folders are created. The temporary file exists (empty) when yielded; writers that replace it (nibabel,
    matplotlib) keep its folder and therefore its file system. After the block: fsync, rename, fsync of the folder.

    Args:
        path: the final file.
        suffix: ending of the temporary name, for writers that choose the format by it (``.nii.gz``, ``.png``).

    Raises:
        MrisrInputError: the folder cannot be created (e.g. a file stands in its place) or written.
    """
    target = Path(path)
    _make_folder(target.parent)
    tmp = _create_temp(target, suffix)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(target.parent)


def write_atomic(path: str | os.PathLike, write: Callable[[IO[str]], None]) -> Path:
    """Write text through ``write(handle)`` atomically to ``path``."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        write(handle)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` atomically (a final newline is added when missing)."""
    return write_atomic(path, lambda handle: handle.write(text if text.endswith("\n") else text + "\n"))


def write_json_atomic(record: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``record`` as indented JSON atomically."""
    return write_atomic(path, lambda handle: json.dump(record, handle, indent=2))


def write_rows_atomic(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, fields: Sequence[str]) -> Path:
    """Write ``rows`` as CSV with the header ``fields`` atomically."""

    def write(handle: IO[str]) -> None:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)

    return write_atomic(path, write)


def save_figure_atomic(figure: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically (the figure is left open)."""
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return Path(path)
