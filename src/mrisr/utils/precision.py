"""Numeric precision chosen for the machine at hand: bf16 only where the hardware computes it natively.

bf16 autocast halves the cost of convolutions on CPUs with AVX-512 BF16 or AMX instructions and on recent GPUs
(docs/architecture.md, "Precision"). On a CPU without them (e.g. AVX2 only) PyTorch emulates bf16 and the same
autocast is an order of magnitude slower (measured on a 2-core AVX2 host: a 32-channel 3 × 3 convolution forward +
backward on 16 × 32 × 64² took 0.088 s in fp32 and 2.5 s under bf16 autocast). So ``auto`` — the default of every
precision option — resolves here, once, from what the device supports; an explicit ``bf16`` or ``32`` is obeyed.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["AUTOCAST_NAMES", "autocast_dtype", "check_precision_option", "native_bf16", "training_precision"]

#: Values accepted by the inference-precision options (``auto`` = bf16 where native, else float32).
AUTOCAST_NAMES = ("auto", "32", "bf16", "16")

_EXPLICIT: dict[str, torch.dtype | None] = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


@functools.cache
def native_bf16(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` (``cpu`` or ``cuda``) computes bf16 natively (no emulation).

    CPU: AVX-512 BF16 or AMX tile instructions, as reported by PyTorch. CUDA: ``torch.cuda.is_bf16_supported()``.
    """
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))


def check_precision_option(option: str, value: object) -> None:
    """Raise ``ValueError`` naming ``option`` when ``value`` is not one of :data:`AUTOCAST_NAMES` (constructors call
    this so that a typo fails when the model is built, not at its first inference)."""
    if str(value) not in AUTOCAST_NAMES:
        raise ValueError(f"{option} must be one of {list(AUTOCAST_NAMES)}, got {value!r}")


def autocast_dtype(name: str | None, device_type: str = "cpu") -> torch.dtype | None:
    """Autocast dtype of an inference-precision option (``None`` = no autocast, float32 throughout).

    Args:
        name: ``auto`` (bf16 where :func:`native_bf16`, else float32), ``32``, ``bf16``, ``16``, or ``None`` (``32``).
        device_type: ``cpu`` or ``cuda``: the device the network runs on.

    Raises:
        ValueError: for any other value, naming the accepted ones.
    """
    key = "32" if name is None else str(name)
    if key == "auto":
        return torch.bfloat16 if native_bf16(device_type) else None
    if key not in _EXPLICIT:
        raise ValueError(f"precision must be one of {list(AUTOCAST_NAMES)}, got {name!r}")
    return _EXPLICIT[key]


def training_precision(device_type: str = "cpu") -> str:
    """Lightning ``Trainer(precision=…)`` on ``device_type``: ``bf16-mixed`` where bf16 is native, else ``32-true``.

    Used by ``conf/trainer/cpu.yaml`` through the ``${training_precision:cpu}`` resolver.
    """
    return "bf16-mixed" if native_bf16(device_type) else "32-true"
