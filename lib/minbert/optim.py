"""Our own optimisers. AdamW (Loshchilov and Hutter): Adam with decoupled weight decay."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer


class AdamW(Optimizer):
    """Adam with bias correction and weight decay applied to the weights, not the gradient.

    The update per parameter p with gradient g, step t:
        p <- p * (1 - lr * weight_decay)
        m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
        p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    (without bias correction the two factors are 1). Subclassing
    torch.optim.Optimizer gives parameter groups and state-dict save/load.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, correct_bias: bool = True) -> None:
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr}: must be >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        if eps < 0.0:
            raise ValueError(f"invalid eps {eps}: must be >= 0")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay {weight_decay}: must be >= 0")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        correct_bias=correct_bias)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("AdamW does not support sparse gradients")
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            # Parameters of a group share hyper-parameters but may differ in step count
            # (one joined later): update each step count as one multi-tensor batch.
            by_step: dict[int, list[torch.Tensor]] = {}
            for p in params:
                by_step.setdefault(self.state[p]["step"], []).append(p)
            for step, batch in by_step.items():
                self._update(batch, group, step)
        return loss

    def _update(self, params: list[torch.Tensor], group: dict, step: int) -> None:
        """One AdamW step for tensors sharing hyper-parameters and step count, with
        multi-tensor (foreach) kernels: a handful of launches instead of a few per tensor."""
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        grads = [p.grad for p in params]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]

        if group["weight_decay"]:
            torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)

        denoms = torch._foreach_sqrt(exp_avg_sqs)
        if group["correct_bias"]:
            step_size = lr / (1.0 - beta1 ** step)
            torch._foreach_div_(denoms, math.sqrt(1.0 - beta2 ** step))
        else:
            step_size = lr
        torch._foreach_add_(denoms, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denoms, value=-step_size)
