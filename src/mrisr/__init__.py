"""mrisr: through-plane super-resolution of thick-slice clinical MRI.

Python API (mirrors the command-line tools): :func:`simulate`, :func:`super_resolve`, :func:`evaluate`.
"""

from mrisr.api import evaluate, simulate, super_resolve

__all__ = ["evaluate", "simulate", "super_resolve"]
__version__ = "0.1.0"
