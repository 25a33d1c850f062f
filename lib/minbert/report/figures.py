"""The figures the reports draw: confusion matrices, loss and held-out curves, attention maps, the
SMART probe, the results bar chart across notebooks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from minbert import tasks
from minbert.evaluation import normalised_confusion
from minbert.records import Results, RunRecord
from minbert.report.study import EVIDENCE_PROFILES, headline_arm
from minbert.report.tables import checked_on, metric_labels, study_table


def plot_confusions(dev: dict, predicted: dict[str, list], title: str) -> plt.Figure:
    """Row-normalised confusion matrices of every classification task, side by side (`dev`: task ->
    token ids with gold labels, `predicted`: task -> predicted labels)."""
    shown = [t for t in dev if tasks.get(t).kind != "regression" and t in predicted]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4.2), squeeze=False)
    for ax, name in zip(axes[0], shown, strict=True):
        task = tasks.get(name)
        matrix = normalised_confusion(dev[name].labels, predicted[name], range(task.num_classes))
        plot_confusion(matrix, list(task.class_names), f"{name.upper()} {title}", ax=ax)
    fig.tight_layout()
    return fig


HISTORY_METRICS = ("train_loss", "heldout_loss", "heldout_acc", "dev_acc")


def plot_history(runs: list[RunRecord], metrics: tuple[str, ...] = HISTORY_METRICS) -> plt.Figure:
    """One panel per metric (those the runs recorded), one line per run, integer epochs on the x axis, the
    legend below the panels so that it hides no line."""
    from matplotlib.ticker import MaxNLocator

    metrics = tuple(m for m in metrics if any(m in h for run in runs for h in run.history))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False,
                             layout="constrained")
    for ax, metric in zip(axes[0], metrics, strict=True):
        for run in runs:
            points = [(h["epoch"], h[metric]) for h in run.history if metric in h]
            ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=run.name)
        ax.set(title=metric.replace("_", " ").replace("heldout", "held-out"), xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=10,
               frameon=False)
    return fig


def plot_confusion(matrix: np.ndarray, labels: list[str], title: str,
                   ax: plt.Axes | None = None) -> plt.Figure:
    """A row-normalised confusion matrix as a heatmap (rows: gold, columns: predicted),
    on a new figure or into `ax`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.2))
    sns.heatmap(matrix, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1,
                xticklabels=labels, yticklabels=labels, ax=ax)
    ax.set(title=title, xlabel="predicted", ylabel="gold")
    ax.figure.tight_layout()
    return ax.figure


RUN_MARKERS = "osD^vP*Xph"


def plot_task_losses(runs: list[RunRecord], names: tuple[str, ...] | None = None) -> plt.Figure:
    """Small multiples, one panel per task: train (solid) and held-out (dashed; dev for runs without
    held-out rows) loss by epoch, one colour per run, the legend below the panels. Runs of a single
    epoch have no curve to draw: their two losses are bars instead."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    names = names or tasks.MULTITASK
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False,
                             layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    one_epoch = all(len(run.history) == 1 for run in runs)
    for ax, task in zip(axes[0], names, strict=True):
        for i, run in enumerate(runs):
            colour = colours[i % len(colours)]
            epochs = run.epochs
            train = [e.train_loss[task] for e in epochs]
            checked = [e.checked_loss(task) for e in epochs]
            if one_epoch:
                ax.bar([i - 0.2, i + 0.2], [train[0], checked[0]], width=0.4, color=colour,
                       hatch=["", "//"], edgecolor="white")
            else:
                numbers = [e.epoch for e in epochs]
                marker = RUN_MARKERS[i % len(RUN_MARKERS)]  # runs whose lines coincide stay apart by marker
                for values, style in ((train, "-"), (checked, "--")):
                    # a task trained in one epoch only (after a QQP-only phase) is a lone point: drawn larger
                    lone = np.isfinite(np.asarray(values, dtype=float)).sum() == 1
                    ax.plot(numbers, values, style, marker=marker, color=colour, ms=8 if lone else 5,
                            mfc="none" if style == "--" else colour)
        if one_epoch:
            ax.set_xticks(range(len(runs)), [run.name for run in runs], rotation=45, ha="right", fontsize=10)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
        ax.set_title(f"{task.upper()} loss")
        ax.grid(alpha=0.3)
    label = checked_on(runs[0]) if runs else "held-out"
    if one_epoch:
        styles = [plt.Rectangle((0, 0), 1, 1, color="grey", hatch=h) for h in ("", "//")]
    else:
        styles = [Line2D([], [], color="grey", ls="-"), Line2D([], [], color="grey", ls="--")]
    handles = styles + ([] if one_epoch else [Line2D([], [], color=colours[i % len(colours)], lw=2,
                                                     marker=RUN_MARKERS[i % len(RUN_MARKERS)])
                                              for i in range(len(runs))])
    labels = ["train", label] + ([] if one_epoch else [run.name for run in runs])
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=10,
               frameon=False)
    return fig


def plot_attention(maps: dict[str, np.ndarray], tokens: list[str], title: str = "") -> plt.Figure:
    """Attention weights (query rows, key columns) of one sentence, one panel per model, on one colour
    scale from 0 to 1 with its colour bar beside the panels."""
    side = max(0.38 * len(tokens), 3.0)
    columns = min(len(maps), 2)  # two panels a row: a page scales a wider figure, and its labels, down
    rows = -(-len(maps) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(side * columns + 1.5, (side + 1.2) * rows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[len(maps):]:
        ax.set_visible(False)
    for ax, (name, weights) in zip(axes.flat, maps.items(), strict=False):
        sns.heatmap(weights, vmin=0, vmax=1, cmap="viridis", square=True, cbar=False, ax=ax,
                    xticklabels=tokens, yticklabels=tokens)
        zeros = float((weights == 0).mean())
        ax.set(title=f"{name}\n{zeros:.0%} exact zeros", xlabel="key", ylabel="query")
        ax.tick_params(labelsize=10)
    fig.colorbar(axes[0][0].collections[0], ax=axes.ravel().tolist(), label="attention weight", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


PROFILE_MARKERS = {"full": "o", "cpu": "s", "smoke": "x"}  # filled: evidence; smoke: the tests' budget


def _headline_points(result: Results) -> list[tuple[str, str, list[float]]]:
    """(label, metric, seed scores) of a results file's headline: its headline arm's runs (the peer: each
    task's run; notebook 06: its final model)."""
    best, runs = headline_arm(result)
    if result.notebook.startswith("peer"):
        runs, label = result.runs, "peer (transformers, one run per task)"
    else:
        label = f"{result.notebook[:2]} {best.group or best.name}"
    points = []
    for metric in metric_labels():
        scores = [r.dev[metric] for r in runs if metric in r.dev]
        if scores:
            points.append((f"{label} ({result.profile})", metric, scores))
    return points


def plot_tasks(results: list[Results]) -> plt.Figure:
    """One panel per task: each results file's headline (ours; its seeds' mean with their range as a bar,
    the marker telling the profile apart), the floors its comparisons recorded (majority class,
    untrained checkpoint: dotted), the study's final model and the state of the art it cites (theirs:
    dashed). Where an evidence profile (cpu, full) has results, the smoke profile's are left
    out: a reference that never learned would only stretch the axes."""
    labels = metric_labels()
    theirs = study_table()
    results = [r for r in results if r.profile in EVIDENCE_PROFILES] or results
    points = [p for r in results if r.runs for p in _headline_points(r)]
    floors: dict[str, dict[str, float]] = {}
    for result in results:
        for name, by_task in (result.checks.get("floors") or {}).items():
            for task, score in by_task.items():
                floors.setdefault(tasks.get(task).metric, {}).setdefault(f"{name} ({result.profile})", score)
    rows = list(dict.fromkeys(label for label, _, _ in points))
    fig, axes = plt.subplots(1, len(labels), figsize=(5.2 * len(labels), 1.2 + 0.42 * max(len(rows), 2)),
                             sharey=True, squeeze=False, layout="constrained")
    for ax, (metric, title) in zip(axes[0], labels.items(), strict=True):
        for label, where, scores in points:
            if where != metric:
                continue
            y, profile = rows.index(label), label.rsplit("(", 1)[-1].rstrip(")")
            mean = float(np.mean(scores))
            ax.errorbar(mean, y, xerr=[[mean - min(scores)], [max(scores) - mean]], fmt=PROFILE_MARKERS.get(
                profile, "o"), color="tab:blue", mfc="tab:blue", capsize=3)
            ax.annotate(f"{mean:.3f}", (mean, y), xytext=(0, 6), textcoords="offset points", ha="center",
                        fontsize=9)
        for k, (name, score) in enumerate(floors.get(metric, {}).items()):
            ax.axvline(score, color="tab:red", ls=":", lw=1.2, label=f"floor: {name}" if k < 4 else None)
        ax.axvline(theirs.loc["BERT-Final", title], color="gray", ls="--", lw=1.2,
                   label="study BERT-Final (theirs)")
        ax.axvline(theirs.loc["state of the art cited by the study", title], color="black", ls="-.", lw=1,
                   label="state of the art (theirs)")
        ax.set(title=title, xlabel="dev score")
        ax.grid(axis="x", alpha=0.3)
    handles = {label: h for ax in axes[0] for h, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(handles), 4),
               fontsize=10, frameon=False)
    axes[0][0].set_yticks(range(len(rows)), rows, fontsize=10)
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5) if rows else None
    return fig


def plot_smart_probe(rows: list[dict]) -> plt.Figure:
    """The adversarial term against the perturbation's size, one panel per task (log scales): eval mode
    (the perturbation alone) and train mode, with the dropout-only level as a dotted line."""
    frame = pd.DataFrame(rows)
    frame = frame[frame["epsilon"] > 0]
    task_names = list(dict.fromkeys(frame["task"]))
    fig, axes = plt.subplots(1, len(task_names), figsize=(4.2 * len(task_names), 3.4), squeeze=False)
    for ax, task in zip(axes[0], task_names, strict=True):
        part = frame[frame["task"] == task]
        ax.plot(part["epsilon"], part["eval term"].clip(lower=1e-9), "-o",
                label="eval mode (perturbation only)")
        ax.plot(part["epsilon"], part["train term"], "-s", label="train mode (with dropout)")
        ax.axhline(part["train control"].iloc[0], color="grey", ls=":", label="dropout alone (ε = 0)")
        ax.axhline(part["task loss"].iloc[0], color="black", ls="--", lw=0.8, label="task loss")
        ax.set(xscale="log", yscale="log", title=task.upper(), xlabel="ε (× embedding scale)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("SMART term")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
