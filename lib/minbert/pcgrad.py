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
    costs one T x T matrix instead of passes over millions of weights. In float64, on the gram's
    device and without reading it on the host (the branch "project only where they conflict" is a
    `where`): on a GPU the step waits for nothing. The random order of the other tasks comes from the
    CPU `generator`.
    """
    gram = gram.detach().double()
    tasks = gram.shape[0]
    coefficients = torch.eye(tasks, dtype=torch.float64, device=gram.device)
    tiny = torch.finfo(torch.float64).tiny
    for i in range(tasks):
        others = [j for j in range(tasks) if j != i]
        for k in torch.randperm(len(others), generator=generator).tolist():
            j = others[k]
            dot = coefficients[i] @ gram[:, j]  # p_i . g_j
            conflicts = (dot < 0.0) & (gram[j, j] > 0.0)  # a zero-norm g_j conflicts with nothing
            coefficients[i, j] -= torch.where(conflicts, dot / gram[j, j].clamp_min(tiny), 0.0)
    return coefficients


def project_conflicting(grads: Sequence[torch.Tensor],
                        generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """PCGrad's projection of flat per-task gradients; returns new tensors."""
    stacked = torch.stack([g.detach() for g in grads])
    coefficients = pcgrad_coefficients(stacked @ stacked.T, generator)
    return list(coefficients.to(dtype=stacked.dtype) @ stacked)


def pcgrad_backward(losses: Sequence[torch.Tensor], params: Sequence[torch.nn.Parameter],
                    reduction: str = "sum", generator: torch.Generator | None = None) -> dict:
    """Backward for several task losses with PCGrad; adds the result to each `param.grad`.

    Returns how many task pairs conflicted before projection (a 0-dim tensor on the gradients'
    device: reading it waits for the step), for logging. Each task's gradient is written straight into
    one (tasks, weights) matrix, the graph is freed by the last task's pass, and the weights' gradients
    are views of the one combined vector: the peak is one copy of the per-task gradients.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; use 'sum' or 'mean'")
    params = [p for p in params if p.requires_grad]
    numel = sum(p.numel() for p in params)
    stacked = None
    for t, loss in enumerate(losses):
        last = t == len(losses) - 1
        grads = torch.autograd.grad(loss, params, retain_graph=not last, allow_unused=True)
        pieces = [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params,
                                                                                              strict=True)]
        if stacked is None:
            stacked = pieces[0].new_empty((len(losses), numel))
        torch.cat(pieces, out=stacked[t])
        del grads, pieces
    gram = (stacked @ stacked.T).detach().double()
    conflicts = (gram.triu(diagonal=1) < 0).sum()
    weights = pcgrad_coefficients(gram, generator).sum(0)  # sum_i p_i = sum_j w_j g_j
    if reduction == "mean":
        weights /= len(losses)
    combined = weights.to(dtype=stacked.dtype) @ stacked
    del stacked
    offset = 0
    for p in params:
        piece = combined[offset: offset + p.numel()].view_as(p)
        offset += p.numel()
        if p.grad is None:
            p.grad = piece
        else:
            p.grad.add_(piece)
    return {"conflicting_pairs": conflicts, "pairs": len(losses) * (len(losses) - 1) // 2}
