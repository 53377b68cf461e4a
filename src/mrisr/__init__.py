"""mrisr: through-plane super-resolution of thick-slice clinical MRI.

Python API (mirrors the command-line tools): :func:`simulate`, :func:`super_resolve`, :func:`evaluate`.
"""

from mrisr.api import evaluate, simulate, super_resolve
from mrisr.core.version import VERSION

__version__ = VERSION

__all__ = ["__version__", "evaluate", "simulate", "super_resolve"]
