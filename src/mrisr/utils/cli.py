"""Shared command-line plumbing: clean error reporting (no tracebacks for user errors) and JSON result lines."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

from mrisr.io.errors import MrisrInputError

log = logging.getLogger("mrisr")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


def print_json_line(result: Mapping[str, Any]) -> None:
    """Print ``result`` as one JSON object on a single line (the machine-readable last line of a CLI)."""
    print(json.dumps(_jsonable(dict(result)), sort_keys=False), flush=True)


def user_error_exit(message: str, code: int = 2) -> None:
    """Print ``message`` to stderr prefixed with ``error:`` and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def run_cli(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> None:
    """Run ``main(argv)``; user errors (bad input, bad config) exit non-zero with one clear line and no traceback.

    Config errors come from Hydra/OmegaConf (unknown keys, missing values); input errors are
    :class:`~mrisr.io.errors.MrisrInputError`. Anything else is a bug and keeps its traceback.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    try:
        code = main(args)
    except MrisrInputError as err:
        user_error_exit(str(err))
    except (HydraException, OmegaConfBaseException) as err:
        user_error_exit(f"configuration: {err}".replace("\n", " "))
    raise SystemExit(code or 0)
