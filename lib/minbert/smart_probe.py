"""SMART on the multitask model: a task batch's adversarial term beside its dropout-only control (what
the trainer adds to the loss and records), and the scale probe that shows how large a perturbation must
be to move the outputs at all (notebook 04)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from minbert import tasks
from minbert.bert import Embedded
from minbert.data import TaskTensors
from minbert.models import MultitaskBert
from minbert.runtime import CPU, Runtime
from minbert.smart import SmartSettings, dropout_control, embedding_scale, smart_loss


def smart_terms(model: MultitaskBert, task: str, embedded: list[Embedded], outputs: torch.Tensor,
                 settings: SmartSettings, runtime: Runtime,
                 control: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SMART's adversarial divergence for one task batch, perturbing the embedding output, and, with
    `control`, the same divergence at zero perturbation (what dropout alone contributes; recorded, not
    trained on: a detached tensor, left on the device; one more forward pass, so the trainer measures it
    on a sample of its steps)."""
    kind = tasks.get(task).kind
    if kind == "regression" and settings.naive_regression:
        kind = "regression-as-classification"

    def forward(deltas: list[torch.Tensor]) -> torch.Tensor:
        with runtime.autocast():
            shifted = [e.shifted(d) for e, d in zip(embedded, deltas, strict=True)]
            return model.outputs_from_embedded(task, shifted)

    inputs = [e.hidden for e in embedded]
    measured = dropout_control(forward, inputs, outputs, kind).detach() if control else None
    return smart_loss(forward, inputs, outputs, kind, settings), measured


def smart_scale_probe(model: MultitaskBert, train: dict[str, TaskTensors], epsilons: Sequence[float],
                      base: SmartSettings, runtime: Runtime = CPU, batch_size: int = 32,
                      seed: int = 0) -> list[dict]:
    """How big a SMART perturbation must be to move the outputs: on one seeded batch per task, the task
    loss and the adversarial term at each epsilon (`base` gives the other knobs; in the paper's form the
    ascent step is set to epsilon, so that one step can reach the ball's edge), in eval mode (the
    perturbation alone) and in train mode beside its dropout-only control (the same term at zero
    perturbation), with the batch's embedding scale (what relative sizes multiply). The model's
    weights are left as they were."""
    was_training, rows = model.training, []
    model.to(runtime.device)
    for task, data in train.items():
        rng = np.random.default_rng(seed)
        idx = sorted(rng.choice(len(data), size=min(batch_size, len(data)), replace=False).tolist())
        batch = data.batch(idx, runtime.device)
        for epsilon in epsilons:
            step = float(epsilon) if base.form == "paper" else base.step_size
            settings = dataclasses.replace(base, epsilon=float(epsilon), step_size=step)
            row = {"task": task, "epsilon": float(epsilon)}
            for mode in ("eval", "train"):
                model.train(mode == "train")
                torch.manual_seed(seed)
                with runtime.autocast():  # as in training: clean and perturbed passes alike
                    embedded = model.embed_inputs(batch)
                    outputs = model.outputs_from_embedded(task, embedded)
                if mode == "eval":
                    scale = embedding_scale([e.hidden for e in embedded], settings.norm)
                    row["embedding scale"] = float(scale)
                term, control = smart_terms(model, task, embedded, outputs, settings, runtime)
                row[f"{mode} term"] = float(term.detach())
                if mode == "train":
                    row["train control"] = float(control)
                    row["task loss"] = float(tasks.get(task).loss(outputs, batch["labels"]).detach())
            rows.append(row)
    model.train(was_training)
    return rows
