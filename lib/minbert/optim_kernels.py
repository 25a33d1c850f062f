"""The one-pass CPU updates of AdamW and SophiaG (`optim_kernels.c`, built and split between threads
by `minbert.cpu_kernels`).

Written as tensor operations, an update sweeps weights, gradients and moments through memory once per
operation: on a 2-core CPU the AdamW step over MiniLM's 22.7M weights took 4 to 5 times torch's fused
AdamW. The C loop reads and writes each array once, so it runs near the memory floor. Where it cannot be
built, `available()` is False and the optimizers take their multi-tensor path, the same update in tensor
operations, with one warning.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from functools import cache

import torch

from minbert.cpu_kernels import declare, eligible, in_parallel, library, shares

__all__ = ["adamw", "available", "eligible", "sophia"]

_float_pp = ctypes.POINTER(ctypes.c_void_p)
_i64_p = ctypes.POINTER(ctypes.c_int64)
_f64_p = ctypes.POINTER(ctypes.c_double)


@cache
def _library() -> ctypes.CDLL | None:
    found = library("optim_kernels", "the optimizers' one-pass update")
    if found is not None:
        declare(found.adamw_update, ctypes.c_int64, _float_pp, _float_pp, _float_pp, _float_pp, _i64_p,
                _f64_p, _f64_p, ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_double)
        declare(found.sophia_update, ctypes.c_int64, _float_pp, _float_pp, _float_pp, _float_pp, _i64_p,
                _f64_p, ctypes.c_double, ctypes.c_double, ctypes.c_double, _i64_p)
    return found


def available() -> bool:
    """Whether the compiled update can be used on this machine (building it on first call)."""
    return _library() is not None


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
    compiled = _library()
    runs = shares([w.numel() for w in weights], torch.get_num_threads())

    def work(run: list[tuple[int, int, int]]) -> None:
        compiled.adamw_update(len(run), _pointers(weights, run), _pointers(grads, run),
                             _pointers(exp_avgs, run), _pointers(exp_avg_sqs, run), _sizes(run),
                             _doubles(step_sizes, run), _doubles(bias2_sqrts, run), decay, beta1, beta2, eps)

    in_parallel(work, runs)


def sophia(weights: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], exp_avgs: Sequence[torch.Tensor],
           hessians: Sequence[torch.Tensor], scales: Sequence[float], decay: float, beta1: float,
           lr: float) -> tuple[int, int, int]:
    """SophiaG's update of `minbert.optim.SophiaG._update_foreach`, in one pass; returns how many
    coordinates clipped, how many have an estimate (h > 0), and how many of those clipped."""
    compiled = _library()
    runs = shares([w.numel() for w in weights], torch.get_num_threads())
    counts = [(ctypes.c_int64 * 3)() for _ in runs]

    def work(job: tuple[list[tuple[int, int, int]], ctypes.Array]) -> None:
        run, out = job
        compiled.sophia_update(len(run), _pointers(weights, run), _pointers(grads, run),
                              _pointers(exp_avgs, run), _pointers(hessians, run), _sizes(run),
                              _doubles(scales, run), decay, beta1, lr, out)

    in_parallel(work, list(zip(runs, counts, strict=True)))
    clipped, estimated, both = (sum(c[i] for c in counts) for i in range(3))
    return clipped, estimated, both
