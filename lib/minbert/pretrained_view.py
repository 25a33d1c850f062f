"""The pretrained checkpoint's own view of each task, blended into the final model's outputs.

all-MiniLM-L6-v2 was trained as a sentence encoder: the mean of its token states, normalised, is a
sentence embedding whose cosine already tracks meaning. Fine-tuned as a cross-encoder it stops being
one; kept frozen beside it, it errs differently from the fine-tuned model, so a blend of the two can
beat either. Per task, a linear model on the frozen embeddings, fit on the train rows only, chosen by
the task's kind (`tasks.Task`): what it reads is the sentence embedding for a one-sentence task and the
pair's cosine for a pair; a classification task gets a logistic regression (multinomial for several
classes: SST's linear probe; QQP's on the cosine), a regression a least-squares line onto its score
range (STS: cosine to the 0..5 score).

`Blended` averages the final model's outputs and the view's as the ensemble averages its members
(class probabilities, the duplicate probability, the score), with one weight per task chosen on the
held-out rows (`choose_weights`); a weight of 0 leaves the task's outputs untouched. Dev only reports.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LinearRegression, LogisticRegression
from torch import nn

from minbert import tasks
from minbert.bert import BertModel
from minbert.data import TaskTensors, on_device, pad_batch
from minbert.ensemble import from_probabilities, scores, to_probabilities
from minbert.evaluation import outputs_in_order
from minbert.models import pool
from minbert.runtime import CPU, Runtime

# The weights `choose_weights` tries: the view's share of the blend, 0 (ours alone) to 1 (the view alone).
BLEND_WEIGHTS = tuple(i / 20 for i in range(21))


def sentence_inputs(task: str, batch: dict) -> list[dict[str, torch.Tensor]]:
    """Each sentence of a `TaskTensors.batch` as its own `[CLS] ... [SEP]` input: one for SST, two for
    a pair. A cross-encoder's joint pair (`[CLS] a [SEP] b [SEP]`, token types 0 then 1) is cut back at
    its token types, and the second sentence gets the row's `[CLS]` in front."""
    if "b" in batch:
        return [batch["a"], batch["b"]]
    joint = batch["a"]
    if not tasks.get(task).is_pair:
        return [joint]
    if "token_type_ids" not in joint:
        raise ValueError(f"{task}: a pair read as one sequence needs its token types to be split")
    ids, real, types = joint["input_ids"], joint["attention_mask"].bool(), joint["token_type_ids"]
    firsts, seconds = [], []
    for row in range(ids.shape[0]):
        firsts.append(ids[row][real[row] & (types[row] == 0)].tolist())
        seconds.append([int(ids[row, 0]), *ids[row][real[row] & (types[row] == 1)].tolist()])
    return [on_device(pad_batch(sentences), ids.device) for sentences in (firsts, seconds)]


class PretrainedView(nn.Module):
    """The frozen checkpoint and a linear model per task on its sentence embeddings (see the module's
    docstring). Build it with `PretrainedView.fit`; `task_outputs` speaks the final model's output
    space (SST log-probabilities, a QQP logit, an STS score), so `Blended` can average the two."""

    def __init__(self, bert: BertModel, names: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.bert = bert.requires_grad_(False)
        hidden = bert.config.hidden_size
        heads = {}
        for name in names or tasks.MULTITASK:
            task = tasks.get(name)
            width = 1 if task.is_pair else hidden  # the pair's cosine, or the sentence embedding
            heads[name] = nn.Linear(width, task.num_classes if task.kind == "multiclass" else 1)
        self.heads = nn.ModuleDict(heads).requires_grad_(False)

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sentence embeddings as the checkpoint was trained to give them: the mean of the token
        states over the real tokens, normalised to length 1."""
        outputs = self.bert(inputs["input_ids"], inputs["attention_mask"], packing=inputs.get("packing"))
        return F.normalize(pool(outputs, inputs["attention_mask"], "mean").float(), dim=-1)

    @torch.no_grad()
    def features(self, task: str, batch: dict) -> torch.Tensor:
        """What the task's linear model reads: the sentence embedding (SST), the pair's cosine (n, 1)."""
        vectors = [self.embed(inputs) for inputs in sentence_inputs(task, batch)]
        if len(vectors) == 1:
            return vectors[0]
        return (vectors[0] * vectors[1]).sum(-1, keepdim=True)

    @torch.no_grad()
    def task_outputs(self, task: str, batch: dict) -> torch.Tensor:
        out = self.heads[task](self.features(task, batch))
        spec = tasks.get(task)
        if spec.kind == "multiclass":
            return out.log_softmax(-1)
        if spec.kind == "regression":  # a score on the labels' scale (STS: 0..5), as the model's
            return out.squeeze(-1).clamp(*spec.score_range)
        return out.squeeze(-1)

    def all_features(self, task: str, data: TaskTensors, batch_size: int,
                     runtime: Runtime = CPU) -> torch.Tensor:
        """`features` of every row, in input order."""
        self.eval()
        width = self.heads[task].in_features
        with runtime.autocast():
            return outputs_in_order(data.lengths(), batch_size,
                                    lambda idx: self.features(task, data.batch(idx, runtime.device)),
                                    (len(data), width))

    @classmethod
    def fit(cls, bert: BertModel, train: dict[str, TaskTensors], batch_size: int = 128,
            runtime: Runtime = CPU) -> PretrainedView:
        """The view with each task's linear model fit on that task's train rows (scikit-learn)."""
        view = cls(bert, tuple(train)).to(runtime.device).eval()
        for task, data in train.items():
            x = view.all_features(task, data, batch_size, runtime).numpy()
            y = np.asarray(data.labels)
            kind = tasks.get(task).kind
            if kind != "regression":  # a probe on the embedding needs more iterations than one on a cosine
                fitted = LogisticRegression(max_iter=2000 if kind == "multiclass" else 100).fit(x, y)
                weight, bias = fitted.coef_, fitted.intercept_
            else:
                fitted = LinearRegression().fit(x, y.astype(float))
                weight, bias = fitted.coef_[None, :], np.atleast_1d(fitted.intercept_)
            head = view.heads[task]
            head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
            head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
        return view


@torch.no_grad()
def zero_shot(bert: BertModel, dev: dict[str, TaskTensors], batch_size: int = 128,
              runtime: Runtime = CPU) -> dict[str, np.ndarray]:
    """The untrained checkpoint's own score where it has one: per regression pair task (STS), the
    cosine of its two sentence embeddings, row by row (what its Pearson with the gold scores measures
    before any training: the floor a bi-encoder's fine-tuning must clear)."""
    names = tuple(t for t in dev if tasks.get(t).kind == "regression" and tasks.get(t).is_pair)
    if not names:
        return {}
    view = PretrainedView(bert, names).to(runtime.device).eval()
    return {t: view.all_features(t, dev[t], batch_size, runtime)[:, 0].numpy() for t in names}


def blend_outputs(task: str, ours: torch.Tensor, view: torch.Tensor, weight: float) -> torch.Tensor:
    """(1 - weight) of ours and `weight` of the view's, averaged as probabilities (the score for STS)
    and mapped back to the output space; with weight 0, ours unchanged."""
    if weight == 0:
        return ours
    mixed = (1 - weight) * to_probabilities(task, ours) + weight * to_probabilities(task, view)
    return from_probabilities(task, mixed)


def choose_weights(ours: dict[str, torch.Tensor], view: dict[str, torch.Tensor],
                   gold: dict[str, list]) -> dict[str, float]:
    """Per task, the `BLEND_WEIGHTS` entry whose blend scores best on these (held-out) rows; the
    smallest of equals, so a view that adds nothing gets 0."""
    chosen = {}
    for task in ours:
        metric = tasks.get(task).metric

        def score(weight: float, task: str = task, metric: str = metric) -> float:
            blended = blend_outputs(task, ours[task], view[task], weight)
            return scores({task: blended}, {task: gold[task]})[metric]

        chosen[task] = max(BLEND_WEIGHTS, key=lambda w: (score(w), -w))
    return chosen


class Blended(nn.Module):
    """The final model with the pretrained view blended in, one weight per task: used wherever a
    `MultitaskBert` is (prediction, error analysis, the panel)."""

    def __init__(self, model: nn.Module, view: PretrainedView, weights: dict[str, float]) -> None:
        super().__init__()
        self.model, self.view, self.weights = model, view, dict(weights)
        self.mode = model.mode

    def task_outputs(self, task: str, batch: dict) -> torch.Tensor:
        ours = self.model.task_outputs(task, batch)
        weight = self.weights.get(task, 0.0)
        return blend_outputs(task, ours, self.view.task_outputs(task, batch), weight) if weight else ours
