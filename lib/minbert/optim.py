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
            if _use_foreach(self.foreach, stepped):
                self._update_foreach(stepped, group)
            else:
                for p in stepped:
                    self._update(p, self.state[p], group)
        return loss

    def _update_foreach(self, params: list[torch.Tensor], group: dict) -> None:
        """The same step for a group's tensors at once, each operation one multi-tensor kernel: on a GPU
        a handful of launches a step instead of several per tensor (the update of `_update`, op for op)."""
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        grads = [p.grad for p in params]
        means = [self.state[p]["exp_avg"] for p in params]
        squares = [self.state[p]["exp_avg_sq"] for p in params]
        steps = [self.state[p]["step"] for p in params]  # a head without a gradient last step lags
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
        torch._foreach_lerp_(means, grads, 1.0 - beta1)
        torch._foreach_mul_(squares, beta2)
        torch._foreach_addcmul_(squares, grads, grads, value=1.0 - beta2)
        denominators = torch._foreach_sqrt(squares)
        if group["correct_bias"]:
            torch._foreach_div_(denominators, [math.sqrt(1.0 - beta2 ** t) for t in steps])
            step_sizes = [-lr / (1.0 - beta1 ** t) for t in steps]
        else:
            step_sizes = [-lr] * len(params)
        torch._foreach_add_(denominators, eps)
        torch._foreach_addcdiv_(params, means, denominators, step_sizes)

    def _update(self, p: torch.Tensor, state: dict, group: dict) -> None:
        """One AdamW step of one tensor, in cache-sized pieces.

        All operations run on one piece while it sits in cache, instead of one sweep
        through main memory per operation: on 2 CPU cores this halves the time of a
        step over MiniLM's 22.7M weights (the word embeddings alone are 11.7M).
        """
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        step = state["step"]
        if group["correct_bias"]:
            step_size = lr / (1.0 - beta1 ** step)
            bias_correction2_sqrt = math.sqrt(1.0 - beta2 ** step)
        else:
            step_size, bias_correction2_sqrt = lr, 1.0
        for w, g, m, v in _pieces(p, p.grad, state["exp_avg"], state["exp_avg_sq"]):
            if group["weight_decay"]:
                w.mul_(1.0 - lr * group["weight_decay"])
            m.lerp_(g, 1.0 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
            denom = torch.sqrt(v, out=self._scratch(v))
            if group["correct_bias"]:
                denom.div_(bias_correction2_sqrt)
            w.addcdiv_(m, denom.add_(eps), value=-step_size)

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """A reused buffer shaped like `like` (one per device and dtype; not part of the state)."""
        buffers = self.__dict__.setdefault("_scratch_buffers", {})
        key = (like.device, like.dtype)
        if key not in buffers or buffers[key].numel() < like.numel():
            buffers[key] = torch.empty(like.numel(), device=like.device, dtype=like.dtype)
        return buffers[key][: like.numel()].view_as(like)


PIECE = 1 << 19  # elements: a piece of weight, gradient and both moments (8 MB in float32) fits in L3


def _use_foreach(foreach: bool | None, params: list[torch.Tensor]) -> bool:
    """Multi-tensor kernels where asked, or by default off the CPU: there one pass per operation over
    the whole group is what a GPU wants, while on a CPU the cache-sized pieces are twice as fast."""
    if foreach is not None:
        return foreach and bool(params)
    return bool(params) and params[0].device.type != "cpu"


def _pieces(*tensors: torch.Tensor):
    """Matching flat pieces of same-shaped tensors (the whole tensors if one is not contiguous)."""
    if all(t.is_contiguous() for t in tensors):
        return zip(*(t.view(-1).split(PIECE) for t in tensors), strict=True)
    return [tensors]


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
            lr, beta1 = group["lr"], group["betas"][0]
            stepped = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("SophiaG does not support sparse gradients")
                self._state(p)["step"] += 1
                stepped.append(p)
            if _use_foreach(self.foreach, stepped):
                self._update_foreach(stepped, group, bs)
                continue
            for p in stepped:
                state = self.state[p]
                scale = group["rho"] * bs * self._hessian_scale(state, group)
                for w, g, m, h in _pieces(p, p.grad, state["exp_avg"], state["hessian"]):
                    if group["weight_decay"]:
                        w.mul_(1.0 - lr * group["weight_decay"])
                    m.lerp_(g, 1.0 - beta1)
                    ratio = torch.mul(h, scale, out=self._scratch(h)).add_(1e-15)
                    ratio = torch.div(m.abs(), ratio, out=ratio).clamp_(max=1.0)
                    clipped, estimated = ratio == 1.0, h > 0
                    self._clipped = self._clipped + clipped.sum()  # tensors: no device sync per step
                    self._counted += ratio.numel()
                    self._clipped_estimated = self._clipped_estimated + (clipped & estimated).sum()
                    self._estimated = self._estimated + estimated.sum()
                    w.addcmul_(m.sign(), ratio, value=-lr)
        return loss

    def _update_foreach(self, params: list[torch.Tensor], group: dict, bs: int) -> None:
        """The same step for a group's tensors in multi-tensor kernels (the update above, op for op).
        The clipped coordinates are counted without a comparison kernel per tensor: after the clamp a
        clipped ratio is exactly 1 and every other lies in [0, 1), so floor(ratio) marks the clipped ones
        and sign(h) those with an estimate (h >= 0); their L1 norms are the counts, exact in float32
        below 2^24 coordinates a tensor."""
        lr, beta1 = group["lr"], group["betas"][0]
        grads = [p.grad for p in params]
        means = [self.state[p]["exp_avg"] for p in params]
        hessians = [self.state[p]["hessian"] for p in params]
        scales = [group["rho"] * bs * self._hessian_scale(self.state[p], group) for p in params]
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

    _scratch = AdamW._scratch
