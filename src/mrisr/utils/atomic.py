"""Atomic file writing: every output goes to a temporary file in the target folder, then one rename.

A reader (or a resumed batch) therefore sees either the previous file or the complete new one, never a partial
write; the temporary file is removed when writing fails.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is deleted."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
