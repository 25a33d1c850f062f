"""Metrics and prediction files."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from minbert.files import atomic_write_text


def accuracy(gold: Sequence[int], predicted: Sequence[int]) -> float:
    return float(accuracy_score(gold, predicted))


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
