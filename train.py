"""Train and test an SR model: ``python train.py [overrides]`` (``--help`` lists every option).

A thin shim over :func:`mrisr.app.train.main`; the application is ``mrisr.app.train.train(cfg)``.
"""

from mrisr.app.train import main
from mrisr.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
