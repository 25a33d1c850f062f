"""PCGrad gradient surgery (Yu et al., "Gradient Surgery for Multi-Task Learning", 2020).

Each task's gradient g_i is projected off every other task's gradient g_j it
conflicts with (g_i . g_j < 0): g_i <- g_i - (g_i . g_j) / |g_j|^2 g_j, the other
tasks taken in a random order and always in their original, unprojected form.
The projected gradients are then summed (or averaged). A zero-norm gradient is
never divided by: a task with no gradient conflicts with nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def project_conflicting(grads: Sequence[torch.Tensor],
                        generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """PCGrad's projection of flat per-task gradients; returns new tensors."""
    originals = [g.detach() for g in grads]
    squared_norms = [float(g.double().pow(2).sum()) for g in originals]
    projected = []
    for i, g in enumerate(originals):
        g = g.clone()
        others = [j for j in range(len(originals)) if j != i]
        order = torch.randperm(len(others), generator=generator).tolist()
        for k in order:
            j = others[k]
            if squared_norms[j] == 0.0:
                continue
            dot = float(torch.dot(g.double(), originals[j].double()))
            if dot < 0.0:
                g.sub_(originals[j], alpha=dot / squared_norms[j])
        projected.append(g)
    return projected


def pcgrad_backward(losses: Sequence[torch.Tensor], params: Sequence[torch.nn.Parameter],
                    reduction: str = "sum", generator: torch.Generator | None = None) -> dict:
    """Backward for several task losses with PCGrad; adds the result to each `param.grad`.

    Returns how many task pairs conflicted before projection, for logging.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; use 'sum' or 'mean'")
    params = [p for p in params if p.requires_grad]
    flat = []
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, p in zip(grads, params, strict=True)]))
    conflicts = sum(1 for i in range(len(flat)) for j in range(i + 1, len(flat))
                    if float(torch.dot(flat[i].double(), flat[j].double())) < 0.0)
    combined = torch.stack(project_conflicting(flat, generator)).sum(0)
    if reduction == "mean":
        combined /= len(flat)
    offset = 0
    for p in params:
        piece = combined[offset: offset + p.numel()].view_as(p)
        offset += p.numel()
        if p.grad is None:
            p.grad = piece.clone()
        else:
            p.grad.add_(piece)
    return {"conflicting_pairs": conflicts, "pairs": len(flat) * (len(flat) - 1) // 2}
