"""The installed mrisr version (recorded in every sidecar, QC page and derivative dataset)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["VERSION"]

try:
    VERSION: str = version("mrisr")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    VERSION = "unknown (not installed)"
