"""Multi-head self-attention, chosen by name in the BERT config.

`standard` is softmax(Q K^T / sqrt(d)) V over the non-padded keys. Q, K and V
come from one fused projection (one matrix product instead of three); the
checkpoint's separate query/key/value weights are concatenated on loading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("standard",)


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

    def forward(self, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """`key_mask` is boolean (batch, 1, 1, length), True where a key may be attended."""
        batch, length, hidden_size = hidden.shape
        qkv = self.qkv(hidden).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, length, head_dim)
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0)
        return context.transpose(1, 2).reshape(batch, length, hidden_size)
