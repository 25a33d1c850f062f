"""THE task registry: everything the project knows about a task, in one entry.

Per task: its files, columns, label kind and class names, metric, loss, prediction
column, SMART divergence and the rule that samples labels for Sophia's Hessian. Code
elsewhere asks a `Task` instead of testing a task's name; only the model's heads
(`minbert.models`) know which task gets which head. A new task is one entry here plus
a head.

Three kinds of output cover the tasks:
- `multiclass`: logits (N, classes); cross-entropy; argmax; accuracy (SST, CFIMDB);
- `binary`: one logit (N,); binary cross-entropy; logit > 0; accuracy (QQP);
- `regression`: a score (N,); squared error; Pearson correlation (STS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import AfterValidator

Kind = Literal["multiclass", "binary", "regression"]
KINDS = ("multiclass", "binary", "regression")


def sample_classes(probabilities: torch.Tensor) -> torch.Tensor:
    """One class per row drawn from its probabilities (rows of a softmax), by inverse transform: the
    number of classes whose cumulative probability is at most one uniform draw. `torch.multinomial`
    draws the same distribution but reads the device twice on a GPU; this waits for nothing."""
    below = probabilities.cumsum(-1) <= torch.rand_like(probabilities[..., :1])
    return below.sum(-1).clamp(max=probabilities.shape[-1] - 1)


@dataclass(frozen=True)
class Task:
    """One task: what its files hold and how its model output is scored and trained."""

    name: str
    files: dict[str, str]  # split -> file name: train, dev, test (the test-student file)
    text_columns: tuple[str, ...]
    label_column: str  # also the column of its prediction files
    kind: Kind
    class_names: tuple[str, ...] = ()  # classification kinds: one name per class
    score_range: tuple[float, float] = (0.0, 0.0)  # regression: the gold scores' range
    fallback_files: dict[str, str] = field(default_factory=dict)  # when the main file is absent
    heldout_rows: int = 800  # the default of the seeded rows carved from train for every selection
    short_metric: str = ""  # "acc" or "pearson": the metric's name after the task's

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name}: unknown kind {self.kind!r}; known: {list(KINDS)}")
        if (self.kind == "regression") == bool(self.class_names):
            raise ValueError(f"task {self.name}: class names are for classification kinds only")
        if self.kind == "binary" and len(self.class_names) != 2:
            raise ValueError(f"task {self.name}: a binary task has two class names")
        object.__setattr__(self, "short_metric", "pearson" if self.kind == "regression" else "acc")

    # ------------------------------------------------------------------ what the data looks like

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def label_dtype(self) -> torch.dtype:
        return torch.float32 if self.kind == "regression" else torch.long

    @property
    def metric(self) -> str:
        """The dev metric's key in records, e.g. `sst_acc`, `sts_pearson`."""
        return f"{self.name}_{self.short_metric}"

    @property
    def metric_label(self) -> str:
        """The metric as a table column: `SST acc`, `STS pearson`."""
        return f"{self.name.upper()} {self.short_metric}"

    def output_shape(self, n: int) -> tuple[int, ...]:
        """The shape of the model's raw outputs for n inputs."""
        return (n, self.num_classes) if self.kind == "multiclass" else (n,)

    def parse_label(self, raw: str) -> tuple[float | int | None, str | None]:
        """A label cell as a value, or the reason it is not a valid label."""
        value = raw.strip()
        if value == "":
            return None, f"missing label ({self.label_column})"
        try:
            number = float(value)
        except ValueError:
            return None, f"non-numeric {self.label_column} {value!r}"
        if not math.isfinite(number):
            return None, f"non-finite {self.label_column} {value!r}"
        if self.kind != "regression":
            if number != int(number) or not 0 <= number < self.num_classes:
                return None, (f"{self.label_column} {value!r} out of range "
                              f"(classes 0..{self.num_classes - 1})")
            return int(number), None
        low, high = self.score_range
        if not low <= number <= high:
            return None, f"{self.label_column} {value!r} out of range [{low}, {high}]"
        return number, None

    # ------------------------------------------------------------------ how outputs are read

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor,
             class_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy, binary cross-entropy (both optionally class-weighted) or squared error."""
        outputs = outputs.float()
        if self.kind == "multiclass":
            return F.cross_entropy(outputs, labels, weight=class_weights)
        if self.kind == "binary":
            weight = class_weights[labels] if class_weights is not None else None
            return F.binary_cross_entropy_with_logits(outputs, labels.float(), weight=weight)
        return F.mse_loss(outputs, labels)

    def sampled_label_loss(self, outputs: torch.Tensor) -> torch.Tensor:
        """The loss on labels drawn from the model's own predictions, for Sophia's Hessian.

        The gradient g of this mean loss over bs predictions gives bs * g^2, whose
        expectation is the diagonal of the Gauss-Newton matrix of the real loss (the
        Gauss-Newton-Bartlett estimator). Classification: labels sampled from the
        softmax (`sample_classes`) or the sigmoid. Regression with squared error: the Gauss-Newton matrix
        of (f - y)^2 is 2 J^T J, and a label y = f + e with e ~ N(0, 1/2) gives exactly
        that in expectation (a Gaussian likelihood in place of the softmax).
        """
        outputs = outputs.float()
        with torch.no_grad():
            if self.kind == "multiclass":
                labels = sample_classes(outputs.softmax(-1))
            elif self.kind == "binary":
                labels = torch.bernoulli(torch.sigmoid(outputs)).long()
            else:
                labels = outputs + torch.randn_like(outputs) * math.sqrt(0.5)
        return self.loss(outputs, labels)

    def predicted_labels(self, outputs: torch.Tensor) -> list:
        """Predictions as the task files hold labels: class index, 0/1, or a score."""
        if self.kind == "multiclass":
            return outputs.argmax(-1).tolist()
        if self.kind == "binary":
            return (outputs > 0).long().tolist()
        return [round(float(s), 4) for s in outputs]

    def score(self, predicted, gold) -> float | np.ndarray:
        """The dev metric of predictions (labels, or raw scores for regression) against gold, along the
        last axis: a float for one set of predictions, an array for stacked ones (seeds, resamples)."""
        predicted, gold = np.asarray(predicted, dtype=float), np.asarray(gold, dtype=float)
        if self.kind == "regression":
            p = predicted - predicted.mean(-1, keepdims=True)
            g = gold - gold.mean(-1, keepdims=True)
            scores = (p * g).sum(-1) / np.sqrt((p * p).sum(-1) * (g * g).sum(-1))
        else:
            scores = (predicted == gold).mean(-1)
        return float(scores) if np.ndim(scores) == 0 else scores

    def confidence(self, outputs: torch.Tensor) -> np.ndarray:
        """The model's probability for its own prediction (classification kinds)."""
        if self.kind == "multiclass":
            return outputs.float().softmax(-1).max(-1).values.numpy()
        if self.kind == "binary":
            p = torch.sigmoid(outputs.float())
            return torch.maximum(p, 1 - p).numpy()
        raise ValueError(f"{self.name}: a regression output has no class probability; use the error")

    def explain(self, output: torch.Tensor) -> dict:
        """One input's output in words: the class and its probabilities, or the score."""
        output = output.float()
        if self.kind == "multiclass":
            probs = output.softmax(-1)
            return {"label": self.class_names[int(probs.argmax())],
                    "probabilities": dict(zip(self.class_names, [round(float(p), 3) for p in probs],
                                              strict=True))}
        if self.kind == "binary":
            p = float(torch.sigmoid(output))
            return {self.class_names[1].replace(" ", "_"): p > 0.5, "probability": round(p, 3)}
        return {self.label_column: round(float(output), 2)}


SENTIMENT = ("negative", "somewhat negative", "neutral", "somewhat positive", "positive")

TASKS: dict[str, Task] = {task.name: task for task in (
    Task("sst", {"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv", "test": "ids-sst-test-student.csv"},
         ("sentence",), "sentiment", "multiclass", class_names=SENTIMENT),
    Task("cfimdb", {"train": "ids-cfimdb-train.csv", "dev": "ids-cfimdb-dev.csv",
                    "test": "ids-cfimdb-test-student.csv"},
         ("sentence",), "sentiment", "multiclass", class_names=("negative", "positive")),
    Task("qqp", {"train": "quora-train.csv", "dev": "quora-dev.csv", "test": "quora-test-student.csv"},
         ("sentence1", "sentence2"), "is_duplicate", "binary", class_names=("not duplicate", "duplicate"),
         fallback_files={"train": "quora-train-subset.csv"}, heldout_rows=1000),
    Task("sts", {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test-student.csv"},
         ("sentence1", "sentence2"), "similarity", "regression", score_range=(0.0, 5.0), heldout_rows=600),
)}

# The tasks of the multitask model, in the order its tables show them. Code reads it when it runs
# (`tasks.MULTITASK`), never binds it at import, so a task added here (with its entry above) joins
# every multitask run, setting and check.
MULTITASK: tuple[str, ...] = ("sst", "qqp", "sts")


def _multitask_name(name: str) -> str:
    if name not in MULTITASK:
        raise ValueError(f"unknown task {name!r}; known: {list(MULTITASK)}")
    return name


TaskName = Annotated[str, AfterValidator(_multitask_name)]  # a setting's task: one of MULTITASK


def get(name: str) -> Task:
    """The registry entry of a task; an unknown name is one clear error."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None


def metrics(tasks: tuple[str, ...] | None = None) -> dict[str, str]:
    """Task -> its dev metric's key, e.g. {"sst": "sst_acc", ...} (the multitask tasks by default)."""
    return {name: TASKS[name].metric for name in (MULTITASK if tasks is None else tasks)}


def mean_score(scores: dict[str, float], tasks: tuple[str, ...] | None = None) -> float:
    """The mean of the tasks' dev metrics present in `scores` (a record or an epoch)."""
    present = [scores[m] for m in metrics(tasks).values() if m in scores]
    return float(np.mean(present)) if present else float("nan")
