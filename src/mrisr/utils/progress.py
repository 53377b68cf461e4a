"""Progress bars of long loops (diffusion sampling, PRETTIER reconstruction, batches), switchable in one place.

``infer.py progress=false`` turns them off; they are also off when standard error is not a terminal or ``CI`` is set,
so logs of batch jobs and CI runs stay readable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["progress_bar", "progress_enabled", "set_progress"]

T = TypeVar("T")

_ENABLED = True


def set_progress(enabled: bool) -> None:
    """Turn progress bars on or off for this process."""
    global _ENABLED
    _ENABLED = bool(enabled)


def progress_enabled() -> bool:
    """True when bars are on (:func:`set_progress`), standard error is a terminal and ``CI`` is not set."""
    return _ENABLED and sys.stderr.isatty() and not os.environ.get("CI")


def progress_bar(
    iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", unit: str = "it", show: bool = True
) -> Any:
    """A tqdm bar over ``iterable`` (or a manual bar of ``total`` steps), shown when ``show`` and
    :func:`progress_enabled`."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not (show and progress_enabled()), leave=False)
