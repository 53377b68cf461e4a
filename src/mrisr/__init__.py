"""mrisr: through-plane super-resolution of thick-slice clinical MRI.

Python API (mirrors the command-line tools): :func:`simulate`, :func:`super_resolve`, :func:`evaluate`.
"""

from importlib.metadata import PackageNotFoundError, version

from mrisr.api import evaluate, simulate, super_resolve

__all__ = ["__version__", "evaluate", "simulate", "super_resolve"]

try:
    __version__ = version("mrisr")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "unknown (not installed)"
