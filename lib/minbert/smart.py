"""SMART: smoothness-inducing adversarial regularisation (Jiang et al., ACL 2020).

The model should give about the same output when its embedding-layer output moves a
little. So: start from small random noise on the embeddings, take `steps` ascent
steps on the divergence between the perturbed and the clean predictions (gradient
normalised in the chosen norm, the perturbation kept inside an epsilon ball of that
norm, per token), and add `weight` times the divergence at the final perturbation to
the task loss. The clean predictions are the fixed target: the adversarial term's
gradient reaches the weights through the perturbed forward pass only.

Divergences by output kind:
- `multiclass` (SST logits): symmetric KL between the two softmax distributions;
- `binary` (QQP's one logit): symmetric KL between the two Bernoulli distributions;
- `regression` (STS score): squared difference of the two scores. A distance on
  the real line, which is what a score is; the study applied its classification
  divergence here instead and its STS correlation collapsed. That naive version is
  kept as `regression-as-classification` (softmax over the batch of scores) to show it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

NORMS = ("inf", "l2", "l1")
KINDS = ("multiclass", "binary", "regression", "regression-as-classification")


@dataclass(frozen=True)
class SmartSettings:
    """SMART's knobs; defaults from the paper (epsilon 1e-5, step 1e-3, noise 1e-5, one step)."""

    weight: float = 1.0  # adv_alpha: weight of the adversarial term in the loss
    epsilon: float = 1e-5  # radius of the perturbation ball, per token
    step_size: float = 1e-3  # ascent step on the normalised gradient
    noise_var: float = 1e-5  # scale of the initial random perturbation
    norm: str = "inf"  # norm of the ball and of the gradient normalisation
    steps: int = 1  # ascent steps
    naive_regression: bool = False  # regression outputs: use the classification divergence (the study's)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"unknown SMART norm {self.norm!r}; known: {list(NORMS)}")
        for name in ("weight", "epsilon", "step_size", "noise_var"):
            if getattr(self, name) < 0:
                raise ValueError(f"SMART {name} must be >= 0, got {getattr(self, name)}")
        if self.steps < 0:
            raise ValueError(f"SMART steps must be >= 0, got {self.steps}")


def divergence(kind: str, perturbed: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Mean divergence of perturbed from clean outputs; `clean` is taken as a fixed target."""
    clean = clean.detach().float()
    perturbed = perturbed.float()
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


def _norm(x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-token norm over the last axis, kept for broadcasting."""
    order = {"inf": float("inf"), "l2": 2, "l1": 1}[norm]
    return torch.linalg.vector_norm(x, ord=order, dim=-1, keepdim=True)


def project(delta: torch.Tensor, epsilon: float, norm: str) -> torch.Tensor:
    """Into the ball of radius epsilon, token by token: clipping for inf, rescaling for l2 and l1."""
    if norm == "inf":
        return delta.clamp(-epsilon, epsilon)
    return delta * (epsilon / _norm(delta, norm).clamp_min(1e-12)).clamp(max=1.0)


def normalise(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The gradient scaled to unit norm per token (zero where it is zero)."""
    return grad / _norm(grad, norm).clamp_min(1e-12)


def smart_loss(forward: Callable[[list[torch.Tensor]], torch.Tensor], inputs: list[torch.Tensor],
               clean: torch.Tensor, kind: str, settings: SmartSettings) -> torch.Tensor:
    """The adversarial divergence (unweighted) for one batch.

    `forward` maps perturbations (one per input, shaped like it) to outputs;
    `inputs` are the embedding-layer outputs, `clean` the unperturbed outputs.
    """
    deltas = [project(torch.randn_like(x, dtype=torch.float32) * settings.noise_var, settings.epsilon,
                      settings.norm) for x in inputs]
    for _ in range(settings.steps):
        deltas = [d.requires_grad_() for d in deltas]
        grads = torch.autograd.grad(divergence(kind, forward(deltas), clean), deltas, allow_unused=True)
        deltas = [d.detach() if g is None else
                  project(d.detach() + settings.step_size * normalise(g, settings.norm), settings.epsilon,
                          settings.norm) for d, g in zip(deltas, grads, strict=True)]
    return divergence(kind, forward(deltas), clean)
