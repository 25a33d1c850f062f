"""Every metric, prediction and interval: model outputs in input order, dev metrics, the margin
of one score, confusion matrices, and prediction files."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from minbert import tasks
from minbert.data import TaskTensors, batch_indices, on_device, pad_batch
from minbert.files import atomic_write_text
from minbert.models import MultitaskBert, SentenceClassifier
from minbert.runtime import CPU, Runtime


def margin_of_error(metric: str, value: float, n: int, z: float = 1.96) -> float:
    """Half-width of the 95% interval of one dev score on `n` rows (normal approximation for an
    accuracy, Fisher's z for a Pearson correlation): the yardstick for whether two runs differ."""
    if n < 4:
        raise ValueError(f"a margin of error needs at least 4 dev rows, got {n}")
    if metric.endswith("_acc"):
        return z * math.sqrt(value * (1 - value) / n)
    if metric.endswith("_pearson"):
        centre, half = math.atanh(value), z / math.sqrt(n - 3)
        return (math.tanh(centre + half) - math.tanh(centre - half)) / 2
    raise ValueError(f"no margin of error for metric {metric!r}: expected a name ending in _acc or _pearson")


def per_class_report(gold: Sequence[int], predicted: Sequence[int],
                     labels: Sequence[int], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, one row each."""
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=list(labels), zero_division=0)
    return pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "support": support},
                        index=list(names) if names else list(labels))


def normalised_confusion(gold: Sequence[int], predicted: Sequence[int],
                         labels: Sequence[int]) -> np.ndarray:
    """Confusion matrix with each gold row summing to 1 (rows of absent classes stay 0)."""
    counts = confusion_matrix(gold, predicted, labels=list(labels)).astype(float)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def write_predictions(path: Path, ids: Sequence[str], predictions: Sequence, column: str) -> Path:
    """Predictions as a tab-separated file like the inputs (id, label), written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(["id", column])
    writer.writerows(zip(ids, predictions, strict=True))
    return atomic_write_text(path, buffer.getvalue())


# ----------------------------------------------------------------------------- model outputs

def outputs_in_order(lengths: Sequence[int], batch_size: int,
                     compute: Callable[[list[int]], torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """Run `compute` on batches of similar length (least padding) and return its outputs,
    as float32 on the CPU, in the original order. The outputs stay on the device until the last batch
    and come to the host in one copy: a copy per batch would make a GPU wait for each."""
    order: list[int] = []
    parts = []
    for idx in batch_indices(lengths, batch_size, shuffle=False):
        order.extend(idx)
        parts.append(compute(idx).float())
    out = torch.empty(shape)
    if parts:
        out[torch.tensor(order)] = torch.cat(parts).cpu()
    return out


def _padded(sequences: Sequence[Sequence[int]], runtime: Runtime) -> dict:
    return on_device(pad_batch(sequences), runtime.device)


@torch.no_grad()
def sentence_embeddings(model: SentenceClassifier, tokens: Sequence[Sequence[int]], batch_size: int,
                        runtime: Runtime = CPU) -> torch.Tensor:
    """Embeddings of every sentence in input order (model in eval mode, no dropout)."""
    model.to(runtime.device).eval()

    def embed(idx: list[int]) -> torch.Tensor:
        batch = _padded([tokens[i] for i in idx], runtime)
        with runtime.autocast():
            return model.embed(batch["input_ids"], batch["attention_mask"], batch["packing"])

    return outputs_in_order([len(t) for t in tokens], batch_size, embed,
                            (len(tokens), model.bert.config.hidden_size))


@torch.no_grad()
def predict_logits(model: SentenceClassifier, tokens: Sequence[Sequence[int]], batch_size: int,
                   runtime: Runtime = CPU, features: torch.Tensor | None = None) -> torch.Tensor:
    """Class logits in input order; from cached `features` when BERT is frozen."""
    model.to(runtime.device).eval()
    if features is not None:
        return model.classify(features.to(runtime.device)).float().cpu()

    def logits(idx: list[int]) -> torch.Tensor:
        batch = _padded([tokens[i] for i in idx], runtime)
        with runtime.autocast():
            return model(batch["input_ids"], batch["attention_mask"], batch["packing"])

    return outputs_in_order([len(t) for t in tokens], batch_size, logits,
                            (len(tokens), model.head.out_features))


@torch.no_grad()
def predict(model: MultitaskBert, data: TaskTensors, batch_size: int,
            runtime: Runtime = CPU) -> torch.Tensor:
    """Raw outputs in input order: SST logits (N, 5), QQP logits (N,), STS scores (N,). The model is
    moved to the runtime's device first (a no-op where it is there): the batches go there."""
    model.to(runtime.device).eval()

    def outputs(idx: list[int]) -> torch.Tensor:
        with runtime.autocast():
            return model.task_outputs(data.task, data.batch(idx, runtime.device))

    return outputs_in_order(data.lengths(), batch_size, outputs, tasks.get(data.task).output_shape(len(data)))


def predictions_from_outputs(task: str, outputs: torch.Tensor) -> np.ndarray:
    """What a comparison resamples: class labels from raw outputs, or the raw scores of a regression
    (unrounded, unlike the prediction files)."""
    spec = tasks.get(task)
    if spec.kind == "regression":
        return outputs.float().numpy()
    return np.asarray(spec.predicted_labels(outputs))


def dev_metrics(model: MultitaskBert, dev: dict[str, TaskTensors], batch_size: int,
                runtime: Runtime = CPU, predictions: dict[str, np.ndarray] | None = None,
                raw: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Each task's dev metric (accuracy, Pearson correlation) and dev loss. A `predictions` dict
    receives each task's predictions in input order (class labels, or raw scores for regression):
    what a paired comparison of runs resamples; a `raw` dict the model's raw outputs (what an
    ensemble averages)."""
    metrics = {}
    for name, data in dev.items():
        task = tasks.get(name)
        outputs = predict(model, data, batch_size, runtime)
        if raw is not None:
            raw[name] = outputs
        gold = torch.tensor(data.labels, dtype=task.label_dtype)
        metrics[f"{name}_dev_loss"] = float(task.loss(outputs, gold))
        predicted = predictions_from_outputs(name, outputs)
        metrics[task.metric] = task.score(predicted, gold)
        if predictions is not None:
            predictions[name] = predicted
    return metrics


def save_predictions(model: MultitaskBert, data: dict[str, dict[str, TaskTensors]], out_dir: Path, name: str,
                     batch_size: int, runtime: Runtime = CPU) -> dict[str, list]:
    """Predictions of every task and split given (split -> task -> token ids) as CSV files
    `<name>-<task>-<split>.csv` (id, label) in `out_dir`; returns the dev predictions per task."""
    dev_predictions = {}
    for split_name, split in data.items():
        for name_, tensors in split.items():
            task = tasks.get(name_)
            labels = task.predicted_labels(predict(model, tensors, batch_size, runtime))
            write_predictions(out_dir / f"{name}-{name_}-{split_name}.csv", tensors.ids, labels,
                              task.label_column)
            if split_name == "dev":
                dev_predictions[name_] = labels
    return dev_predictions
