"""Error analysis of a trained multitask model, and a prediction panel for exploring it.

Tables of the least confident and the most wrong dev examples per task, the dev metric
by input length, the STS predicted-against-gold scatter, and `Predictor`: type a
sentence or a pair, get the model's prediction (a plain call; the ipywidgets panel
around it is for JupyterLab).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from minbert.data import TaskSplit, pad_batch
from minbert.experiments import SST_LABELS
from minbert.models import MultitaskBert
from minbert.multitask import labels_from_outputs, task_outputs
from minbert.precision import autocast


def confidence(task: str, outputs: torch.Tensor) -> np.ndarray:
    """The model's probability for its own prediction (classification tasks)."""
    if task == "sst":
        return outputs.float().softmax(-1).max(-1).values.numpy()
    if task == "qqp":
        p = torch.sigmoid(outputs.float())
        return torch.maximum(p, 1 - p).numpy()
    raise ValueError("a regression output has no class probability; use the error instead")


def examples_table(task: str, split: TaskSplit, outputs: torch.Tensor) -> pd.DataFrame:
    """Every dev example with its text(s), gold label, prediction, and confidence or error."""
    predicted = labels_from_outputs(task, outputs)
    frame = pd.DataFrame({"id": [e.id for e in split.examples],
                          "text": [" || ".join(e.texts) for e in split.examples],
                          "gold": [e.label for e in split.examples], "predicted": predicted})
    if task == "sts":
        frame["error"] = (frame["predicted"] - frame["gold"]).abs()
    else:
        frame["confidence"] = confidence(task, outputs)
        frame["correct"] = frame["predicted"] == frame["gold"]
    return frame


def least_confident(table: pd.DataFrame, k: int = 8) -> pd.DataFrame:
    """Classification: the k predictions the model was least sure of."""
    return table.nsmallest(k, "confidence")


def most_wrong(table: pd.DataFrame, k: int = 8) -> pd.DataFrame:
    """The k worst mistakes: wrong and most confident (classification), largest error (STS)."""
    if "error" in table:
        return table.nlargest(k, "error")
    return table[~table["correct"]].nlargest(k, "confidence")


def metric_by_length(task: str, table: pd.DataFrame, lengths: list[int], bins: int = 5) -> pd.DataFrame:
    """The dev metric per length bin (quantiles of the input's token count) with the bin sizes."""
    frame = table.assign(length=lengths)
    frame["bin"] = pd.qcut(frame["length"], q=bins, duplicates="drop")
    rows = []
    for interval, group in frame.groupby("bin", observed=True):
        if task == "sts":
            value = float(np.corrcoef(group["predicted"], group["gold"])[0, 1]) if len(group) > 2 else np.nan
        else:
            value = float(group["correct"].mean())
        rows.append({"tokens": f"{int(interval.left) + 1}-{int(interval.right)}", "examples": len(group),
                     "metric": value})
    return pd.DataFrame(rows)


def plot_metric_by_length(per_task: dict[str, pd.DataFrame]) -> plt.Figure:
    fig, axes = plt.subplots(1, len(per_task), figsize=(4.4 * len(per_task), 3.2), squeeze=False)
    for ax, (task, frame) in zip(axes[0], per_task.items(), strict=True):
        ax.bar(frame["tokens"], frame["metric"], color="tab:blue")
        for x, (value, n) in enumerate(zip(frame["metric"], frame["examples"], strict=True)):
            ax.text(x, value, f"{value:.2f}\nn={n}", ha="center", va="bottom", fontsize=7)
        ax.set(title=f"{task.upper()} {'pearson' if task == 'sts' else 'accuracy'} by length",
               xlabel="tokens", ylim=(0, 1.1))
    fig.tight_layout()
    return fig


def plot_sts_scatter(table: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    ax.scatter(table["gold"], table["predicted"], s=6, alpha=0.4)
    ax.plot([0, 5], [0, 5], color="gray", lw=1)
    pearson = float(np.corrcoef(table["predicted"], table["gold"])[0, 1])
    ax.set(xlabel="gold similarity", ylabel="predicted", title=f"STS dev: pearson {pearson:.3f}",
           xlim=(-0.2, 5.2), ylim=(-0.2, 5.2))
    fig.tight_layout()
    return fig


class Predictor:
    """The trained model as plain calls on raw text, for the panel and for headless runs."""

    def __init__(self, model: MultitaskBert, tokenizer, device: torch.device, max_length: int = 128,
                 dtype: torch.dtype = torch.float32) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_length, self.dtype = max_length, dtype

    def _batch(self, task: str, a: str, b: str | None) -> dict:
        def encoded(*texts):
            out = self.tokenizer(*texts, truncation=True, max_length=self.max_length)
            return pad_batch([out["input_ids"]], second_starts=[out["token_type_ids"].count(0)]
                             if len(texts) == 2 else None)

        if b is None:
            parts = {"a": encoded(a)}
        elif self.model.mode == "cross-encoder":
            parts = {"a": encoded(a, b)}
        else:
            parts = {"a": encoded(a), "b": encoded(b)}
        return {key: {k: v.to(self.device) for k, v in part.items()} for key, part in parts.items()}

    @torch.no_grad()
    def predict(self, task: str, a: str, b: str | None = None) -> dict:
        """SST: the label and its probabilities; QQP: duplicate probability; STS: the 0..5 score."""
        if (task == "sst") != (b is None):
            raise ValueError(f"{task} takes {'one sentence' if task == 'sst' else 'two sentences'}")
        self.model.eval()
        with autocast(self.device, self.dtype):
            outputs = task_outputs(self.model, task, self._batch(task, a, b)).float().cpu()
        if task == "sst":
            probs = outputs.softmax(-1)[0]
            return {"label": SST_LABELS[int(probs.argmax())],
                    "probabilities": dict(zip(SST_LABELS, [round(float(p), 3) for p in probs], strict=True))}
        if task == "qqp":
            p = float(torch.sigmoid(outputs[0]))
            return {"duplicate": p > 0.5, "probability": round(p, 3)}
        return {"similarity": round(float(outputs[0]), 2)}


def prediction_panel(predictor: Predictor):
    """An ipywidgets panel around `Predictor.predict`: pick a task, type text, see the output.
    Under papermill nothing is typed; the panel renders and the notebook goes on."""
    import ipywidgets as widgets

    task = widgets.Dropdown(options=["sst", "qqp", "sts"], value="sst", description="task")
    first = widgets.Text(value="A gripping, beautifully acted film.", description="sentence",
                         layout=widgets.Layout(width="60%"))
    second = widgets.Text(value="", description="second", placeholder="pairs only (QQP, STS)",
                          layout=widgets.Layout(width="60%"))
    button = widgets.Button(description="predict")
    out = widgets.Output()

    def run(_=None):
        out.clear_output()
        with out:
            try:
                print(predictor.predict(task.value, first.value, second.value or None))
            except ValueError as exc:
                print(f"error: {exc}")

    button.on_click(run)
    return widgets.VBox([task, first, second, button, out])
