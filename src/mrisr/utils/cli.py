"""Shared command-line plumbing: ``--help``, one error exit for every tool and entry point, JSON result lines.

Every tool (``mrisr-simulate``, …, ``train.py``, ``infer.py``) runs through :func:`run_cli`: user errors (bad input
files, bad options, config errors, options that a constructor refuses, output folders that cannot be written) end
in one line ``error: <what>. Fix: <what to do>`` on stderr and exit status 2, without a traceback. Anything else is
a bug and keeps its traceback; so does everything when ``HYDRA_FULL_ERROR=1`` is set.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from mrisr.core.errors import MrisrInputError

log = logging.getLogger("mrisr")

T = TypeVar("T")

#: Exit status of a user error (bad input, bad option); 1 is left to "ran, but some work failed".
USER_ERROR = 2
HELP_FLAGS = ("--help", "-h")


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


def user_error_exit(message: str, code: int = USER_ERROR) -> None:
    """Print ``message`` on one line to stderr, prefixed with ``error:``, and exit with ``code``."""
    print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)
    raise SystemExit(code)


# ------------------------------------------------------------------------------------------------------------ help
def wants_help(argv: Sequence[str]) -> bool:
    """Whether the command line asks for ``--help`` (or ``-h``)."""
    return any(arg in HELP_FLAGS for arg in argv)


def print_help(doc: str | None, config_name: str, argv: Sequence[str] = ()) -> int:
    """Print a tool's usage (its module docstring) and its options with their defaults; returns exit status 0.

    Args:
        doc: usage text (the tool's module docstring).
        config_name: the tool's primary config (``conf/<config_name>.yaml``).
        argv: the command line; its overrides (e.g. ``model=smore``) are applied to the options shown.
    """
    from mrisr.utils.config import describe_config

    overrides = [arg for arg in argv if arg not in HELP_FLAGS]
    print(inspect.cleandoc(doc or "").strip(), end="\n\n")
    print(describe_config(config_name, overrides), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------------- errors
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _hydra_message(err: BaseException) -> str:
    """Hydra's message without its pointer to the grammar documentation."""
    return _one_line(re.sub(r"See https://hydra\.cc\S* for details", "", str(err)))


def _instantiation_error(err: BaseException) -> MrisrInputError | None:
    """One-line error for a failed ``instantiate``: the config node, its target and the constructor's complaint."""
    from hydra.errors import InstantiationException

    text = str(err)
    cause = err.__cause__
    while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
        text, cause = str(cause), cause.__cause__
    if isinstance(cause, MrisrInputError):
        return cause
    if cause is not None and not isinstance(cause, ValueError | TypeError | ImportError):
        return None  # an exception of another kind inside a constructor is a bug: keep its traceback
    target = re.search(r"target '([^']+)'", text)
    node = re.search(r"full_key: (\S+)", text)
    node_name = node.group(1) if node else "the configured object"
    what = f"cannot build {node_name}" + (f" ({target.group(1)})" if target else "")
    reason = _one_line(str(cause)) if cause is not None else _hydra_message(text.split("\nfull_key:")[0])
    return MrisrInputError(
        None,
        f"{what}: {reason}",
        f"correct that option of {node_name} (`--help` lists the options with their defaults)",
    )


def user_error(err: BaseException) -> MrisrInputError | None:
    """The one-line user error an exception stands for, or ``None`` when it is a bug (keep the traceback).

    Recognised: :class:`~mrisr.core.errors.MrisrInputError`; Hydra and OmegaConf errors (unknown keys or config
    group options, unparsable overrides, missing mandatory values, failed interpolations); failed ``instantiate``
    calls whose constructor refused a value (``ValueError``/``TypeError``) or whose target cannot be imported;
    ``OSError`` naming a file (e.g. a run directory under an existing file).
    """
    from hydra.errors import (
        ConfigCompositionException,
        HydraException,
        InstantiationException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

    help_fix = "`--help` lists the options with their defaults"
    if isinstance(err, MrisrInputError):
        return err
    if isinstance(err, InstantiationException):
        return _instantiation_error(err)
    if isinstance(err, MissingConfigException):
        head, _, options = str(err).partition("Available options")
        names = re.findall(r"^\t(\S+)$", options.split("Config search path")[0], flags=re.MULTILINE)
        fix = f"choose one of: {', '.join(names)}" if names else f"check the name ({help_fix})"
        return MrisrInputError(None, f"configuration: {_one_line(head)}", fix)
    if isinstance(err, OverrideParseException):
        return MrisrInputError(
            None,
            f"cannot parse the command line ({_hydra_message(err)})",
            "write options as key=value (quote values with spaces or special characters, e.g. key='a b'); " + help_fix,
        )
    if isinstance(err, ConfigCompositionException) and isinstance(err.__cause__, ConfigKeyError | AttributeError):
        named = re.search(r"override '([^']+)'", str(err))
        key = named.group(1) if named else getattr(err.__cause__, "full_key", None) or "?"
        return MrisrInputError(None, f"unknown option '{key}'", f"check its spelling ({help_fix})")
    if isinstance(err, MissingMandatoryValue):
        key = getattr(err, "full_key", None) or "?"
        return MrisrInputError(None, f"option '{key}' has no value", f"pass {key}=VALUE ({help_fix})")
    if isinstance(err, HydraException | OmegaConfBaseException):
        message = getattr(err, "msg", None) or str(err).split("\n    full_key:")[0]
        key = getattr(err, "full_key", None)
        where = f" (option '{key}')" if key else ""
        return MrisrInputError(
            None, f"configuration{where}: {_hydra_message(message)}", f"check the command line; {help_fix}"
        )
    if isinstance(err, OSError) and err.filename is not None:
        return MrisrInputError(
            err.filename,
            f"{err.strerror or type(err).__name__}",
            "check the path: its folders must exist or be creatable, and be writable",
        )
    return None


def run_cli(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> None:
    """Run ``main(argv)`` and exit with its status; user errors exit with status 2 after one ``error:`` line.

    See :func:`user_error` for what counts as a user error. With ``HYDRA_FULL_ERROR=1`` in the environment every
    exception keeps its traceback (for debugging).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        code = main(args)
    except BrokenPipeError:  # the reader of stdout went away (e.g. `--help | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except Exception as err:
        error = None if full_error else user_error(err)
        if error is None:
            raise
        user_error_exit(str(error))
    raise SystemExit(code or 0)


# ----------------------------------------------------------------------------------------------------------- Hydra
#: Hydra flags after which the command line is not one run of ``conf/<config_name>.yaml`` with plain overrides.
_NOT_ONE_RUN = {
    "-m", "--multirun", "-c", "--cfg", "-p", "--package", "-i", "--info", "-cn", "--config-name", "-cp",
    "--config-path", "-cd", "--config-dir", "--experimental-rerun", "-sc", "--shell-completion", "--hydra-help",
    "--version",
}  # fmt: skip


def run_hydra(
    task: Callable[[Any], T], config_name: str, argv: Sequence[str], types: Mapping[str, type] | None = None
) -> T | None:
    """Run ``task(cfg)`` as a Hydra application on the command line ``argv``; returns its value (last job).

    Hydra keeps everything it does for ``@hydra.main`` (run directory, logging, ``--multirun``, ``--cfg``,
    launchers and sweepers, which also receive the task's return value), but its errors propagate instead of being
    printed over several lines, so that :func:`run_cli` reports them in one.

    A single run's overrides are composed and checked (:func:`mrisr.utils.config.compose`) before Hydra starts, so
    that a bad value is refused before a run directory is made; sweeps are checked per job by the task itself
    (:func:`mrisr.utils.config.check_hydra_overrides`).

    Args:
        task: the job function; the name of its module file is the Hydra job name (``train.py`` → ``train``).
        config_name: primary config (``conf/<config_name>.yaml``).
        argv: command-line arguments (overrides and Hydra flags).
        types: expected types of options whose default does not tell (see :func:`mrisr.utils.config.compose`).
    """
    import hydra

    from mrisr.utils.config import compose, conf_dir, register_resolvers

    register_resolvers()
    if not _NOT_ONE_RUN & set(argv):
        compose(config_name, list(argv), types=types)
    returned: list[T] = []
    refused: list[Exception] = []
    keep_tracebacks = os.environ.get("HYDRA_FULL_ERROR") == "1"

    @functools.wraps(task)
    def job(cfg: Any) -> T | None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        try:
            value = task(cfg)
        except Exception as err:
            # A single run hands a user error back after Hydra has finished (Hydra would print it over several lines
            # first); sweeps keep Hydra's own handling, which stops at the first failed job.
            if keep_tracebacks or HydraConfig.get().mode != RunMode.RUN or user_error(err) is None:
                raise
            refused.append(err)
            return None
        returned.append(value)
        return value

    app = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name=config_name)(job)
    saved_argv, saved_flag = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = [sys.argv[0], *argv]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then re-raises instead of printing its own multi-line report
    try:
        app()
    finally:
        sys.argv = saved_argv
        if saved_flag is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_flag
    if refused:
        raise refused[0]
    return returned[-1] if returned else None
