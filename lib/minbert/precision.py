"""Numeric precision of a run: bfloat16 autocast where the hardware has it, float32 otherwise.

Under bfloat16 autocast the matrix products run in bfloat16 while the weights,
the optimiser state and the losses stay float32, so training remains stable and
checkpoints stay float32.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_bfloat16() -> bool:
    """True when the processor computes bfloat16 natively (AVX512-BF16 or AMX), not by emulation."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """`auto` picks bfloat16 on a GPU or CPU that supports it, float32 elsewhere."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; known: {list(PRECISIONS)}")
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bfloat16() else torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` for the matrix products; a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
