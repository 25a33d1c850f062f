"""Dropout with a cheaper random mask on the CPU.

`torch.nn.Dropout` draws one Bernoulli sample per element from the CPU's
Mersenne-Twister generator; in a BERT training step on two cores that costs
about as much as all LayerNorms, GELUs and softmaxes together. Here one 64-bit
draw serves four elements: its bits, read as four 16-bit integers, are compared
with a threshold. The drop probability becomes round(p * 65536) / 65536 (within
1e-5 of p) and the kept values are scaled by exactly 1 / (1 - that), so the
expected output equals the input. The draws come from torch's default generator,
so `torch.manual_seed` makes them reproducible. On a GPU, torch's fused dropout is
already fast and is used as it is.

The mask is applied in one pass each way by a C loop (`dropout_kernel.c`, float32
and bfloat16 tensors), where the same arithmetic as tensor operations takes three:
`reference_dropout` below, the same draws and results, is what it is tested against
and what runs where the loop cannot be built or takes no such tensor.
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from minbert.cpu_kernels import declare, eligible, library

_LEVELS = 1 << 16
_KERNEL_DTYPES = (torch.float32, torch.bfloat16)


def _draws(n: int) -> torch.Tensor:
    """`n` 16-bit draws from torch's default generator: one 64-bit draw serves four."""
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), (1 << 63) - 1)
    return bits.view(torch.int16)[:n]


def _mask(p: float) -> tuple[int, float]:
    """The draw at and above which an element is kept, and the kept elements' scale."""
    threshold = round(p * _LEVELS)
    return threshold - _LEVELS // 2, _LEVELS / (_LEVELS - threshold)


def _check(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    _check(p)
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    threshold, scale = _mask(p)
    draws = _draws(x.numel())
    if eligible([x], _KERNEL_DTYPES) and _kernel() is not None:
        return _MaskedScale.apply(x, draws, threshold, scale)
    return _masked(x, draws, threshold, scale)


def reference_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """`dropout` in training, written as tensor operations: the same draws, the same results."""
    _check(p)
    threshold, scale = _mask(p)
    return _masked(x, _draws(x.numel()), threshold, scale)


def _masked(x: torch.Tensor, draws: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """The mask as tensor operations: three passes each way (compare, select, scale)."""
    return torch.where(draws.view(x.shape) >= threshold, x, 0).mul_(scale)


@cache
def _kernel() -> ctypes.CDLL | None:
    found = library("dropout_kernel", "dropout's one-pass mask")
    if found is not None:
        for function in (found.dropout_float32, found.dropout_bfloat16):
            declare(function, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int16, ctypes.c_void_p,
                    ctypes.c_float, ctypes.c_void_p)
    return found


def _apply(draws: torch.Tensor, threshold: int, x: torch.Tensor, scale: float) -> torch.Tensor:
    """The kept elements of contiguous `x` scaled, the rest 0. In this thread: a pass over a layer's
    activations takes a fraction of a millisecond, and handing half of it to a second thread while
    torch's own threads wait for work made the training step slower, not faster."""
    out = torch.empty_like(x)
    kernel = _kernel()
    function = kernel.dropout_float32 if x.dtype == torch.float32 else kernel.dropout_bfloat16
    function(x.numel(), draws.data_ptr(), threshold, x.data_ptr(), scale, out.data_ptr())
    return out


class _MaskedScale(torch.autograd.Function):
    """x -> where(draw >= threshold, x * scale, 0); its gradient is the same map of the gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, draws: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
        ctx.save_for_backward(draws)
        ctx.threshold, ctx.scale = threshold, scale
        return _apply(draws, threshold, x, scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (draws,) = ctx.saved_tensors  # the gradient has the output's dtype, one the loop takes
        return _apply(draws, ctx.threshold, grad.contiguous(), ctx.scale), None, None, None


class Dropout(nn.Module):
    """Drop-in for `torch.nn.Dropout` using `dropout` above."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        _check(p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
