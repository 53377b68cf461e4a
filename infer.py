"""Super-resolve thick-slice volumes: ``python infer.py input=… output=… [model=…]`` (``--help`` lists every option).

A thin shim over :func:`mrisr.app.infer.main`; the application is ``mrisr.app.infer.infer(cfg)``.
"""

from mrisr.app.infer import main
from mrisr.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
