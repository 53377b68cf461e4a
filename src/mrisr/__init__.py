"""mrisr: through-plane super-resolution of thick-slice clinical MRI.

Python API (mirrors the command-line tools): :func:`simulate`, :func:`super_resolve`, :func:`evaluate`.
The API functions are imported on first use (PEP 562), so that a tool which needs no network (``--help``, the
report and statistics tools) starts without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mrisr.core.version import VERSION

if TYPE_CHECKING:
    from mrisr.api import evaluate, simulate, super_resolve

__version__ = VERSION

__all__ = ["__version__", "evaluate", "simulate", "super_resolve"]

_API_FUNCTIONS = frozenset({"evaluate", "simulate", "super_resolve"})


def __getattr__(name: str) -> Any:
    if name in _API_FUNCTIONS:
        from mrisr import api

        return getattr(api, name)
    raise AttributeError(f"module 'mrisr' has no attribute {name!r}")
