"""SMART: smoothness-inducing adversarial regularisation (Jiang et al., ACL 2020).

The model should give about the same output when its embedding-layer output moves a
little. So: start from small random noise on the embeddings, take `steps` ascent steps
on the divergence between the perturbed and the clean predictions, and add `weight`
times the divergence at the final perturbation to the task loss. Two forms:

- `paper` (Algorithm 1): the ascent step is the gradient normalised in the chosen norm,
  and the perturbation is kept inside an epsilon ball of that norm, per token;
- `mtdnn` (MT-DNN's code, which the paper's authors released): noise plus one unnormalised
  ascent step, then the perturbation rescaled to unit norm per token; here times
  `epsilon` (epsilon 1 is MT-DNN's own), so both forms share one size knob.

How big is big enough? The embedding output of a BERT has per-token norms of order one
(MiniLM: mean |x| 0.36, max about 2.6 per token), so the paper's epsilon of 1e-5 moves
nothing. With `relative`, epsilon, the step and the noise are read as multiples of the
batch's mean per-token norm of that output (in the chosen norm): a size that means the
same for every checkpoint. By default the clean predictions are a fixed target (the
term's gradient reaches the weights through the perturbed pass only); `through_clean`
back-propagates through the clean pass too, as MT-DNN does.

Even at zero perturbation the term is not zero in training: dropout makes two passes
differ. `dropout_control` measures that part, so a run can show what the perturbation
adds on top of a dropout-consistency penalty (epsilon 0 is that penalty alone).

Divergences by output kind:
- `multiclass` (SST logits): symmetric KL between the two softmax distributions;
- `binary` (QQP's one logit): symmetric KL between the two Bernoulli distributions;
- `regression` (STS score): squared difference of the two scores. A distance on
  the real line, which is what a score is. The study's STS correlation collapsed under
  SMART (it blamed "MSE loss for its calculation of adverserial loss"); our hypothesis
  is that a classification divergence was applied to the score, kept as
  `regression-as-classification` (softmax over the batch of scores) to test it.
  (MT-DNN's symmetric KL over a (batch, 1) score is a softmax over one value: always 0.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

NORMS = ("inf", "l2", "l1")
FORMS = ("paper", "mtdnn")
KINDS = ("multiclass", "binary", "regression", "regression-as-classification")


@dataclass(frozen=True)
class SmartSettings:
    """SMART's knobs; defaults from the paper (epsilon 1e-5, step 1e-3, noise 1e-5, one step)."""

    weight: float = 1.0  # adv_alpha: weight of the adversarial term in the loss
    epsilon: float = 1e-5  # paper: radius of the ball per token; mtdnn: the perturbation's norm per token
    step_size: float = 1e-3  # size of the ascent step
    noise_var: float = 1e-5  # scale of the initial random perturbation
    norm: str = "inf"  # norm of the ball and of the gradient normalisation
    steps: int = 1  # ascent steps
    form: str = "paper"  # `paper` (Algorithm 1) or `mtdnn` (MT-DNN's normalised perturbation)
    relative: bool = False  # epsilon, step and noise as multiples of the embeddings' mean per-token norm
    through_clean: bool = False  # back-propagate through the clean pass too (MT-DNN)
    naive_regression: bool = False  # regression outputs: use the classification divergence (the study's)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"unknown SMART norm {self.norm!r}; known: {list(NORMS)}")
        if self.form not in FORMS:
            raise ValueError(f"unknown SMART form {self.form!r}; known: {list(FORMS)}")
        for name in ("weight", "epsilon", "step_size", "noise_var"):
            if getattr(self, name) < 0:
                raise ValueError(f"SMART {name} must be >= 0, got {getattr(self, name)}")
        if self.steps < 0:
            raise ValueError(f"SMART steps must be >= 0, got {self.steps}")


def divergence(kind: str, perturbed: torch.Tensor, clean: torch.Tensor,
               through_clean: bool = False) -> torch.Tensor:
    """Mean divergence of perturbed from clean outputs; `clean` is a fixed target unless `through_clean`."""
    if not through_clean:
        clean = clean.detach()
    clean, perturbed = clean.float(), perturbed.float()
    if kind in ("multiclass", "regression-as-classification"):
        if kind == "regression-as-classification":  # scores (batch,) read as one logit vector
            perturbed, clean = perturbed.reshape(1, -1), clean.reshape(1, -1)
        log_p, log_q = F.log_softmax(clean, dim=-1), F.log_softmax(perturbed, dim=-1)
        return ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1).mean()
    if kind == "binary":  # KL(p||q) + KL(q||p) = (p - q)(logit p - logit q) for Bernoulli
        return ((torch.sigmoid(clean) - torch.sigmoid(perturbed)) * (clean - perturbed)).mean()
    if kind == "regression":
        return F.mse_loss(perturbed, clean)
    raise ValueError(f"unknown output kind {kind!r}; known: {list(KINDS)}")


def token_norms(x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-token norm over the last axis, kept for broadcasting."""
    order = {"inf": float("inf"), "l2": 2, "l1": 1}[norm]
    return torch.linalg.vector_norm(x, ord=order, dim=-1, keepdim=True)


def project(delta: torch.Tensor, epsilon: float | torch.Tensor, norm: str) -> torch.Tensor:
    """Into the ball of radius epsilon, token by token: clipping for inf, rescaling for l2 and l1.
    (`reciprocal() * epsilon` is what `epsilon / norms` computes for a Python epsilon; written out, a
    0-dim tensor epsilon rounds the same.)"""
    if norm == "inf":
        return delta.clamp(-epsilon, epsilon)
    return delta * (token_norms(delta, norm).clamp_min(1e-12).reciprocal() * epsilon).clamp(max=1.0)


def normalise(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The gradient scaled to unit norm per token (zero where it is zero)."""
    return grad / token_norms(grad, norm).clamp_min(1e-12)


def embedding_scale(inputs: list[torch.Tensor], norm: str) -> torch.Tensor:
    """The mean per-token norm of the embedding outputs: what `relative` sizes are multiples of. A 0-dim
    float64 tensor on the inputs' device (a host read here would wait for the step on a GPU; in float64,
    the sizes it multiplies round as a Python float's did)."""
    norms = torch.cat([token_norms(x.detach().float(), norm).flatten() for x in inputs])
    return norms.mean().double()


def perturbation(forward: Callable[[list[torch.Tensor]], torch.Tensor], inputs: list[torch.Tensor],
                 clean: torch.Tensor, kind: str, settings: SmartSettings) -> list[torch.Tensor]:
    """The adversarial perturbation of each input (detached), found by `settings.steps` ascent steps."""
    scale = embedding_scale(inputs, settings.norm) if settings.relative else 1.0
    epsilon, step, noise = (scale * settings.epsilon, scale * settings.step_size, scale * settings.noise_var)
    paper = settings.form == "paper"

    def bound(delta: torch.Tensor) -> torch.Tensor:
        return project(delta, epsilon, settings.norm) if paper else epsilon * normalise(delta, settings.norm)

    deltas = [torch.randn_like(x, dtype=torch.float32) * noise for x in inputs]
    deltas = [bound(d) for d in deltas] if paper or settings.steps == 0 else deltas
    for _ in range(settings.steps):
        deltas = [d.requires_grad_() for d in deltas]
        grads = torch.autograd.grad(divergence(kind, forward(deltas), clean), deltas, allow_unused=True)
        if paper:
            deltas = [d.detach() if g is None else bound(d.detach() + step * normalise(g, settings.norm))
                      for d, g in zip(deltas, grads, strict=True)]
        else:  # MT-DNN: noise plus the raw gradient step, then the direction rescaled per token
            deltas = [bound(d.detach() if g is None else d.detach() + step * g)
                      for d, g in zip(deltas, grads, strict=True)]
    return deltas


def smart_loss(forward: Callable[[list[torch.Tensor]], torch.Tensor], inputs: list[torch.Tensor],
               clean: torch.Tensor, kind: str, settings: SmartSettings) -> torch.Tensor:
    """The adversarial divergence (unweighted) for one batch.

    `forward` maps perturbations (one per input, shaped like it) to outputs;
    `inputs` are the embedding-layer outputs, `clean` the unperturbed outputs.
    """
    deltas = perturbation(forward, inputs, clean, kind, settings)
    return divergence(kind, forward(deltas), clean, settings.through_clean)


@torch.no_grad()
def dropout_control(forward: Callable[[list[torch.Tensor]], torch.Tensor], inputs: list[torch.Tensor],
                    clean: torch.Tensor, kind: str) -> torch.Tensor:
    """The same divergence at zero perturbation: in training mode, the part dropout alone makes."""
    return divergence(kind, forward([torch.zeros_like(x) for x in inputs]), clean)
