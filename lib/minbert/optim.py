"""Our own optimisers. AdamW (Loshchilov and Hutter): Adam with decoupled weight decay."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer

from minbert import optim_kernels


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
                 eps: float = 1e-8, weight_decay: float = 0.0, correct_bias: bool = True,
                 foreach: bool | None = None) -> None:
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
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            stepped = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                stepped.append(p)
            if one_pass(self.foreach, _step_tensors(self, stepped, ("exp_avg", "exp_avg_sq"))):
                self._update_one_pass(stepped, group)
            elif stepped:
                self._update_foreach(stepped, group)
        return loss

    def _bias_corrections(self, params: list[torch.Tensor], group: dict) -> tuple[list[float], list[float]]:
        """Each tensor's step size lr / (1 - b1^t) and sqrt(1 - b2^t) at its own step t (1 and lr
        without bias correction)."""
        lr, (beta1, beta2) = group["lr"], group["betas"]
        steps = [self.state[p]["step"] for p in params]  # a head without a gradient last step lags
        if not group["correct_bias"]:
            return [lr] * len(params), [1.0] * len(params)
        return [lr / (1.0 - beta1 ** t) for t in steps], [math.sqrt(1.0 - beta2 ** t) for t in steps]

    def _update_one_pass(self, params: list[torch.Tensor], group: dict) -> None:
        """The update below, each element read and written once (`minbert.optim_kernels`)."""
        step_sizes, bias2_sqrts = self._bias_corrections(params, group)
        optim_kernels.adamw(params, [p.grad for p in params], [self.state[p]["exp_avg"] for p in params],
                            [self.state[p]["exp_avg_sq"] for p in params], step_sizes, bias2_sqrts,
                            1.0 - group["lr"] * group["weight_decay"], *group["betas"], group["eps"])

    def _update_foreach(self, params: list[torch.Tensor], group: dict) -> None:
        """The step for a group's tensors at once, each operation one multi-tensor kernel: on a GPU a
        handful of launches a step instead of several per tensor; on a CPU, the path for what the one-pass
        kernel does not take (float64, say)."""
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        grads = [p.grad for p in params]
        means = [self.state[p]["exp_avg"] for p in params]
        squares = [self.state[p]["exp_avg_sq"] for p in params]
        step_sizes, bias2_sqrts = self._bias_corrections(params, group)
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
        torch._foreach_lerp_(means, grads, 1.0 - beta1)
        torch._foreach_mul_(squares, beta2)
        torch._foreach_addcmul_(squares, grads, grads, value=1.0 - beta2)
        denominators = torch._foreach_sqrt(squares)
        if group["correct_bias"]:
            torch._foreach_div_(denominators, bias2_sqrts)
        torch._foreach_add_(denominators, eps)
        torch._foreach_addcdiv_(params, means, denominators, [-s for s in step_sizes])


def _step_tensors(optimizer: Optimizer, params: list[torch.Tensor], state_keys: tuple[str, ...]) -> list:
    """Every tensor a step writes or reads: the weights, their gradients and the named state."""
    return [*params, *(p.grad for p in params), *(optimizer.state[p][k] for p in params for k in state_keys)]


def one_pass(foreach: bool | None, tensors: list[torch.Tensor]) -> bool:
    """Whether a group's step takes the one-pass CPU kernel: by default wherever it can (float32 tensors
    on the CPU, the kernel built), the multi-tensor kernels elsewhere (a GPU; float64); `foreach=True`
    asks for the multi-tensor kernels, `foreach=False` for the one-pass kernel."""
    if not tensors:
        return False
    if foreach is None:
        return optim_kernels.eligible(tensors) and optim_kernels.available()
    if foreach:
        return False
    if not optim_kernels.eligible(tensors):
        raise ValueError("foreach=False asks for the one-pass CPU kernel: float32 CPU tensors only")
    if not optim_kernels.available():
        raise RuntimeError("foreach=False asks for the one-pass CPU kernel, which could not be built here")
    return True


class SophiaG(Optimizer):
    """Sophia with the Gauss-Newton-Bartlett Hessian estimate (Liu et al., 2023, arXiv 2305.14342).

    Per parameter p with gradient g:
        p <- p * (1 - lr * weight_decay)
        m <- b1 m + (1 - b1) g
        p <- p - lr * sign(m) * min(|m| / (rho * bs * h + 1e-15), 1)
    so each coordinate moves by at most lr: a Newton-like step m / h where the
    curvature estimate is trusted, a clipped sign step where it is small or stale.
    `h` is an EMA, h <- b2 h + (1 - b2) g_hat^2, refreshed by `update_hessian()`
    every k steps from the gradient g_hat of the loss on labels *sampled from the
    model's own predictions* (the caller computes it; see
    `minbert.multitask.sampled_label_loss`). g_hat is the gradient of a mean over
    bs predictions, so bs * g_hat^2 estimates the Gauss-Newton diagonal: hence bs
    in `step`. Defaults are the reference implementation's.

    The EMA starts at 0, so with a refresh every k = 10 steps and b2 = 0.99 it holds only
    1 - 0.99^n of its level after n refreshes (5% after 50 steps): the ratio clips nearly
    everywhere and Sophia runs as sign descent, lr * sign(m). `bias_correction` (our
    addition, off by default to stay faithful) divides h by 1 - b2^n, as Adam does for its
    second moment. Each step counts the coordinates whose step was clipped
    (`clipped_share`), so a run can say which regime it was in.
    """

    def __init__(self, params: Iterable, lr: float = 1e-4, betas: tuple[float, float] = (0.965, 0.99),
                 rho: float = 0.04, weight_decay: float = 0.1, bias_correction: bool = False,
                 foreach: bool | None = None) -> None:
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr}: must be >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        if rho < 0.0:
            raise ValueError(f"invalid rho {rho}: must be >= 0")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay {weight_decay}: must be >= 0")
        super().__init__(params, dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay,
                                      bias_correction=bias_correction))
        self._clipped = self._counted = 0
        self._clipped_estimated = self._estimated = 0  # the same among coordinates with h > 0
        self._last_bs: int | None = None
        self.foreach = foreach

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["hessian_updates"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @staticmethod
    def _hessian_scale(state: dict, group: dict) -> float:
        """What h is multiplied by before use: 1, or with bias correction 1 / (1 - b2^n)."""
        updates = state.get("hessian_updates", 0)
        if not group.get("bias_correction") or updates == 0:
            return 1.0
        return 1.0 / (1.0 - group["betas"][1] ** updates)

    def clipped_share(self, reset: bool = True, estimated_only: bool = False) -> float:
        """The share of coordinate updates since the last reset whose step was clipped to lr * sign(m)
        (|m| >= rho * bs * h); NaN before any step. With `estimated_only`, among the coordinates that
        have a Hessian estimate (h > 0): a coordinate no refresh reached (an embedding row absent from
        the refresh batches) always clips, which says nothing about the estimate."""
        clipped, counted = ((self._clipped_estimated, self._estimated) if estimated_only
                            else (self._clipped, self._counted))
        share = float(clipped) / float(counted) if float(counted) else math.nan
        if reset:
            self._clipped = self._counted = 0
            self._clipped_estimated = self._estimated = 0
        return share

    @torch.no_grad()
    def hessian_mean(self) -> float:
        """The mean of the Hessian estimate over all coordinates, as the step uses it (bias-corrected
        where that is on); NaN before the first refresh."""
        total, count = 0.0, 0
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state and state.get("hessian_updates", 0):
                    total += float(state["hessian"].double().sum()) * self._hessian_scale(state, group)
                    count += state["hessian"].numel()
        return total / count if count else math.nan

    @torch.no_grad()
    def rho_unclipping(self, share: float = 0.5, sample: int = 1_000_000, seed: int = 0) -> float:
        """The rho at which `share` of the coordinates with an estimate (h > 0) would take a Newton-like
        step instead of a clipped one, at the current state and the last step's bs: a coordinate
        clips while rho <= |m| / (bs * h), so this is that ratio's `share` quantile (over a seeded
        sample of at most `sample` coordinates). Far above the run's rho, Sophia ran as sign descent;
        NaN before any step with an estimate."""
        if self._last_bs is None:
            return math.nan
        ratios = []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if not state or not state.get("hessian_updates", 0):
                    continue
                h = state["hessian"].reshape(-1) * (self._last_bs * self._hessian_scale(state, group))
                known = h > 0
                ratios.append(state["exp_avg"].reshape(-1)[known].abs() / h[known])
        if not ratios:
            return math.nan
        values = torch.cat(ratios).double()
        if values.numel() > sample:
            generator = torch.Generator().manual_seed(seed)
            values = values[torch.randint(values.numel(), (sample,), generator=generator)]
        return float(torch.quantile(values, 1.0 - share))

    @torch.no_grad()
    def update_hessian(self) -> None:
        """Fold the squared current `.grad` (from a loss on sampled labels) into the Hessian EMA."""
        for group in self.param_groups:
            beta2 = group["betas"][1]
            for p in group["params"]:
                if p.grad is not None:
                    state = self._state(p)
                    state["hessian"].mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                    state["hessian_updates"] = state.get("hessian_updates", 0) + 1

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None, bs: int = 5120) -> float | None:
        """One update; `bs` is the number of predictions the Hessian's gradients averaged over."""
        if bs <= 0:
            raise ValueError(f"bs must be positive, got {bs}")
        self._last_bs = bs
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            stepped = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("SophiaG does not support sparse gradients")
                self._state(p)["step"] += 1
                stepped.append(p)
            if one_pass(self.foreach, _step_tensors(self, stepped, ("exp_avg", "hessian"))):
                self._update_one_pass(stepped, group, bs)
            elif stepped:
                self._update_foreach(stepped, group, bs)
        return loss

    def _scales(self, params: list[torch.Tensor], group: dict, bs: int) -> list[float]:
        """What each tensor's Hessian estimate is multiplied by in the step: rho * bs (bias-corrected)."""
        return [group["rho"] * bs * self._hessian_scale(self.state[p], group) for p in params]

    def _update_one_pass(self, params: list[torch.Tensor], group: dict, bs: int) -> None:
        """The update below, each element read and written once (`minbert.optim_kernels`)."""
        clipped, estimated, both = optim_kernels.sophia(
            params, [p.grad for p in params], [self.state[p]["exp_avg"] for p in params],
            [self.state[p]["hessian"] for p in params], self._scales(params, group, bs),
            1.0 - group["lr"] * group["weight_decay"], group["betas"][0], group["lr"])
        self._clipped += clipped
        self._estimated += estimated
        self._clipped_estimated += both
        self._counted += sum(p.numel() for p in params)

    def _update_foreach(self, params: list[torch.Tensor], group: dict, bs: int) -> None:
        """The step for a group's tensors in multi-tensor kernels: the GPU's path, and the CPU's for what
        the one-pass kernel does not take. The clipped coordinates are counted without a comparison
        kernel per tensor: after the clamp a clipped ratio is exactly 1 and every other lies in [0, 1),
        so floor(ratio) marks the clipped ones and sign(h) those with an estimate (h >= 0); their L1
        norms are the counts, exact in float32 below 2^24 coordinates a tensor."""
        lr, beta1 = group["lr"], group["betas"][0]
        grads = [p.grad for p in params]
        means = [self.state[p]["exp_avg"] for p in params]
        hessians = [self.state[p]["hessian"] for p in params]
        scales = self._scales(params, group, bs)
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
        torch._foreach_lerp_(means, grads, 1.0 - beta1)
        denominators = torch._foreach_mul(hessians, scales)
        torch._foreach_add_(denominators, 1e-15)
        ratios = torch._foreach_abs(means)
        torch._foreach_div_(ratios, denominators)  # |m| / (scale h + 1e-15)
        torch._foreach_clamp_max_(ratios, 1.0)
        clipped = torch._foreach_floor(ratios)
        estimated = torch._foreach_sign(hessians)
        self._clipped = self._clipped + torch.stack(torch._foreach_norm(clipped, 1)).sum()
        self._estimated = self._estimated + torch.stack(torch._foreach_norm(estimated, 1)).sum()
        torch._foreach_mul_(clipped, estimated)
        self._clipped_estimated = self._clipped_estimated + torch.stack(torch._foreach_norm(clipped, 1)).sum()
        self._counted += sum(r.numel() for r in ratios)
        torch._foreach_addcmul_(params, torch._foreach_sign(means), ratios, value=-lr)
