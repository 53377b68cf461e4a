"""Hydra/OmegaConf helpers: where the configs live, custom resolvers, composing configs outside ``@hydra.main``,
checking the types of command-line overrides and describing a config for ``--help``."""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

REPO_ROOT = Path(__file__).resolve().parents[3]

#: Kinds of values an option accepts, from a default value, a declared type or a constructor annotation.
_NUMBER, _BOOL, _STR, _LIST, _DICT, _NONE, _ANY = "number", "bool", "str", "list", "dict", "none", "any"
_TYPE_WORDS = {
    "int": _NUMBER,
    "float": _NUMBER,
    "bool": _BOOL,
    "str": _STR,
    "None": _NONE,
    "NoneType": _NONE,
    "list": _LIST,
    "List": _LIST,
    "tuple": _LIST,
    "Tuple": _LIST,
    "Sequence": _LIST,
    "dict": _DICT,
    "Dict": _DICT,
    "Mapping": _DICT,
}
_WRAPPER_WORDS = {"Optional", "Union"}


def conf_dir() -> Path:
    """Return the Hydra config directory (``<repo>/conf``, or ``$MRISR_CONF``).

    Raises:
        FileNotFoundError: when the directory does not exist (mrisr must be installed editable from a checkout).
    """
    path = Path(os.environ.get("MRISR_CONF", REPO_ROOT / "conf")).resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: the mrisr config directory is missing. Install mrisr editable from a checkout "
            "(`pip install -e .`) or point MRISR_CONF at a copy of its conf/ directory."
        )
    return path


def _training_precision(device_type: str = "cpu") -> str:
    """``${training_precision:cpu}``: Lightning precision fast on this machine (torch imported only when resolved)."""
    from mrisr.utils.precision import training_precision

    return training_precision(device_type)


def register_resolvers() -> None:
    """Register the resolvers of ``conf/``: ``${repo_root:}`` (``conf/paths``) and ``${training_precision:cpu}``
    (``conf/trainer/cpu.yaml``: bf16 mixed precision only where the CPU computes bf16 natively); safe to call
    repeatedly."""
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))
    if not OmegaConf.has_resolver("training_precision"):
        OmegaConf.register_new_resolver("training_precision", _training_precision)


def compose(config_name: str, overrides: Sequence[str] = (), types: Mapping[str, type] | None = None) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with Hydra command-line overrides, without a run directory.

    Used by the command-line tools (``mrisr-simulate``, ``mrisr-evaluate``, …) that must not create Hydra output
    folders or take over logging. Every ``key=value`` override is checked against the option it replaces
    (:func:`check_override_types`), so that ``seed=1.5x`` fails here, naming the key, instead of deep inside a tool.

    Args:
        config_name: primary config file name without ``.yaml``.
        overrides: Hydra override strings such as ``thickness=3`` or ``degradation=prettier``.
        types: expected types of options whose default (``null`` or ``???``) does not tell, e.g.
            ``{"thickness": float}``.

    Returns:
        The composed config (``hydra`` node removed).

    Raises:
        MrisrInputError: an override gives a value of the wrong kind (e.g. text for a number).
        hydra.errors.HydraException, omegaconf.errors.OmegaConfBaseException: unknown keys or config groups,
            unparsable overrides.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    directory = str(conf_dir())
    with initialize_config_dir(config_dir=directory, version_base="1.3"):
        groups = set(_config_groups(directory))
        base = _base_composer(config_name)
        check_override_keys(overrides, base, groups)
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        groups |= set(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]
        check_override_types(overrides, base, groups, types)
    return cfg


@functools.lru_cache(maxsize=8)
def _config_groups(directory: str) -> frozenset[str]:
    """The config groups of ``directory``, listed once per process (Hydra walks every group file to list them, most
    of the cost of a composition). Call it inside ``initialize_config_dir(directory)``."""
    from hydra.core.global_hydra import GlobalHydra

    return frozenset(GlobalHydra.instance().hydra.list_all_config_groups())


def check_hydra_overrides(types: Mapping[str, type] | None = None) -> None:
    """:func:`check_override_types` for the overrides of the running ``@hydra.main`` job (``train.py``, ``infer.py``).

    Raises:
        MrisrInputError: see :func:`check_override_types`.
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    # The job runs on conf_dir() (mrisr.utils.cli.run_hydra), whose groups are listed once per process.
    groups = set(_config_groups(str(conf_dir()))) | set(hydra_cfg.runtime.choices)
    name = str(hydra_cfg.job.config_name)
    overrides = [str(o) for o in hydra_cfg.overrides.task]
    base = _base_composer(name)
    check_override_keys(overrides, base, groups)
    check_override_types(overrides, base, groups, types)


def _base_composer(config_name: str) -> Callable[[list[str]], DictConfig]:
    """Composes ``config_name`` with the group choices given, once per distinct list: both override checks compare
    the overrides with the same config. Call it inside an initialised Hydra (a compose context or the job)."""
    from hydra import compose as hydra_compose

    composed = functools.lru_cache(maxsize=None)(lambda choices: hydra_compose(config_name, overrides=list(choices)))
    return lambda choices: composed(tuple(choices))


def _has_key(base: DictConfig, key: str) -> bool:
    """Whether the dotted ``key`` exists in ``base`` (as a leaf or node), without resolving any interpolation."""
    node: Any = base
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in list(node.keys()):
            return False
        node = node._get_node(part)
    return True


def _accepts(target: Any, name: str) -> bool:
    """Whether the ``_target_`` callable takes an argument ``name`` (or any keyword)."""
    from hydra.utils import get_object

    try:
        parameters = inspect.signature(get_object(str(target))).parameters
    except Exception:  # an unimportable target fails with its own message at instantiation
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _known_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (leaves and nodes)."""
    if not isinstance(node, DictConfig):
        return []
    keys = []
    for key in node.keys():
        full = f"{prefix}{key}"
        keys.append(full)
        if not OmegaConf.is_interpolation(node, key):
            keys += _known_keys(node._get_node(key), f"{full}.")
    return keys


def _suggestion(key: str, base: DictConfig) -> str | None:
    """The nearest valid key to a misspelt ``key``: a sibling (or constructor argument) first, else any dotted key."""
    import difflib

    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(base, parent_key, throw_on_missing=False) if parent_key else base
    if isinstance(parent, DictConfig):
        siblings = [str(k) for k in parent.keys()]
        target = parent.get("_target_") if "_target_" in parent else None
        if isinstance(target, str):
            from hydra.utils import get_object

            try:
                siblings += list(inspect.signature(get_object(target)).parameters)
            except Exception:  # an unimportable target: its own error comes later
                pass
        match = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
        if match:
            return f"{parent_key}.{match[0]}" if parent_key else match[0]
    match = difflib.get_close_matches(key, _known_keys(base), n=1, cutoff=0.6)
    return match[0] if match else None


def check_override_keys(
    overrides: Sequence[str], compose_base: Callable[[list[str]], DictConfig], groups: Collection[str]
) -> None:
    """Refuse an override of a key the config does not have, also in the ``+key``/``++key`` add forms.

    A key that is not in the config is accepted only where it is a real argument of the object being configured: its
    parent node has a ``_target_`` whose constructor takes it (``+model.progress=false`` for a model whose config
    leaves ``progress`` at its code default), or it names the ``_target_`` of a new node. Every other key is refused
    with the nearest valid key as a suggestion (``thicknes`` → did you mean ``thickness``?) — never with advice to add
    a key that nothing would read.

    Raises:
        MrisrInputError: naming the key and, when one is close, the key that was probably meant.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mrisr.core.errors import MrisrInputError

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    is_choice = [o.key_or_group in groups or o.package is not None for o in parsed]
    keys = [o for o, choice in zip(parsed, is_choice, strict=True) if not choice and not o.is_delete()]
    keys = [o for o in keys if not o.key_or_group.startswith("hydra.")]
    if any(o.key_or_group == "ckpt_path" and o.value() not in (None, "null") for o in keys):
        # A checkpoint model is rebuilt from the checkpoint: its options are checked against the options it declares.
        keys = [o for o in keys if not o.key_or_group.startswith("model.")]
    if not keys:
        return
    base = compose_base([o.input_line for o, choice in zip(parsed, is_choice, strict=True) if choice])
    new_nodes = {o.key_or_group.removesuffix("._target_") for o in keys if o.key_or_group.endswith("._target_")}
    for override in keys:
        key = override.key_or_group
        if _has_key(base, key):
            continue
        parent_key, _, leaf = key.rpartition(".")
        if leaf == "_target_" or any(key.startswith(f"{node}.") for node in new_nodes):
            continue
        parent = OmegaConf.select(base, parent_key, throw_on_missing=False) if parent_key else None
        target = parent.get("_target_") if isinstance(parent, DictConfig) and "_target_" in parent else None
        if target is not None and not OmegaConf.is_interpolation(parent, "_target_") and _accepts(target, leaf):
            if override.is_add() or override.is_force_add():
                continue
            raise MrisrInputError(
                None,
                f"option '{key}' is not set in the config, though {target} takes '{leaf}'",
                f"add it with +{key}={override.input_line.split('=', 1)[1]}",
            )
        suggestion = _suggestion(key, base)
        raise MrisrInputError(
            None,
            f"unknown option '{key}'",
            (f"did you mean '{suggestion}'? " if suggestion else "check its spelling; ")
            + "(`--help` lists the options with their defaults)",
        )


def check_override_types(
    overrides: Sequence[str],
    compose_base: Callable[[list[str]], DictConfig],
    groups: Collection[str],
    types: Mapping[str, type] | None = None,
) -> None:
    """Refuse an override whose value is text where the option takes a number or a boolean.

    The expected kind comes, in this order, from ``types``; from the constructor annotation of the parameter when
    the option belongs to a node with ``_target_`` (``trainer.devices`` takes ``auto`` as well as a number); from
    the type of the option's default in the config composed with the config-group choices only (``model=smore
    model.max_steps=abc`` is checked against ``smore``'s ``max_steps``). ``null`` is always accepted, and so are
    interpolations (``${...}``) and options whose default is ``null``/``???`` without a declared type.

    Args:
        overrides: Hydra override strings.
        compose_base: composes the config with the given overrides (the group choices).
        groups: names of the config groups (``model``, ``hydra/launcher``, …): their overrides are choices.
        types: expected types of options whose default does not tell.

    Raises:
        MrisrInputError: naming the key, the value, the expected type and how to fix it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from mrisr.core.errors import MrisrInputError

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    is_choice = [o.key_or_group in groups or o.package is not None for o in parsed]
    candidates = [
        o
        for o, choice in zip(parsed, is_choice, strict=True)
        if not choice and not o.is_delete() and not o.is_add() and isinstance(o.value(), str) and "${" not in o.value()
    ]
    if not candidates:
        return
    base = compose_base([o.input_line for o, choice in zip(parsed, is_choice, strict=True) if choice])
    for override in candidates:
        key, value = override.key_or_group, override.value()
        expected, default = _expected(base, key, (types or {}).get(key))
        if expected is None or _STR in expected or _ANY in expected or not expected & {_NUMBER, _BOOL}:
            continue
        names = [name for kind, name in ((_NUMBER, "a number"), (_BOOL, "true or false")) if kind in expected]
        typename = type(default).__name__ if default is not None else (_declared_name(types, key) or "number")
        example = _format_value(default) if default is not None else ("3" if _NUMBER in expected else "true")
        raise MrisrInputError(
            None,
            f"option {key}={override.input_line.split('=', 1)[1]}: {value!r} is not {' or '.join(names)} "
            f"(expected {typename}" + (f", like the default {_format_value(default)})" if default is not None else ")"),
            f"give {key} a value of type {typename}, e.g. {key}={example} (`--help` lists the options)",
        )


def _declared_name(types: Mapping[str, type] | None, key: str) -> str | None:
    """Name of the declared type of ``key``, if any."""
    declared = (types or {}).get(key)
    return None if declared is None else getattr(declared, "__name__", str(declared))


def _format_value(value: Any) -> str:
    """A value as it would be written on the command line (``true``, ``3``, ``0.5``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _expected(base: DictConfig, key: str, declared: type | None) -> tuple[set[str] | None, Any]:
    """Accepted kinds of the option ``key`` of ``base`` and its default (``None`` when unset or unknown)."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(base, parent_key, throw_on_missing=False) if parent_key else base
    if not isinstance(parent, DictConfig) or leaf not in parent:
        return (None if declared is None else _kinds_of_annotation(declared)), None
    default = None
    if not OmegaConf.is_missing(parent, leaf) and not OmegaConf.is_interpolation(parent, leaf):
        default = parent[leaf]
    if declared is not None:
        return _kinds_of_annotation(declared), default
    target = parent["_target_"] if "_target_" in parent and not OmegaConf.is_interpolation(parent, "_target_") else None
    if isinstance(target, str):
        annotated = _target_annotation(target, leaf)
        if annotated is not None:
            return annotated, default
    return _kinds_of_value(default), default


def _kinds_of_value(value: Any) -> set[str] | None:
    if isinstance(value, bool):
        return {_BOOL}
    if isinstance(value, int | float):
        return {_NUMBER}
    if isinstance(value, str):
        return {_STR}
    return None  # null, ???, containers: nothing to compare a scalar with


def _target_annotation(target: str, name: str) -> set[str] | None:
    """Accepted kinds of parameter ``name`` of the ``_target_`` callable, or ``None`` when it cannot be read."""
    from hydra.utils import get_object

    try:
        parameter = inspect.signature(get_object(target)).parameters.get(name)
    except Exception:  # an unimportable target fails with its own message at instantiation
        return None
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return None
    return _kinds_of_annotation(parameter.annotation)


def _kinds_of_annotation(annotation: Any) -> set[str]:
    """Kinds a type annotation (a type, a typing construct or its string form) accepts; unknown names → any."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    kinds = {_STR} if ("'" in text or '"' in text) else set()  # Literal["a", ...]
    for word in re.findall(r"[A-Za-z_][\w.]*", re.sub(r"(['\"]).*?\1", "", text)):
        word = word.rsplit(".", 1)[-1]
        if word in _WRAPPER_WORDS:
            continue
        kinds.add(_TYPE_WORDS.get(word, _ANY))
    return kinds


def describe_config(config_name: str, overrides: Sequence[str] = ()) -> str:
    """The options of ``conf/<config_name>.yaml`` (with ``overrides``) as YAML, and the config groups' choices.

    Used by ``--help``; the ``hydra`` node is left out and interpolations are shown unresolved.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    register_resolvers()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        loader = GlobalHydra.instance().hydra.config_loader
        choices = {
            group: (choice, loader.get_group_options(group, results_filter=ObjectType.CONFIG))
            for group, choice in cfg.hydra.runtime.choices.items()
            if not group.startswith("hydra") and group != "local"
        }
    with open_dict(cfg):
        del cfg["hydra"]
    lines = [f"Options (conf/{config_name}.yaml; set any with key=value):", "", OmegaConf.to_yaml(cfg).rstrip()]
    if choices:
        lines += ["", "Config groups (choose with group=option):"]
        lines += [
            f"  {group}={choice}  (options: {', '.join(opts) or 'none'})" for group, (choice, opts) in choices.items()
        ]
    return "\n".join(lines)


register_resolvers()
