"""The one-pass CPU updates of AdamW and SophiaG (`optim_kernels.c`): compiled on first use, called
through ctypes, the work split between threads.

Written as tensor operations, an update sweeps weights, gradients and moments through memory once per
operation: on a 2-core CPU the AdamW step over MiniLM's 22.7M weights took 4 to 5 times torch's fused
AdamW. The C loop reads and writes each array once, so it runs near the memory floor.

The library is built with the machine's C compiler ($CC, else `cc` or `gcc`) for this processor
(`-march=native`) into a cache folder ($MINBERT_KERNEL_CACHE, else ~/.cache/minbert/kernels) under a
name keyed by the source, flags, compiler and processor, written atomically, so a second process (or
a parallel test worker) loads it at once. Where no compiler works, `available()` is False and the
optimizers take their multi-tensor path, the same update in tensor operations, with one warning.
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

SOURCE = Path(__file__).with_name("optim_kernels.c")
# -ffp-contract=off: a * b + c rounds twice, as torch's separate operations do; -fno-math-errno lets
# sqrtf vectorise (no errno to set: a negative second moment cannot occur).
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC")
ALIGN = 16  # elements (64 bytes): threads' shares start on their own cache line
SERIAL_BELOW = 1 << 16  # elements: a smaller step runs in one thread (a thread hand-off costs more)

_float_pp = ctypes.POINTER(ctypes.c_void_p)
_i64_p = ctypes.POINTER(ctypes.c_int64)
_f64_p = ctypes.POINTER(ctypes.c_double)


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


def _build() -> Path:
    """The compiled library's path, building it if this source, compiler and processor have none yet."""
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C compiler found (set $CC, or install gcc)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\n".join([SOURCE.read_text(), *FLAGS, version, _processor()]).encode()).hexdigest()
    target = _cache_dir() / f"optim_kernels-{key[:16]}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        done = subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE), "-lm"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"{compiler} could not build {SOURCE.name}: {done.stderr.strip()[:500]}")
        os.replace(built, target)  # atomic: a concurrent build writes the same bytes
    return target


@cache
def _library() -> ctypes.CDLL | None:
    try:
        library = ctypes.CDLL(str(_build()))
    except (OSError, subprocess.SubprocessError) as exc:
        warnings.warn(f"minbert.optim: the one-pass CPU update is not available ({exc}); AdamW and SophiaG "
                      "use their multi-tensor update, the same arithmetic but slower", stacklevel=3)
        return None
    library.adamw_update.argtypes = [ctypes.c_int64, _float_pp, _float_pp, _float_pp, _float_pp, _i64_p,
                                     _f64_p, _f64_p, ctypes.c_double, ctypes.c_double, ctypes.c_double,
                                     ctypes.c_double]
    library.sophia_update.argtypes = [ctypes.c_int64, _float_pp, _float_pp, _float_pp, _float_pp, _i64_p,
                                      _f64_p, ctypes.c_double, ctypes.c_double, ctypes.c_double, _i64_p]
    for function in (library.adamw_update, library.sophia_update):
        function.restype = None
    return library


def available() -> bool:
    """Whether the compiled update can be used on this machine (building it on first call)."""
    return _library() is not None


def eligible(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether the kernel can update these tensors in place: float32, contiguous, on the CPU."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)


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


def _in_parallel(work: Callable[[Any], None], runs: list) -> None:
    """`work` on every run, the first in this thread and the rest in pool threads (a ctypes call releases
    the GIL, so they run at once)."""
    global _pool, _pool_size
    if len(runs) - 1 > _pool_size:
        _pool_size = len(runs) - 1
        _pool = ThreadPoolExecutor(_pool_size, thread_name_prefix="minbert-optim")
    futures = [_pool.submit(work, run) for run in runs[1:]]
    work(runs[0])
    for future in futures:
        future.result()


def _pointers(tensors: Sequence[torch.Tensor], run: list[tuple[int, int, int]]) -> ctypes.Array:
    return (ctypes.c_void_p * len(run))(*(tensors[t].data_ptr() + 4 * start for t, start, _ in run))


def _doubles(values: Sequence[float], run: list[tuple[int, int, int]]) -> ctypes.Array:
    return (ctypes.c_double * len(run))(*(values[t] for t, _, _ in run))


def _sizes(run: list[tuple[int, int, int]]) -> ctypes.Array:
    return (ctypes.c_int64 * len(run))(*(stop - start for _, start, stop in run))


def adamw(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], exp_avgs: Sequence[torch.Tensor],
          exp_avg_sqs: Sequence[torch.Tensor], step_sizes: Sequence[float], bias2_sqrts: Sequence[float],
          decay: float, beta1: float, beta2: float, eps: float) -> None:
    """AdamW's update of `minbert.optim.AdamW._update_foreach`, in one pass (per-tensor step sizes and
    bias corrections: a weight that missed steps lags)."""
    library = _library()
    runs = shares([w.numel() for w in weights], torch.get_num_threads())

    def work(run: list[tuple[int, int, int]]) -> None:
        library.adamw_update(len(run), _pointers(weights, run), _pointers(grads, run),
                             _pointers(exp_avgs, run), _pointers(exp_avg_sqs, run), _sizes(run),
                             _doubles(step_sizes, run), _doubles(bias2_sqrts, run), decay, beta1, beta2, eps)

    _in_parallel(work, runs)


def sophia(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], exp_avgs: Sequence[torch.Tensor],
           hessians: Sequence[torch.Tensor], scales: Sequence[float], decay: float, beta1: float,
           lr: float) -> tuple[int, int, int]:
    """SophiaG's update of `minbert.optim.SophiaG._update_foreach`, in one pass; returns how many
    coordinates clipped, how many have an estimate (h > 0), and how many of those clipped."""
    library = _library()
    runs = shares([w.numel() for w in weights], torch.get_num_threads())
    counts = [(ctypes.c_int64 * 3)() for _ in runs]

    def work(job: tuple[list[tuple[int, int, int]], ctypes.Array]) -> None:
        run, out = job
        library.sophia_update(len(run), _pointers(weights, run), _pointers(grads, run),
                              _pointers(exp_avgs, run), _pointers(hessians, run), _sizes(run),
                              _doubles(scales, run), decay, beta1, lr, out)

    _in_parallel(work, list(zip(runs, counts, strict=True)))
    clipped, estimated, both = (sum(c[i] for c in counts) for i in range(3))
    return clipped, estimated, both
