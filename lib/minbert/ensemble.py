"""An ensemble: trained multitask models whose predictions are averaged, members chosen on held-out rows.

The members' outputs are averaged as probabilities (SST's softmax, QQP's sigmoid; STS's score as it is)
and mapped back to the models' own output space (log-probabilities for SST, a logit for QQP), so an
`Ensemble` is used wherever a `MultitaskBert` is: prediction, metrics, error analysis, the panel.
Members are picked by greedy forward selection on the held-out rows (Caruana et al., 2004): start
from the best single model, add the one that raises the held-out mean most, stop when none does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from minbert import tasks
from minbert.data import TaskTensors
from minbert.evaluation import predict
from minbert.models import MultitaskBert
from minbert.runtime import Runtime

_EPS = 1e-6


def to_probabilities(task: str, outputs: torch.Tensor) -> torch.Tensor:
    """What is averaged: class probabilities (SST), the duplicate probability (QQP), the score (STS)."""
    kind = tasks.get(task).kind
    outputs = outputs.float()
    if kind == "multiclass":
        return outputs.softmax(-1)
    if kind == "binary":
        return torch.sigmoid(outputs)
    return outputs


def from_probabilities(task: str, averaged: torch.Tensor) -> torch.Tensor:
    """Back to the models' output space: log-probabilities (their softmax is the average), a logit."""
    kind = tasks.get(task).kind
    if kind == "multiclass":
        return averaged.clamp(min=_EPS).log()
    if kind == "binary":
        return torch.logit(averaged.clamp(_EPS, 1 - _EPS))
    return averaged


def average_outputs(task: str, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The members' outputs of one task averaged as probabilities, in the output space."""
    return from_probabilities(task, torch.stack([to_probabilities(task, o) for o in outputs]).mean(0))


class Ensemble(nn.Module):
    """Several multitask models as one: `task_outputs` averages theirs (see the module's docstring)."""

    def __init__(self, members: Sequence[MultitaskBert]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        modes = {m.mode for m in members}
        if len(modes) > 1:
            raise ValueError(f"the members of an ensemble must read pairs alike; got modes {sorted(modes)}")
        self.members = nn.ModuleList(members)
        self.mode = members[0].mode

    def task_outputs(self, task: str, batch: dict) -> torch.Tensor:
        return average_outputs(task, [m.task_outputs(task, batch) for m in self.members])


def scores(outputs: dict[str, torch.Tensor], gold: dict[str, Sequence[float]]) -> dict[str, float]:
    """Each task's metric (accuracy, Pearson) of raw outputs against gold labels."""
    found = {}
    for task, out in outputs.items():
        spec = tasks.get(task)
        predicted = out.float().numpy() if spec.kind == "regression" else spec.predicted_labels(out)
        found[spec.metric] = float(spec.score(np.asarray(predicted, dtype=float), gold[task]))
    return found


def mean_score(outputs: dict[str, torch.Tensor], gold: dict[str, Sequence[float]]) -> float:
    """The mean of the tasks' metrics of outputs against gold labels."""
    return tasks.mean_score(scores(outputs, gold))


def choose_members(member_outputs: Sequence[dict[str, torch.Tensor]], gold: dict[str, Sequence[float]]
                   ) -> tuple[list[int], list[float]]:
    """Greedy forward selection on held-out rows: the chosen members' indices, and the held-out mean
    after each was added (the first is the best single member's)."""
    def score_of(chosen: list[int]) -> float:
        return mean_score({task: average_outputs(task, [member_outputs[i][task] for i in chosen])
                           for task in gold}, gold)

    chosen: list[int] = []
    trace: list[float] = []
    left = list(range(len(member_outputs)))
    while left:
        best = max(left, key=lambda i: (score_of([*chosen, i]), -i))
        score = score_of([*chosen, best])
        if chosen and score <= trace[-1]:
            break
        chosen.append(best)
        trace.append(score)
        left.remove(best)
    return chosen, trace


def task_outputs(model: MultitaskBert, rows: dict[str, TaskTensors], batch_size: int,
                 runtime: Runtime) -> dict[str, torch.Tensor]:
    """A model's raw outputs on each task's rows of one split (held-out ones are what member selection
    compares; dev ones are only reported)."""
    return {task: predict(model, data, batch_size, runtime) for task, data in rows.items()}
