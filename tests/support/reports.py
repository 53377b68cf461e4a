"""Helpers of the report tests (``mrisr-report`` in process, PNG checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrisr import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_report(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    """Run ``mrisr-report`` in process; its last JSON line."""
    assert report.main(args) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def assert_png(path: Path, min_bytes: int = 5000) -> None:
    """``path`` is a PNG file of at least ``min_bytes``."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > min_bytes, path
