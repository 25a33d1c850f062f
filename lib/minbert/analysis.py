"""Error analysis of a trained multitask model, and a prediction panel for exploring it.

Tables of the least confident and the most wrong dev examples per task, the dev metric
by input length, the STS predicted-against-gold scatter, and `Predictor`: type a
sentence or a pair, get the model's prediction (a plain call; the ipywidgets panel
around it is for JupyterLab).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import NullFormatter

from minbert import tasks
from minbert.bert import BertConfig, encoder_parameters
from minbert.data import TaskSplit, pad_batch
from minbert.models import MultitaskBert
from minbert.records import RunRecord
from minbert.runtime import CPU, Runtime


def examples_table(task: str, split: TaskSplit, outputs: torch.Tensor) -> pd.DataFrame:
    """Every dev example with its text(s), gold label, prediction, and confidence or error."""
    spec = tasks.get(task)
    frame = pd.DataFrame({"id": [e.id for e in split.examples],
                          "text": [" || ".join(e.texts) for e in split.examples],
                          "gold": [e.label for e in split.examples],
                          "predicted": spec.predicted_labels(outputs)})
    if spec.kind == "regression":
        frame["error"] = (frame["predicted"] - frame["gold"]).abs()
    else:
        frame["confidence"] = spec.confidence(outputs)
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


def _word_overlap(text: str) -> float:
    """Jaccard overlap of the lower-cased word sets of a pair's two sentences (`a || b`)."""
    first, _, second = text.partition(" || ")
    a, b = set(first.lower().split()), set(second.lower().split())
    return len(a & b) / max(len(a | b), 1)


def _mean_or_dash(values: pd.Series) -> str:
    return f"{values.mean():.2f}" if len(values) else "-"


def error_profile(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """What the mistakes have in common, measured, by the task's kind: for several classes (SST) the
    share of wrong answers one class off and the most frequent confusion; for two (QQP) the false
    positives and negatives, and for a pair the word overlap of wrong pairs against right ones; for a
    score (STS) the mean signed error by gold band (over- or under-estimation of similarity)."""
    rows = []
    for name, table in tables.items():
        task, label = tasks.get(name), name.upper()
        if task.kind == "regression":
            if len(table):
                rows += _score_errors(label, table, task.score_range)
        elif (~table["correct"]).any():
            rows += (_class_errors(label, table, task.class_names) if task.kind == "multiclass"
                     else _binary_errors(label, table, task.class_names[1], task.is_pair))
    return pd.DataFrame(rows, columns=["task", "measure", "value"]).set_index(["task", "measure"])


def _class_errors(label: str, table: pd.DataFrame, names: tuple[str, ...]) -> list[tuple[str, str, str]]:
    wrong = table[~table["correct"]]
    confusions = wrong.groupby(["gold", "predicted"]).size()
    gold, predicted = confusions.idxmax()
    one_off = float(((wrong["gold"] - wrong["predicted"]).abs() == 1).mean())
    return [(label, "wrong answers one class off", f"{one_off:.0%}"),
            (label, "most frequent confusion (gold -> predicted)",
             f"{names[int(gold)]} -> {names[int(predicted)]} ({int(confusions.max())} rows)")]


def _binary_errors(label: str, table: pd.DataFrame, positive: str, pair: bool) -> list[tuple[str, str, str]]:
    wrong = table[~table["correct"]]
    confident = wrong[wrong["confidence"] >= wrong["confidence"].quantile(0.9)]
    rows = [(label, f"false {positive}s / missed {positive}s",
             f"{int((wrong['predicted'] == 1).sum())} / {int((wrong['predicted'] == 0).sum())}"),
            (label, f"of the most confident tenth of the mistakes: missed {positive}s",
             f"{float((confident['predicted'] == 0).mean()):.0%}")]
    if pair:
        overlap = table["text"].map(_word_overlap)
        found, right = table["gold"] == 1, table["correct"]
        rows += [(label, f"word overlap (Jaccard): {positive}s found / missed",
                  f"{_mean_or_dash(overlap[found & right])} / {_mean_or_dash(overlap[found & ~right])}"),
                 (label, f"word overlap: non-{positive}s kept apart / called {positive}s",
                  f"{_mean_or_dash(overlap[~found & right])} / {_mean_or_dash(overlap[~found & ~right])}")]
    return rows


def _score_errors(label: str, table: pd.DataFrame,
                  score_range: tuple[float, float]) -> list[tuple[str, str, str]]:
    low, high = score_range
    edges = np.linspace(low, high, 6)
    names = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    signed = table["predicted"] - table["gold"]
    bands = pd.cut(table["gold"], [edges[0] - 0.01, *edges[1:]], labels=names)
    return [(label, f"mean predicted - gold, gold {band}", f"{values.mean():+.2f} ({len(values)} rows)")
            for band, values in signed.groupby(bands, observed=True)]


def metric_by_length(task: str, table: pd.DataFrame, lengths: list[int], bins: int = 5) -> pd.DataFrame:
    """The dev metric per length bin (quantiles of the input's token count) with the bin sizes."""
    frame = table.assign(length=lengths)
    frame["bin"] = pd.qcut(frame["length"], q=bins, duplicates="drop")
    rows = []
    spec = tasks.get(task)
    for interval, group in frame.groupby("bin", observed=True):
        if spec.kind == "regression":
            value = spec.score(group["predicted"], group["gold"]) if len(group) > 2 else np.nan
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
            ax.text(x, value, f"{value:.2f}\nn={n}", ha="center", va="bottom", fontsize=10)
        ax.set(title=f"{tasks.get(task).metric_label} by length",
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

    def __init__(self, model: MultitaskBert, tokenizer, runtime: Runtime = CPU,
                 max_length: int = 128) -> None:
        self.model, self.tokenizer, self.runtime, self.max_length = model, tokenizer, runtime, max_length

    def _batch(self, a: str, b: str | None) -> dict:
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
        return {key: {k: v.to(self.runtime.device) for k, v in part.items()} for key, part in parts.items()}

    @torch.no_grad()
    def predict(self, task: str, a: str, b: str | None = None) -> dict:
        """SST: the label and its probabilities; QQP: duplicate probability; STS: the 0..5 score."""
        spec = tasks.get(task)
        if spec.is_pair == (b is None):
            raise ValueError(f"{task} takes {'two sentences' if spec.is_pair else 'one sentence'}")
        self.model.eval()
        with self.runtime.autocast():
            outputs = self.model.task_outputs(task, self._batch(a, b)).float().cpu()
        return spec.explain(outputs[0])


# What the static report shows in place of the panel (a page offline cannot run widgets).
EXAMPLE_INPUTS: tuple[tuple[str, str, str | None], ...] = (
    ("sst", "A gripping, beautifully acted film.", None),
    ("sst", "A dull, lifeless and badly acted film.", None),
    ("qqp", "How do I learn Python?", "What is the best way to learn Python?"),
    ("qqp", "How do I learn Python?", "How do I cook rice?"),
    ("sts", "A man is playing a guitar.", "A person plays an instrument."),
    ("sts", "A man is playing a guitar.", "A woman is slicing an onion."),
)


def example_predictions(predictor: Predictor,
                        inputs: tuple[tuple[str, str, str | None], ...] = EXAMPLE_INPUTS) -> pd.DataFrame:
    """The model's answers to a few typed inputs, one row per task and input: the panel's output as a
    static table."""
    rows = []
    for task, a, b in inputs:
        answer = predictor.predict(task, a, b)
        shown = ", ".join(f"{k}: {v}" for k, v in answer.items() if k != "probabilities")
        rows.append({"task": task.upper(), "input": a if b is None else f"{a} ‖ {b}", "prediction": shown})
    return pd.DataFrame(rows).set_index(["task", "input"])


def prediction_panel(predictor: Predictor):
    """An ipywidgets panel around `Predictor.predict`: pick a task, type text, see the output.
    Under papermill nothing is typed; the panel renders and the notebook goes on."""
    import ipywidgets as widgets

    task = widgets.Dropdown(options=list(tasks.MULTITASK), value=tasks.MULTITASK[0], description="task")
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


def sentence_attention(model: MultitaskBert, tokenizer, sentence: str, runtime: Runtime = CPU,
                       layer: int = -1, head: int = 0) -> tuple[list[str], np.ndarray]:
    """One sentence's tokens and the attention weights of one layer and head, (query, key)."""
    ids = tokenizer(sentence)["input_ids"]
    model.to(runtime.device).eval()
    maps = model.bert.attention_maps(torch.tensor([ids], device=runtime.device))
    return tokenizer.convert_ids_to_tokens(ids), maps[layer][0, head].float().cpu().numpy()


# The QQP training pairs the study had (quora-train.csv); SST and STS it had as we do.
STUDY_QQP_TRAIN = 141_506


def _log2_fits(runs: list[RunRecord], on: str, size_of: Callable[[RunRecord, str], int | None],
               of_error: bool = False):
    """Per task with at least two sizes: the task, the sizes in order, their mean scores (runs of one size
    averaged), and the line score = intercept + slope * log2(size); with `of_error`, the line
    ln(1 - score) = intercept + slope * log2(size), a power law in the error, which stays below a
    perfect score however far it is read. `size_of(run, task)` is a run's size for a task (None: the
    run has no point there); scores are dev or held-out (`on`)."""
    for task in tasks.MULTITASK:
        metric = tasks.get(task).metric
        points: dict[int, list[float]] = {}
        for run in runs:
            scores = run.dev if on == "dev" else (run.heldout or {})
            size = size_of(run, task)
            if size is not None and metric in scores:
                points.setdefault(size, []).append(scores[metric])
        if len(points) < 2:
            continue
        sizes = np.array(sorted(points), dtype=float)
        means = np.array([np.mean(points[int(n)]) for n in sizes])
        slope, intercept = np.polyfit(np.log2(sizes), np.log(1 - means) if of_error else means, 1)
        yield task, sizes, means, float(slope), float(intercept)


def learning_curve(runs: list[RunRecord], aims: dict[str, float], on: str = "dev") -> pd.DataFrame:
    """Score against train rows per task, from runs of one recipe on different train sizes (runs of equal
    size are averaged), on dev or on the held-out rows (`on`), fitted as score = a + b log2(rows): the
    gain per doubling of the data, the rows at which the fit reaches the aim, and what it predicts for
    QQP with the study's 141,506 pairs. An extrapolation of a measured trend, not a measurement: it says
    what data alone would buy."""
    def rows_of(run: RunRecord, task: str) -> int | None:
        return (run.train_sizes or {}).get(task)

    rows = []
    for task, sizes, scores, slope, intercept in _log2_fits(runs, on, rows_of):
        aim = aims.get(tasks.get(task).metric)
        needed = 2 ** ((aim - intercept) / slope) if aim is not None and slope > 0 else None
        shown = ", ".join(f"{int(n):,}: {v:.3f}" for n, v in zip(sizes, scores, strict=True))
        row = {"task": tasks.get(task).metric_label, f"points (rows: {on})": shown,
               "gain per doubling": round(float(slope), 4), "aim": aim,
               "rows to reach the aim (fit)": f"{needed:,.0f}" if needed else "not at this slope"}
        if task == "qqp":
            predicted = intercept + slope * np.log2(STUDY_QQP_TRAIN)
            row["with the study's 141,506 QQP pairs (fit)"] = round(float(predicted), 3)
        rows.append(row)
    return pd.DataFrame(rows).set_index("task") if rows else pd.DataFrame()


def plot_fits(runs: list[RunRecord], on: str = "heldout", checkpoint: BertConfig | None = None,
              reference: BertConfig | None = None) -> plt.Figure:
    """The fits of `learning_curve` (without `checkpoint`: score against train rows) or of
    `model_size_curve` (with it: against the encoder's weights), one panel per task: the measured points,
    the fit solid over the measured range and dashed beyond it (an extrapolation, marked so), to the
    study's QQP rows or to `reference`'s (BERT-base's) encoder size. A fit of two points is titled so."""
    if checkpoint is None:
        fits = list(_log2_fits(runs, on, lambda run, task: (run.train_sizes or {}).get(task)))
        xlabel, error = "train rows per task (log scale)", False
    else:
        per_layer = encoder_parameters(dataclasses.replace(checkpoint, num_hidden_layers=1))
        fits = list(_log2_fits(runs, on, lambda run, task: per_layer * (run.config.get("num_layers")
                                                                       or checkpoint.num_hidden_layers),
                               of_error=True))
        xlabel, error = "encoder weights (log scale)", True
    fig, axes = plt.subplots(1, max(len(fits), 1), figsize=(4.4 * max(len(fits), 1), 3.6), squeeze=False,
                             layout="constrained")
    for ax, (task, sizes, means, slope, intercept) in zip(axes[0], fits, strict=False):
        if error:
            target = encoder_parameters(reference or BertConfig())
        else:
            target = STUDY_QQP_TRAIN if task == "qqp" else sizes[-1] * 4
        measured = np.geomspace(sizes[0], sizes[-1], 50)
        beyond = np.geomspace(sizes[-1], max(target, sizes[-1]), 50)

        def line(x: np.ndarray, slope: float = slope, intercept: float = intercept) -> np.ndarray:
            y = intercept + slope * np.log2(x)
            return 1 - np.exp(y) if error else y

        ax.plot(sizes, means, "o", color="tab:blue", label="measured (mean over seeds)")
        ax.plot(measured, line(measured), "-", color="tab:blue", label="fit")
        ax.plot(beyond, line(beyond), "--", color="tab:orange", label="extrapolation")
        ax.set(xscale="log", xlabel=xlabel, ylabel=f"{tasks.get(task).metric_label} ({on})",
               title=task.upper() + (" (a two-point fit)" if len(sizes) == 2 else f" ({len(sizes)} points)"))
        # ticks at the measured sizes and the extrapolation's end only: log-scale minor labels collide
        ends = [*sizes, target] if target > sizes[-1] else list(sizes)
        ax.set_xticks(ends, [f"{x / 1e6:.3g}M" if error else f"{x:,.0f}" for x in ends])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
    if fits:
        axes[0][0].legend(fontsize=9)
    return fig


def model_size_curve(runs: list[RunRecord], checkpoint: BertConfig, aims: dict[str, float],
                     on: str = "heldout", reference: BertConfig | None = None) -> pd.DataFrame:
    """Score against the encoder's size, from runs of one recipe on one budget that keep the first
    `num_layers` of the checkpoint's layers (all where unset), on dev or held-out (`on`), fitted as
    a power law in the error, 1 - score = a * weights^-b (a score is bounded, so a line in the score
    itself would pass a perfect one): the gain the next doubling of the model brings at the largest size
    run, and what the law gives at `reference`'s encoder (default BERT-base, the study's model) on the
    same budget. An extrapolation from few points, and only in depth: it says what model size alone
    would buy at this data size."""
    reference = reference or BertConfig()
    target = encoder_parameters(reference)
    per_layer = encoder_parameters(dataclasses.replace(checkpoint, num_hidden_layers=1))

    def size_of(run: RunRecord, task: str) -> int:
        return per_layer * (run.config.get("num_layers") or checkpoint.num_hidden_layers)

    rows = []
    for task, sizes, scores, slope, intercept in _log2_fits(runs, on, size_of, of_error=True):
        shown = "; ".join(f"{int(n) // per_layer} layers ({n / 1e6:.3g}M): {v:.3f}"
                          for n, v in zip(sizes, scores, strict=True))
        error_at_largest = np.exp(intercept + slope * np.log2(sizes[-1]))
        gain = error_at_largest * (1 - np.exp(slope))  # from the largest size run to twice its weights
        predicted = 1 - np.exp(intercept + slope * np.log2(target))
        rows.append({"task": tasks.get(task).metric_label, f"points ({on})": shown,
                     "gain per doubling": round(float(gain), 4), "aim": aims.get(tasks.get(task).metric),
                     f"at BERT-base's encoder, {target / 1e6:.3g}M (fit)": round(predicted, 3)})
    return pd.DataFrame(rows).set_index("task") if rows else pd.DataFrame()
