"""The application layer: ``train(cfg)`` and ``infer(cfg)``, importable from the installed package.

* :func:`mrisr.app.train.train` — fit, select the best checkpoint, test (``train.py``, ``mrisr-train``, experiments);
* :func:`mrisr.app.infer.infer` — one volume or a batch with verified resume (``infer.py``, ``mrisr-infer``);
* :mod:`mrisr.app.models` — models by name, checkpoint or config, with their inference options.
"""

from __future__ import annotations

from mrisr.app.infer import infer
from mrisr.app.train import TrainResult, train

__all__ = ["TrainResult", "infer", "train"]
