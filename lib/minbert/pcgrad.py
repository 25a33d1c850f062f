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


def pcgrad_coefficients(gram: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad on the Gram matrix of the task gradients (gram[i, j] = g_i . g_j).

    Every projected gradient is a combination of the original ones, p_i = sum_j C[i, j] g_j,
    and every dot product PCGrad needs follows from the Gram matrix, so the projection
    costs one T x T matrix instead of passes over millions of weights. The loop runs on the CPU, in
    float64, whatever device the gradients are on (the coefficients are T x T numbers).
    """
    gram = gram.detach().double().cpu()
    tasks = gram.shape[0]
    coefficients = torch.eye(tasks, dtype=torch.float64)
    for i in range(tasks):
        others = [j for j in range(tasks) if j != i]
        for k in torch.randperm(len(others), generator=generator).tolist():
            j = others[k]
            if gram[j, j] <= 0.0:
                continue
            dot = float(coefficients[i] @ gram[:, j])  # p_i . g_j
            if dot < 0.0:
                coefficients[i, j] -= dot / float(gram[j, j])
    return coefficients


def project_conflicting(grads: Sequence[torch.Tensor],
                        generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """PCGrad's projection of flat per-task gradients; returns new tensors."""
    stacked = torch.stack([g.detach() for g in grads])
    coefficients = pcgrad_coefficients(stacked @ stacked.T, generator)
    return list(coefficients.to(device=stacked.device, dtype=stacked.dtype) @ stacked)


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
    stacked = torch.stack(flat)
    gram = (stacked @ stacked.T).detach().double().cpu()  # the step's one host read: T x T numbers
    conflicts = int((gram.triu(diagonal=1) < 0).sum())
    weights = pcgrad_coefficients(gram, generator).sum(0)  # sum_i p_i = sum_j w_j g_j
    if reduction == "mean":
        weights /= len(flat)
    combined = weights.to(device=stacked.device, dtype=stacked.dtype) @ stacked
    offset = 0
    for p in params:
        piece = combined[offset: offset + p.numel()].view_as(p)
        offset += p.numel()
        if p.grad is None:
            p.grad = piece.clone()
        else:
            p.grad.add_(piece)
    return {"conflicting_pairs": conflicts, "pairs": len(flat) * (len(flat) - 1) // 2}
