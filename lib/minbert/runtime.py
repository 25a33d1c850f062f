"""Where and how a run computes: device, precision, seeding and one autocast context.

Resolved once at the start of a run (as nanoGPT builds its `ctx` once) and passed
around as one object, instead of a (device, dtype) pair threaded through every call.

Under bfloat16 autocast the matrix products run in bfloat16 while the weights, the
optimiser state and the losses stay float32, so training remains stable and
checkpoints stay float32.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PRECISIONS = ("auto", "float32", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")


class RuntimeSetupError(RuntimeError):
    """The run asked for a device or precision this machine cannot give."""


def cpu_has_bfloat16() -> bool:
    """True when the processor computes bfloat16 natively (AVX512-BF16 or AMX), not by emulation."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes a GPU when there is one; `cpu` and `cuda` are taken as asked."""
    if name not in DEVICES:
        raise RuntimeSetupError(f"unknown device {name!r}; known: {list(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeSetupError("device 'cuda' was asked for, but no GPU is available")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """`auto` picks bfloat16 on a GPU or CPU that computes it natively, float32 elsewhere."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; known: {list(PRECISIONS)}")
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":  # native only: a T4's or V100's emulated bfloat16 is slower than float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float32
    return torch.bfloat16 if cpu_has_bfloat16() else torch.float32


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """What a resumed run must draw on from: the CPU generator's state, and the GPU's own where the run
    computes on one (its dropout masks and Sophia's sampled labels are drawn there). On the host."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor] | torch.Tensor, device: torch.device) -> None:
    """Restore what `rng_state` saved (a bare tensor: the CPU state alone, as older checkpoints kept)."""
    if isinstance(state, torch.Tensor):
        state = {"cpu": state}
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


@dataclass(frozen=True)
class Runtime:
    """The device and compute precision of a run."""

    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "auto", seed: int | None = None) -> Runtime:
        """Pick the device and precision by name and, given a seed, seed every generator."""
        if seed is not None:
            seed_everything(seed)
        chosen = pick_device(device)
        keep_freed_memory()
        return cls(chosen, resolve_precision(precision, chosen))

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the run's dtype for the matrix products; a no-op for float32."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def precision(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def read_every(self) -> int:
        """How many training steps go by between reads of device values on the host (whether a loss
        went non-finite): every step on the CPU, where a read costs nothing; on a GPU a read waits for
        the queued kernels, so the trainer reads every 64 steps and the GPU never idles in between."""
        return 1 if self.device.type == "cpu" else 64


    def describe(self) -> str:
        """A human-readable name of the processor or GPU; for a CPU, whether it computes bfloat16
        natively: the same 2-core CPU runs the same profile twice as long without it."""
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        model = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        bf16 = "native bfloat16" if cpu_has_bfloat16() else "no native bfloat16"
        return f"cpu ({model}, {torch.get_num_threads()} threads, {bf16})"


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
_memory_kept = False


def keep_freed_memory() -> bool:
    """Let glibc's allocator keep freed memory for the next allocation instead of handing it back to
    the system. A training step frees and allocates the same large blocks every time (the word
    embeddings' gradient alone is 47 MB, twice per pair batch); by default glibc maps each block of
    more than 32 MB afresh, and the kernel zeroes its pages one fault at a time: 25 ms of a 700 ms step
    here. The process keeps its peak memory instead (freed blocks wait for reuse). Takes effect once
    per process, on Linux with glibc (the trainers and `Runtime.resolve` call it); True where it did."""
    global _memory_kept
    if _memory_kept:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        _memory_kept = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc
        return False
    return _memory_kept


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`; to a GPU through pinned memory without blocking, so that the copy
    overlaps the kernels already queued."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


CPU = Runtime()
