"""``python -m mrisr.cli <tool> …``: the ``mrisr`` dispatcher."""

from __future__ import annotations

from mrisr.cli import run

run()
