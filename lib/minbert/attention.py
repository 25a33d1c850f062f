"""Multi-head self-attention, chosen by name in the BERT config, and token packing.

`standard` is softmax(Q K^T / sqrt(d)) V over the non-padded keys. Q, K and V
come from one fused projection (one matrix product instead of three); the
checkpoint's separate query/key/value weights are concatenated on loading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minbert.dropout import dropout

VARIANTS = ("standard",)


@dataclass
class Packing:
    """Where the real tokens of a padded (batch, length) batch sit among its batch * length slots.

    Token-wise work (projections, feed-forward, LayerNorm, dropout) runs on the
    real tokens only, packed as (tokens, ...); attention alone needs the padded
    (batch, length) layout, for the softmax within each sequence.
    """

    batch: int
    length: int
    index: torch.Tensor | None  # slots of the real tokens; None when nothing is padded
    key_mask: torch.Tensor | None  # (batch, 1, 1, length), True at real keys; None when no padding

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor) -> Packing:
        batch, length = attention_mask.shape
        real = attention_mask.bool()
        if bool(real.all()):
            return cls(batch, length, None, None)
        return cls(batch, length, real.flatten().nonzero().squeeze(1), real[:, None, None, :])

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """(batch, length, ...) to (real tokens, ...)."""
        flat = padded.reshape(self.batch * self.length, *padded.shape[2:])
        return flat if self.index is None else flat.index_select(0, self.index)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """(real tokens, ...) to (batch, length, ...), with zeros at padded slots."""
        if self.index is not None:
            packed = packed.new_zeros(self.batch * self.length, *packed.shape[1:]).index_copy(
                0, self.index, packed)
        return packed.view(self.batch, self.length, *packed.shape[1:])


class SelfAttention(nn.Module):
    """Multi-head self-attention over a (batch, length, hidden) input."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float,
                 variant: str = "standard") -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of "
                             f"num_attention_heads {num_heads}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown attention variant {variant!r}; known: {list(VARIANTS)}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.variant = variant
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, hidden: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Packed (tokens, hidden) in, packed (tokens, hidden) out."""
        hidden_size = hidden.shape[-1]
        qkv = packing.unpack(self.qkv(hidden))
        qkv = qkv.view(packing.batch, packing.length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, length, head_dim)
        if self.training and self.dropout > 0 and hidden.device.type == "cpu":
            context = self._attend_with_dropout(q, k, v, packing.key_mask)
        else:  # fused kernels: flash attention without a mask, or a GPU's fused dropout
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=packing.key_mask, dropout_p=self.dropout if self.training else 0.0)
        return packing.pack(context.transpose(1, 2).reshape(packing.batch, packing.length, hidden_size))

    def _attend_with_dropout(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             key_mask: torch.Tensor | None) -> torch.Tensor:
        """Attention written out, for training on the CPU: there SDPA falls back to this same
        computation but with torch's slower dropout on the probabilities."""
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask, float("-inf"))
        probs = dropout(scores.softmax(dim=-1), self.dropout, training=True)
        return probs.to(v.dtype) @ v
