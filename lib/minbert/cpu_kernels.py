"""Our C loops for the CPU (the optimizers' one-pass updates, dropout's mask): compiled on first use,
loaded through ctypes, their work split between threads.

Written as tensor operations, an elementwise update sweeps memory once per operation; a C loop reads
and writes each array once. Each source file in this folder is built with the machine's C compiler
($CC, else `cc` or `gcc`) for this processor (`-march=native`) into a cache folder
($MINBERT_KERNEL_CACHE, else ~/.cache/minbert/kernels) under a name keyed by the source, flags,
compiler and processor, written atomically, so a second process (or a parallel test worker) loads it
at once. Where no compiler works, `library` gives None with one warning, and the callers take their
tensor-operation path, the same arithmetic but slower.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
# -ffp-contract=off: a * b + c rounds twice, as torch's separate operations do; -fno-math-errno lets
# sqrtf vectorise (no errno to set: a negative second moment cannot occur).
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC")
ALIGN = 16  # elements (64 bytes): threads' shares start on their own cache line
SERIAL_BELOW = 1 << 16  # elements: a smaller piece of work runs in one thread (a hand-off costs more)


def _cache_dir() -> Path:
    root = os.environ.get("MINBERT_KERNEL_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "minbert" / "kernels"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _processor() -> str:
    """The processor's model and feature flags: a library built with -march=native runs only on a
    processor with the same features."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return os.uname().machine
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(wanted))


def build(source: Path) -> Path:
    """The compiled library of `source`, building it if this source, compiler and processor have none yet."""
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C compiler found (set $CC, or install gcc)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\n".join([source.read_text(), *FLAGS, version, _processor()]).encode()).hexdigest()
    target = _cache_dir() / f"{source.stem}-{key[:16]}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        done = subprocess.run([compiler, *FLAGS, "-o", str(built), str(source), "-lm"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"{compiler} could not build {source.name}: {done.stderr.strip()[:500]}")
        os.replace(built, target)  # atomic: a concurrent build writes the same bytes
    return target


@cache
def library(name: str, what: str) -> ctypes.CDLL | None:
    """The compiled `<name>.c` of this folder, or None (with one warning naming `what` falls back)
    where it cannot be built or loaded here."""
    try:
        return ctypes.CDLL(str(build(HERE / f"{name}.c")))
    except (OSError, subprocess.SubprocessError) as exc:
        warnings.warn(f"minbert: {what} is not available in C here ({exc}); it runs as tensor operations, "
                      "the same arithmetic but slower", stacklevel=3)
        return None


def declare(function: Any, *argtypes: Any) -> None:
    """A C function's argument types (it returns nothing)."""
    function.argtypes = list(argtypes)
    function.restype = None


def eligible(tensors: Sequence[torch.Tensor], dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> bool:
    """Whether a C loop can take these tensors: of `dtypes`, contiguous, on the CPU."""
    return all(t.device.type == "cpu" and t.dtype in dtypes and t.is_contiguous() for t in tensors)


def shares(sizes: Sequence[int], parts: int) -> list[list[tuple[int, int, int]]]:
    """`parts` runs of about equal elements over tensors of `sizes` elements, in order: each a list of
    (tensor, start, stop); a share starts at a multiple of ALIGN elements of its tensor."""
    total = sum(sizes)
    if parts <= 1 or total < SERIAL_BELOW:
        return [[(t, 0, size) for t, size in enumerate(sizes) if size]]
    quota = -(-total // parts)
    runs: list[list[tuple[int, int, int]]] = [[]]
    room = quota
    for t, size in enumerate(sizes):
        start = 0
        while start < size:
            stop = min(size, start + room)
            if stop < size:  # a cut inside a tensor falls on a cache line
                stop = min(size, -(-stop // ALIGN) * ALIGN)
            runs[-1].append((t, start, stop))
            room -= stop - start
            start = stop
            if room <= 0 and len(runs) < parts:
                runs.append([])
                room = quota
    return [run for run in runs if run]


_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def in_parallel(work: Callable[[Any], None], runs: list) -> None:
    """`work` on every run, the first in this thread and the rest in pool threads (a ctypes call releases
    the GIL, so they run at once)."""
    global _pool, _pool_size
    if len(runs) - 1 > _pool_size:
        _pool_size = len(runs) - 1
        _pool = ThreadPoolExecutor(_pool_size, thread_name_prefix="minbert-kernels")
    futures = [_pool.submit(work, run) for run in runs[1:]]
    work(runs[0])
    for future in futures:
        future.result()
