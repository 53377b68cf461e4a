"""Read convolution weights from ncnn ``.param`` / ``.bin`` files and map them onto mrisr's RRDBNet.

ncnn (Tencent's inference library) stores a network as two files:

- ``.param`` (text): the magic number ``7767517``, a line ``<layer count> <blob count>``, then one line per layer:
  ``<type> <name> <n inputs> <n outputs> <input blobs…> <output blobs…> <key=value…>``. Keys 0–19 hold an int or a
  float; key ``-23300 - k`` holds the array for key ``k`` written as ``<length>,v1,v2,…``.
- ``.bin`` (binary, little-endian): the weights of the layers that have any, concatenated in the order of the layers
  in ``.param``, with no header. A ``Convolution`` layer contributes its kernel, stored as a 4-byte storage tag
  followed by the data, then (if ``5=1``) ``num_output`` float32 biases with no tag. Tag ``0x01306B47``: IEEE
  float16 values, padded with zero bytes to a multiple of 4 bytes; tag ``0``: float32 values. Other tags (int8,
  256-entry quantisation tables) are not read here.

Convolution keys used: ``0`` num_output, ``1`` kernel_w, ``11`` kernel_h (default kernel_w), ``2``/``12`` dilation,
``3``/``13`` stride, ``4``/``14``/``15``/``16`` padding left/top/right/bottom (each defaulting to the previous one),
``5`` bias_term, ``6`` weight_data_size, ``8`` int8_scale_term, ``9`` activation_type (2 = LeakyReLU with slope
``10[0]``), ``19`` dynamic_weight. The kernel is laid out as ``(out, in, kh, kw)`` in C order, as in PyTorch.

:func:`rrdbnet_state_dict` maps the convolutions of a Real-ESRGAN RRDBNet graph (Wang et al., ICCVW 2021), in file
order, onto the BasicSR module names of :class:`~mrisr.nets.rrdbnet.RRDBNet`: ``conv_first``, ``body.N.rdb{1,2,3}
.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``. It checks the shapes, the fused
LeakyReLU(0.2) of every convolution, the two nearest-neighbour ×2 ``Interp`` layers and the 0.2-scaled residual sums
(``Eltwise`` with coefficients 0.2 and 1), so a graph of another architecture is refused rather than mis-mapped.
The blob wiring (``Split`` / ``Concat``) is not checked.

Pure functions: files are read, nothing is written. Loading, caching and provenance live in
:mod:`mrisr.nets.pretrained`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mrisr.core.errors import MrisrInputError

__all__ = [
    "FP16_TAG",
    "FP32_TAG",
    "MAGIC",
    "NcnnConv",
    "NcnnLayer",
    "parse_param",
    "read_convolutions",
    "rrdbnet_conv_names",
    "rrdbnet_state_dict",
]

#: First line of every text ``.param`` file.
MAGIC = 7767517
#: Storage tag of float16 weight data in ``.bin``.
FP16_TAG = 0x01306B47
#: Storage tag of float32 weight data in ``.bin``.
FP32_TAG = 0

# Storage tags ncnn defines that this reader refuses (int8 data; raw float32 data of another writer version).
_INT8_TAG = 0x000D4B38
_ARRAY_KEY_BASE = -23300
# ncnn's activation_type 2 (LeakyReLU); RRDBNet uses slope 0.2 everywhere.
_LEAKY_RELU = 2
_SLOPE = 0.2
# ESRGAN's residual scaling of every dense block and RRDB branch (Wang et al., ECCVW 2018, §3.1).
_RESIDUAL_SCALE = 0.2
# Layer types that store nothing in the .bin file; any other type may, so the byte offsets could not be trusted.
_WEIGHTLESS = frozenset({"Input", "Split", "Concat", "Eltwise", "Interp", "BinaryOp", "ReLU", "PixelShuffle"})
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

ParamValue = int | float | tuple[int | float, ...]


@dataclass(frozen=True)
class NcnnLayer:
    """One layer line of a ``.param`` file.

    Attributes:
        type: layer type, e.g. ``"Convolution"``.
        name: unique layer name.
        bottoms: input blob names.
        tops: output blob names.
        params: key → value (int, float, or a tuple for array keys, stored under the plain key ``k``, not
            ``-23300 - k``).
        line: 1-based line number in the file (for error messages).
    """

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: Mapping[int, ParamValue] = field(default_factory=dict)
    line: int = 0

    def get(self, key: int, default: ParamValue) -> ParamValue:
        """Value of ``key`` or ``default`` when the line omits it (ncnn's convention for default values)."""
        return self.params.get(key, default)


@dataclass(frozen=True)
class NcnnConv:
    """The weights and geometry of one ``Convolution`` layer.

    Attributes:
        name: layer name in the ``.param`` file.
        weight: float32 kernel, shape ``(out, in, kh, kw)``.
        bias: float32 bias, shape ``(out,)``, or ``None`` without a bias term.
        storage: how the kernel was stored, ``"fp16"`` or ``"fp32"``.
        stride: ``(sh, sw)`` in pixels.
        dilation: ``(dh, dw)`` in pixels.
        padding: ``(top, bottom, left, right)`` in pixels (ncnn's ``-233`` "same" codes are kept as given).
        activation: ncnn activation_type (0 none, 1 ReLU, 2 LeakyReLU, …).
        activation_params: the activation's parameters (LeakyReLU: ``(slope,)``).
    """

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    storage: str
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int, int, int]
    activation: int
    activation_params: tuple[float, ...]

    @property
    def n_parameters(self) -> int:
        """Kernel plus bias elements."""
        return self.weight.numel() + (0 if self.bias is None else self.bias.numel())


def parse_param(path: str | os.PathLike[str]) -> list[NcnnLayer]:
    """Parse a text ncnn ``.param`` file.

    Args:
        path: the ``.param`` file.

    Returns:
        The layers in file order.

    Raises:
        MrisrInputError: missing or unreadable file, binary ``.param.bin`` files, a wrong magic number, a layer count
            that disagrees with the layer lines, duplicate layer names, or a malformed layer line or ``key=value``.
    """
    text = _read_text(path)
    lines = [(i + 1, s.strip()) for i, s in enumerate(text.splitlines()) if s.strip()]
    if not lines or lines[0][1] != str(MAGIC):
        first = lines[0][1][:40] if lines else "an empty file"
        raise MrisrInputError(
            path,
            f"not a text ncnn .param file: the first line is {first!r}, expected the magic number {MAGIC}",
            "pass the text .param file written by the ncnn converters (binary .param.bin files are not read)",
        )
    counts = lines[1][1].split() if len(lines) > 1 else []
    if len(counts) != 2 or not all(c.isdigit() for c in counts):
        raise MrisrInputError(
            path, "line 2 must hold '<layer count> <blob count>'", "check that the file is complete and unedited"
        )
    n_layers = int(counts[0])
    layers = [_parse_layer(path, number, body) for number, body in lines[2:]]
    if len(layers) != n_layers:
        raise MrisrInputError(
            path,
            f"the header announces {n_layers} layers but the file has {len(layers)} layer lines",
            "copy the file again; it is truncated or was edited",
        )
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise MrisrInputError(path, f"duplicate layer names {duplicated[:4]}", "layer names must be unique")
    return layers


def read_convolutions(
    layers: Sequence[NcnnLayer], bin_path: str | os.PathLike[str], param_path: str | os.PathLike[str] | None = None
) -> list[NcnnConv]:
    """Read the weights of every ``Convolution`` layer from the ``.bin`` file that belongs to ``layers``.

    The whole file must be consumed: leftover bytes mean the ``.param`` and ``.bin`` do not belong together.

    Args:
        layers: output of :func:`parse_param`.
        bin_path: the matching ``.bin`` file.
        param_path: the ``.param`` file, named in errors about layer lines.

    Returns:
        The convolutions in file order, kernels and biases as float32 tensors.

    Raises:
        MrisrInputError: a layer type that may carry weights this reader does not know, unsupported convolution
            options (int8, dynamic weights), a weight size that is not ``out · in · kh · kw``, an unknown storage
            tag, or a ``.bin`` file that is shorter or longer than the layers require.
    """
    data = _read_bytes(bin_path)
    where = param_path if param_path is not None else bin_path
    offset = 0
    convs: list[NcnnConv] = []
    for layer in layers:
        if layer.type in _WEIGHTLESS:
            continue
        if layer.type != "Convolution":
            raise MrisrInputError(
                where,
                f"layer {layer.name!r} (line {layer.line}) has type {layer.type!r}, which this reader does not know "
                "and which may store weights in the .bin file",
                f"only Convolution and the weightless types {sorted(_WEIGHTLESS)} are supported",
            )
        conv, offset = _read_conv(layer, data, offset, bin_path, where)
        convs.append(conv)
    if offset != len(data):
        raise MrisrInputError(
            bin_path,
            f"{len(data) - offset} bytes left over after the {len(convs)} convolutions of the .param file "
            f"({offset} of {len(data)} bytes used)",
            "pass the .bin file written together with this .param file",
        )
    return convs


def rrdbnet_conv_names(num_block: int) -> list[str]:
    """Module names of RRDBNet's convolutions in forward order (the order of the ncnn graph).

    Args:
        num_block: number of RRDBs.

    Returns:
        ``1 + 15 · num_block + 5`` names, from ``conv_first`` to ``conv_last``.
    """
    body = [f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3) for c in range(1, 6)]
    return ["conv_first", *body, "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def rrdbnet_state_dict(
    layers: Sequence[NcnnLayer], convs: Sequence[NcnnConv], path: str | os.PathLike[str] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Map an ncnn Real-ESRGAN ×4 graph onto :class:`~mrisr.nets.rrdbnet.RRDBNet` keys.

    Args:
        layers: the graph (:func:`parse_param`), used for the structural checks.
        convs: its convolutions (:func:`read_convolutions`), in file order.
        path: the ``.param`` file, for error messages.

    Returns:
        ``(state, config)``: the state dict (float32; ``<name>.weight`` of shape ``(out, in, 3, 3)`` and
        ``<name>.bias``) and the RRDBNet constructor arguments it fits (``num_in_ch``, ``num_out_ch``, ``scale`` = 4,
        ``num_feat``, ``num_block``, ``num_grow_ch``).

    Raises:
        MrisrInputError: the graph is not an RRDBNet ×4: wrong number of convolutions, shapes, kernel geometry,
            activations, upsampling layers or residual sums.
    """
    n = len(convs)
    if n < 21 or (n - 6) % 15:
        raise MrisrInputError(
            path,
            f"{n} convolutions do not form an RRDBNet (1 + 15 per RRDB + 5, at least one RRDB)",
            "pass the ncnn files of a Real-ESRGAN x4plus-type RRDBNet generator",
        )
    num_block = (n - 6) // 15
    names = rrdbnet_conv_names(num_block)
    num_feat, num_in_ch = convs[0].weight.shape[:2]
    num_grow_ch = convs[1].weight.shape[0]
    num_out_ch = convs[-1].weight.shape[0]
    expected: dict[str, tuple[int, int, bool]] = {"conv_first": (num_feat, num_in_ch, False)}
    for name in names[1:-5]:
        k = int(name[-1])
        out = num_grow_ch if k < 5 else num_feat
        expected[name] = (out, num_feat + (k - 1) * num_grow_ch, k < 5)
    expected |= {
        "conv_body": (num_feat, num_feat, False),
        "conv_up1": (num_feat, num_feat, True),
        "conv_up2": (num_feat, num_feat, True),
        "conv_hr": (num_feat, num_feat, True),
        "conv_last": (num_out_ch, num_feat, False),
    }
    state: dict[str, torch.Tensor] = {}
    for name, conv in zip(names, convs, strict=True):
        out, inp, leaky = expected[name]
        _check_rrdb_conv(conv, name, (out, inp), leaky, path)
        state[f"{name}.weight"] = conv.weight
        state[f"{name}.bias"] = conv.bias  # type: ignore[assignment]  # checked not None above
    _check_rrdb_graph(layers, num_block, path)
    config = {
        "num_in_ch": int(num_in_ch),
        "num_out_ch": int(num_out_ch),
        "scale": 4,
        "num_feat": int(num_feat),
        "num_block": num_block,
        "num_grow_ch": int(num_grow_ch),
    }
    return state, config


# ---------------------------------------------------------------- helpers


def _read_text(path: str | os.PathLike[str]) -> str:
    if not os.path.isfile(path):
        raise MrisrInputError(path, "ncnn .param file does not exist", "check the path (weights are never downloaded)")
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise MrisrInputError(
            path,
            "not a text ncnn .param file (it holds non-ASCII bytes; binary .param.bin files are not read)",
            "pass the text .param file",
        ) from None
    except OSError as err:
        raise MrisrInputError(path, f"cannot read the file ({err.strerror})", "check its permissions") from None


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    if not os.path.isfile(path):
        raise MrisrInputError(path, "ncnn .bin file does not exist", "put the .bin file next to its .param file")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise MrisrInputError(path, f"cannot read the file ({err.strerror})", "check its permissions") from None


def _parse_layer(path: str | os.PathLike[str], number: int, body: str) -> NcnnLayer:
    tokens = body.split()
    bad_line = f"line {number} is not '<type> <name> <n in> <n out> <blobs…> <key=value…>'"
    fix = "copy the file again; it is damaged or was edited"
    if len(tokens) < 4 or not tokens[2].isdigit() or not tokens[3].isdigit():
        raise MrisrInputError(path, bad_line, fix)
    n_in, n_out = int(tokens[2]), int(tokens[3])
    blobs = tokens[4 : 4 + n_in + n_out]
    if len(blobs) != n_in + n_out or any("=" in b for b in blobs):
        raise MrisrInputError(path, f"{bad_line}: expected {n_in} + {n_out} blob names", fix)
    params: dict[int, ParamValue] = {}
    for item in tokens[4 + n_in + n_out :]:
        key_text, sep, value_text = item.partition("=")
        if not sep or not re.fullmatch(r"-?\d+", key_text):
            raise MrisrInputError(path, f"line {number}: {item!r} is not key=value", fix)
        key = int(key_text)
        if key <= _ARRAY_KEY_BASE:
            values = value_text.split(",")
            if not values[0].isdigit() or int(values[0]) != len(values) - 1:
                raise MrisrInputError(
                    path, f"line {number}: array {item!r} does not start with its length ({len(values) - 1})", fix
                )
            key, value = _ARRAY_KEY_BASE - key, tuple(_number(path, number, v) for v in values[1:])
        else:
            value = _number(path, number, value_text)
        if key in params:
            raise MrisrInputError(path, f"line {number}: key {key} appears twice", fix)
        params[key] = value
    return NcnnLayer(tokens[0], tokens[1], tuple(blobs[:n_in]), tuple(blobs[n_in:]), params, number)


def _number(path: str | os.PathLike[str], number: int, text: str) -> int | float:
    if not _NUMBER.match(text):
        raise MrisrInputError(path, f"line {number}: {text!r} is not a number", "copy the file again")
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)


def _int_param(layer: NcnnLayer, key: int, default: int, where: str | os.PathLike[str]) -> int:
    value = layer.get(key, default)
    if not isinstance(value, int):
        raise MrisrInputError(
            where,
            f"layer {layer.name!r} (line {layer.line}): key {key} must be an integer, got {value!r}",
            "copy the file again",
        )
    return value


def _read_conv(
    layer: NcnnLayer, data: bytes, offset: int, bin_path: str | os.PathLike[str], where: str | os.PathLike[str]
) -> tuple[NcnnConv, int]:
    """Decode one Convolution layer's kernel and bias starting at ``offset``; return it and the next offset."""
    at = f"layer {layer.name!r} (line {layer.line})"
    num_output = _int_param(layer, 0, 0, where)
    kernel_w = _int_param(layer, 1, 0, where)
    kernel_h = _int_param(layer, 11, kernel_w, where)
    size = _int_param(layer, 6, 0, where)
    if _int_param(layer, 8, 0, where) or _int_param(layer, 19, 0, where):
        raise MrisrInputError(
            where, f"{at}: int8-quantised or dynamic-weight convolutions are not supported", "use an fp16/fp32 model"
        )
    if num_output <= 0 or kernel_w <= 0 or kernel_h <= 0 or size <= 0 or size % (num_output * kernel_h * kernel_w):
        raise MrisrInputError(
            where,
            f"{at}: weight_data_size {size} is not num_output ({num_output}) · in · {kernel_h} · {kernel_w}",
            "copy the file again; the layer line is damaged",
        )
    in_ch = size // (num_output * kernel_h * kernel_w)
    truncated = MrisrInputError(
        bin_path,
        f"file ends inside the weights of {at} (offset {offset} of {len(data)} bytes)",
        "copy the .bin file again and compare its size with the source; it must belong to this .param file",
    )
    if offset + 4 > len(data):
        raise truncated
    tag = int.from_bytes(data[offset : offset + 4], "little")
    offset += 4
    if tag == FP16_TAG:
        storage, dtype, nbytes = "fp16", np.dtype("<f2"), size * 2
        padded = (nbytes + 3) // 4 * 4  # fp16 data is padded to a 4-byte boundary
    elif tag == FP32_TAG:
        storage, dtype, nbytes = "fp32", np.dtype("<f4"), size * 4
        padded = nbytes
    else:
        kind = "int8" if tag == _INT8_TAG else "an unknown or quantised"
        raise MrisrInputError(
            bin_path,
            f"{at}: storage tag 0x{tag:08X} at offset {offset - 4} means {kind} weight storage; only fp16 "
            f"(0x{FP16_TAG:08X}) and fp32 (0x{FP32_TAG:08X}) are read",
            "convert the model to fp16 or fp32 storage, or check that the .bin file belongs to the .param file",
        )
    if offset + padded > len(data):
        raise truncated
    weight = np.frombuffer(data, dtype=dtype, count=size, offset=offset).astype(np.float32)
    offset += padded
    bias = None
    if _int_param(layer, 5, 0, where):
        if offset + 4 * num_output > len(data):
            raise truncated
        bias = torch.from_numpy(np.frombuffer(data, dtype="<f4", count=num_output, offset=offset).astype(np.float32))
        offset += 4 * num_output
    dilation_w = _int_param(layer, 2, 1, where)
    stride_w = _int_param(layer, 3, 1, where)
    pad_left = _int_param(layer, 4, 0, where)
    pad_right = _int_param(layer, 15, pad_left, where)
    pad_top = _int_param(layer, 14, pad_left, where)
    act_params = layer.get(10, ())
    conv = NcnnConv(
        name=layer.name,
        weight=torch.from_numpy(weight.reshape(num_output, in_ch, kernel_h, kernel_w)),
        bias=bias,
        storage=storage,
        stride=(_int_param(layer, 13, stride_w, where), stride_w),
        dilation=(_int_param(layer, 12, dilation_w, where), dilation_w),
        padding=(pad_top, _int_param(layer, 16, pad_top, where), pad_left, pad_right),
        activation=_int_param(layer, 9, 0, where),
        activation_params=tuple(float(v) for v in act_params)
        if isinstance(act_params, tuple)
        else (float(act_params),),
    )
    return conv, offset


def _check_rrdb_conv(
    conv: NcnnConv, name: str, shape: tuple[int, int], leaky: bool, path: str | os.PathLike[str] | None
) -> None:
    """Refuse a convolution whose geometry or fused activation differs from RRDBNet's ``name``."""
    at = f"convolution {conv.name!r} (RRDBNet {name})"
    fix = "pass the ncnn files of a Real-ESRGAN x4plus-type RRDBNet generator"
    got = tuple(conv.weight.shape)
    if got != (*shape, 3, 3):
        raise MrisrInputError(path, f"{at} has kernel shape {got}, expected {(*shape, 3, 3)}", fix)
    if conv.bias is None or conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.padding != (1, 1, 1, 1):
        raise MrisrInputError(
            path,
            f"{at}: bias {conv.bias is not None}, stride {conv.stride}, dilation {conv.dilation}, padding "
            f"{conv.padding}; RRDBNet needs a bias, stride 1, dilation 1 and padding 1",
            fix,
        )
    is_leaky = conv.activation == _LEAKY_RELU and len(conv.activation_params) == 1
    if leaky and not (is_leaky and abs(conv.activation_params[0] - _SLOPE) < 1e-6):
        raise MrisrInputError(path, f"{at} must end with LeakyReLU(0.2), has activation {conv.activation}", fix)
    if not leaky and conv.activation != 0:
        raise MrisrInputError(path, f"{at} must have no activation, has activation {conv.activation}", fix)


def _close(value: ParamValue, target: tuple[float, ...]) -> bool:
    """Whether a parameter array equals ``target`` to 1e-6."""
    values = value if isinstance(value, tuple) else (value,)
    return len(values) == len(target) and all(abs(v - t) < 1e-6 for v, t in zip(values, target, strict=True))


def _check_rrdb_graph(layers: Sequence[NcnnLayer], num_block: int, path: str | os.PathLike[str] | None) -> None:
    """Refuse graphs whose upsampling or residual sums differ from RRDBNet ×4."""
    fix = "pass the ncnn files of a Real-ESRGAN x4plus-type RRDBNet generator"
    interp = [layer for layer in layers if layer.type == "Interp"]
    # Interp: 0 = resize type (1 nearest), 1/2 = height/width scale.
    nearest_x2 = [
        layer for layer in interp if layer.get(0, 0) == 1 and layer.get(1, 1.0) == 2.0 and layer.get(2, 1.0) == 2.0
    ]
    if len(interp) != 2 or len(nearest_x2) != 2:
        raise MrisrInputError(
            path, f"expected two nearest-neighbour x2 Interp layers (RRDBNet x4), found {len(interp)} Interp", fix
        )
    sums = [layer for layer in layers if layer.type == "Eltwise"]
    # Eltwise: 0 = operation (1 sum), 1 = per-input coefficients; RDB and RRDB outputs are 0.2 · branch + input.
    scaled = [layer for layer in sums if layer.get(0, 0) == 1 and _close(layer.get(1, ()), (_RESIDUAL_SCALE, 1.0))]
    if len(sums) != 4 * num_block or len(scaled) != len(sums):
        raise MrisrInputError(
            path,
            f"expected {4 * num_block} residual sums 0.2 · branch + input (4 per RRDB), found {len(scaled)} of "
            f"{len(sums)} Eltwise layers",
            fix,
        )
