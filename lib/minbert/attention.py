"""Multi-head self-attention and its variants, chosen by name in the BERT config; token packing.

`standard` is softmax(Q K^T / sqrt(d)) V over the non-padded keys. Q, K and V
come from one fused projection (one matrix product instead of three); the
checkpoint's separate query/key/value weights are concatenated on loading.

The study's generalisations, combinable with `+` (e.g. `center+linear+sparsemax`):

- `linear`: scores from (a1 Q + a2 K + a3)(b1 Q + b2 K + b3)^T / sqrt(d), with
  learned coefficients per head (the study had one set per layer); `linear-nobias`
  drops a3 and b3. They start at a = (1, 0, 0), b = (0, 1, 0): standard attention.
- `center`: softmax(Q W K^T / sqrt(d)) with a learned d x d matrix W per head,
  starting at the identity: standard attention.
- `sparsemax`: sparsemax (Martins and Astudillo, 2016) instead of softmax, so that
  attention can put exactly zero weight on tokens. It has no parameter that makes
  it equal to softmax, so it changes a pretrained model's outputs from the start.

Linear and center only change Q and K before the scores, so they keep the fused
attention kernels; sparsemax needs the scores written out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minbert.dropout import dropout
from minbert.runtime import to_device

COMPONENTS = ("center", "linear", "linear-nobias", "sparsemax")  # in canonical order
STUDY_VARIANTS = ("standard", "linear", "sparsemax", "center", "linear+sparsemax", "center+sparsemax",
                  "center+linear", "center+linear+sparsemax")
VARIANTS = STUDY_VARIANTS + ("linear-nobias", "linear-nobias+sparsemax", "center+linear-nobias",
                             "center+linear-nobias+sparsemax")
# Parameters a variant adds to a layer; a checkpoint without them loads, and they keep their start.
VARIANT_PARAMETERS = ("query_mix", "key_mix", "center")


def parse_variant(name: str) -> tuple[str, ...]:
    """The components of a variant name, in canonical order; `standard` is none."""
    if name == "standard":
        return ()
    parts = name.split("+")
    problems = [p for p in parts if p not in COMPONENTS]
    if problems or len(set(parts)) != len(parts) or {"linear", "linear-nobias"} <= set(parts):
        raise ValueError(f"unknown attention variant {name!r}: combine with '+' at most one each of "
                         f"{list(COMPONENTS)} (linear or linear-nobias, not both), or use 'standard'; "
                         f"known: {list(VARIANTS)}")
    return tuple(c for c in COMPONENTS if c in parts)


def canonical_variant(name: str) -> str:
    """`sparsemax+center` -> `center+sparsemax`; errors name what is wrong."""
    return "+".join(parse_variant(name)) or "standard"


class _Sparsemax(torch.autograd.Function):
    """Sparsemax along the last axis: forward by sorting, backward from the support."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor) -> torch.Tensor:
        ordered = scores.sort(dim=-1, descending=True).values
        ranks = torch.arange(1, scores.shape[-1] + 1, device=scores.device, dtype=scores.dtype)
        cumulative = ordered.cumsum(-1)
        # Masked (-inf) scores never enter the support: 1 + k * (-inf) > cumsum is false.
        support_size = (1 + ranks * ordered > cumulative).sum(-1, keepdim=True)
        threshold = (cumulative.gather(-1, support_size - 1) - 1) / support_size.to(scores.dtype)
        probs = (scores - threshold).clamp_min(0)
        ctx.save_for_backward(probs)
        return probs

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (probs,) = ctx.saved_tensors
        support = probs > 0
        grad = grad * support
        mean_on_support = grad.sum(-1, keepdim=True) / support.sum(-1, keepdim=True)
        return torch.where(support, grad - mean_on_support, 0)


def sparsemax(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The Euclidean projection of `scores` onto the probability simplex along `dim`.

    Like softmax it gives non-negative weights summing to 1, but those below a
    threshold are exactly 0. Entries at -inf (masked) get 0. Computed in float32 at
    least, whatever the input's precision.
    """
    work = scores.movedim(dim, -1)
    out = _Sparsemax.apply(work.float() if work.dtype in (torch.float16, torch.bfloat16) else work)
    return out.to(scores.dtype).movedim(-1, dim)


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

    def to(self, device: torch.device) -> Packing:
        """The packing with its tensors on `device` (found on the host, where it costs no device sync)."""
        if self.index is None:
            return self
        index, key_mask = to_device(self.index, device), to_device(self.key_mask, device)
        return Packing(self.batch, self.length, index, key_mask)

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


def variant_movement(model: nn.Module) -> list[dict[str, float]]:
    """Per attention layer of `model` (in order) whose variant has parameters of its own, how far
    each moved from its start (relative norm); empty for standard attention and sparsemax alone."""
    layers = [m for m in model.modules() if isinstance(m, SelfAttention)]
    return [{"layer": i, **moved} for i, layer in enumerate(layers) if (moved := layer.variant_movement())]


def is_variant_parameter(name: str) -> bool:
    """Whether a parameter's qualified name is one a variant adds (it may get a learning rate of its own)."""
    return name.rsplit(".", 1)[-1] in VARIANT_PARAMETERS


class SelfAttention(nn.Module):
    """Multi-head self-attention over a (batch, length, hidden) input, in one of `VARIANTS`."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float,
                 variant: str = "standard") -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of "
                             f"num_attention_heads {num_heads}")
        components = parse_variant(variant)
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.variant = canonical_variant(variant)
        self.sparsemax = "sparsemax" in components
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.query_mix = self.key_mix = self.center = None
        self._linear_terms = 0
        linear = next((c for c in components if c.startswith("linear")), None)
        if linear:
            self._linear_terms = 2 if linear == "linear-nobias" else 3  # weights of Q, K (and a constant)
        self._has_center = "center" in components
        for name, start in self.variant_start().items():
            setattr(self, name, nn.Parameter(start))

    def variant_start(self) -> dict[str, torch.Tensor]:
        """The variant's own parameters at their start, where the layer is standard attention:
        a = (1, 0, 0) and b = (0, 1, 0) per head (Q' = Q, K' = K), W = I per head."""
        start = {}
        if self._linear_terms:
            mix = torch.eye(2, self._linear_terms).repeat(self.num_heads, 1, 1)  # (heads, 2, terms)
            start.update(query_mix=mix[:, 0].clone(), key_mix=mix[:, 1].clone())
        if self._has_center:
            start["center"] = torch.eye(self.head_dim).repeat(self.num_heads, 1, 1)
        return start

    def forward(self, hidden: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Packed (tokens, hidden) in, packed (tokens, hidden) out."""
        hidden_size = hidden.shape[-1]
        q, k, v = self._heads(hidden, packing)
        written_out = self.sparsemax or (self.training and self.dropout > 0 and hidden.device.type == "cpu")
        if written_out:
            probs = self._probabilities(q, k, packing.key_mask)
            context = dropout(probs, self.dropout, training=self.training).to(v.dtype) @ v
        else:  # fused kernels: flash attention without a mask, or a GPU's fused dropout
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=packing.key_mask, dropout_p=self.dropout if self.training else 0.0)
        return packing.pack(context.transpose(1, 2).reshape(packing.batch, packing.length, hidden_size))

    def probabilities(self, hidden: torch.Tensor, packing: Packing) -> torch.Tensor:
        """The attention weights (batch, heads, query, key) for packed `hidden`, without dropout."""
        q, k, _ = self._heads(hidden, packing)
        return self._probabilities(q, k, packing.key_mask)

    def _heads(self, hidden: torch.Tensor, packing: Packing) -> tuple[torch.Tensor, ...]:
        """Q, K, V as (batch, heads, length, head_dim), Q and K transformed by the variant."""
        qkv = packing.unpack(self.qkv(hidden))
        qkv = qkv.view(packing.batch, packing.length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.query_mix is not None:
            q, k = self._mix(self.query_mix, q, k), self._mix(self.key_mix, q, k)
        if self.center is not None:
            q = q @ self.center.to(q.dtype)  # Q W K^T = (Q W) K^T
        return q, k, v

    def variant_movement(self) -> dict[str, float]:
        """How far training moved each variant parameter: ||theta - start|| / ||start||."""
        moved = {}
        for name, start in self.variant_start().items():
            value = getattr(self, name).detach().float().cpu()
            moved[name] = float(torch.linalg.vector_norm(value - start) / torch.linalg.vector_norm(start))
        return moved

    @staticmethod
    def _mix(weights: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """w0 Q + w1 K (+ w2) per head; weights (heads, 2 or 3)."""
        w = weights.to(q.dtype)[:, :, None, None]  # (heads, terms, 1, 1), broadcast over batch
        mixed = w[:, 0] * q + w[:, 1] * k
        return mixed + w[:, 2] if weights.shape[1] == 3 else mixed

    def _probabilities(self, q: torch.Tensor, k: torch.Tensor,
                       key_mask: torch.Tensor | None) -> torch.Tensor:
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask, float("-inf"))
        return sparsemax(scores) if self.sparsemax else scores.softmax(dim=-1)
