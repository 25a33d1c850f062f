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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    threshold = round(p * _LEVELS)
    keep_scale = _LEVELS / (_LEVELS - threshold)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), (1 << 63) - 1)
    keep = bits.view(torch.int16)[:n].view(x.shape) >= threshold - _LEVELS // 2
    return torch.where(keep, x, 0).mul_(keep_scale)


class Dropout(nn.Module):
    """Drop-in for `torch.nn.Dropout` using `dropout` above."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
