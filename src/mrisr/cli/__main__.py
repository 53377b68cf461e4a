"""``python -m mrisr.cli <tool> …``: the ``mrisr`` dispatcher."""

from mrisr.cli import run

run()
