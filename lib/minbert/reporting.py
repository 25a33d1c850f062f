"""The tables, figures and findings the notebooks show, the results table across notebooks,
and reports/index.html.

Ours and theirs never share a column: the study's figures (BERT-base, its data) and the
state of the art it cites are a separate, labelled table.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from minbert import paths, tasks
from minbert.evaluation import margin_of_error, normalised_confusion
from minbert.files import atomic_write_text
from minbert.published import STATE_OF_THE_ART, STUDY_FIGURES
from minbert.records import Results, RunRecord, headline, load_all

METRIC_LABELS = {tasks.get(t).metric: tasks.get(t).metric_label for t in tasks.MULTITASK}

def arms_table(names: list[str] | None = None) -> pd.DataFrame:
    """The study's arms as the library defines them (`experiments.ARMS`): what each does, the knobs
    it changes over the notebook's settings, and the study's row for it (theirs)."""
    from minbert.experiments import ARMS

    rows = [{"arm": arm.name, "what it does": arm.summary,
             "knobs it sets": ", ".join(f"{k}={v}" for k, v in arm.settings.items()) or "-",
             "study row (theirs)": arm.study_row or "-"}
            for arm in ARMS.values() if names is None or arm.name in names]
    return pd.DataFrame(rows).set_index("arm")


def data_table(summaries: dict[str, dict], splits: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The data a notebook used, one row per (data set, task, split): source file, rows, skipped rows."""
    rows = [{"data": which, "task": task, "split": split, **info}
            for which, summary in summaries.items() for task, by_split in summary.items()
            for split, info in by_split.items() if splits is None or split in splits]
    return pd.DataFrame(rows).set_index(["data", "task", "split"])


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


def plot_history(runs: list[RunRecord], metrics: tuple[str, ...] = ("train_loss", "dev_loss", "dev_acc"),
                 ) -> plt.Figure:
    """One panel per metric, one line per run, epochs on the x axis."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for run in runs:
            epochs = [h["epoch"] for h in run.history]
            ax.plot(epochs, [h[metric] for h in run.history], marker="o", label=run.name)
        ax.set(title=metric.replace("_", " "), xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
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


def multitask_table(runs: list[RunRecord], study_rows: dict[str, str | None],
                    key: str = "arm") -> pd.DataFrame:
    """Our dev scores per run beside the study's figure for the same idea (labelled as theirs);
    `study_rows` maps each run's `key` attribute (its arm by default, or its name) to the study's row."""
    rows = []
    for run in runs:
        study_row = study_rows.get(getattr(run, key) or run.name) or "-"
        theirs = STUDY_FIGURES.get(study_row, (None, None, None))
        sizes = run.train_sizes or {}
        scores = {label: run.dev.get(metric) for metric, label in METRIC_LABELS.items()}
        rows.append({"run": run.name, **scores,
                     "mean": run.mean, "held-out mean": run.heldout_mean, "best epoch": run.best_epoch,
                     "seconds": round(run.seconds),
                     "train sst/qqp/sts": "/".join(str(sizes.get(t, "?")) for t in tasks.MULTITASK),
                     "parameters": run.parameters, "study row (theirs)": study_row,
                     "study SST": theirs[0], "study QQP": theirs[1], "study STS": theirs[2]})
    return pd.DataFrame(rows).set_index("run")


def plot_task_losses(runs: list[RunRecord], names: tuple[str, ...] = tasks.MULTITASK) -> plt.Figure:
    """Train (solid) and dev (dashed) loss per task and epoch, one colour per run."""
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.3), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, task in zip(axes[0], names, strict=True):
        for i, run in enumerate(runs):
            epochs = [h["epoch"] for h in run.history]
            colour = colours[i % len(colours)]
            ax.plot(epochs, [h[f"{task}_train_loss"] for h in run.history], "-o", color=colour,
                    label=f"{run.name} train")
            ax.plot(epochs, [h[f"{task}_dev_loss"] for h in run.history], "--s", color=colour,
                    label=f"{run.name} dev")
        ax.set(title=f"{task.upper()} loss", xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def overfitting_table(runs: list[RunRecord], names: tuple[str, ...] = tasks.MULTITASK) -> pd.DataFrame:
    """Per run and task at the last epoch: train loss, dev loss and their gap (dev - train), and
    how much the dev loss rose from its lowest epoch: the signs of overfitting, in numbers."""
    rows = []
    for run in runs:
        last = run.history[-1]
        row = {"run": run.name, "epochs": last["epoch"]}
        for task in names:
            dev_losses = [h[f"{task}_dev_loss"] for h in run.history]
            row[f"{task} train"] = last[f"{task}_train_loss"]
            row[f"{task} dev"] = last[f"{task}_dev_loss"]
            row[f"{task} gap"] = last[f"{task}_dev_loss"] - last[f"{task}_train_loss"]
            row[f"{task} dev rise"] = dev_losses[-1] - min(dev_losses)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def plot_attention(maps: dict[str, np.ndarray], tokens: list[str], title: str = "") -> plt.Figure:
    """Attention weights (query rows, key columns) of one sentence, one panel per model."""
    side = 0.33 * len(tokens)
    fig, axes = plt.subplots(1, len(maps), figsize=(side * len(maps) + 2, side + 1.5), squeeze=False)
    for ax, (name, weights) in zip(axes[0], maps.items(), strict=True):
        sns.heatmap(weights, vmin=0, vmax=1, cmap="viridis", square=True, cbar=False, ax=ax,
                    xticklabels=tokens, yticklabels=tokens)
        zeros = float((weights == 0).mean())
        ax.set(title=f"{name}\n{zeros:.0%} exact zeros", xlabel="key", ylabel="query")
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def delta_table(runs: list[RunRecord], reference: str) -> pd.DataFrame:
    """Each run's dev scores and mean train-dev loss gap minus those of the `reference` run."""
    def numbers(run: RunRecord) -> dict[str, float]:
        gaps = overfitting_table([run]).filter(like=" gap").iloc[0]
        return {**{label: run.dev[metric] for metric, label in METRIC_LABELS.items()},
                "mean": run.mean, "loss gap": float(gaps.mean())}

    base = numbers(next(r for r in runs if r.name == reference))
    rows = [{"run": r.name, **{f"Δ {k}": v - base[k] for k, v in numbers(r).items()}} for r in runs]
    return pd.DataFrame(rows).set_index("run")


def variant_findings(runs: list[RunRecord], reference: str,
                     dev_sizes: dict[str, int] | None = None) -> list[str]:
    """Plain sentences from the numbers: the best run, who beats `reference` on the mean dev
    score, and whether the ones that do not have a wider dev-train loss gap (overfitting).
    With `dev_sizes` (rows per task), also which differences exceed the 95% margin of one score."""
    deltas = delta_table(runs, reference)
    means = {r.name: r.mean for r in runs}
    best = headline(runs).name
    others = [name for name in deltas.index if name != reference]
    better = [n for n in others if deltas.loc[n, "Δ mean"] > 0]
    worse = [n for n in others if deltas.loc[n, "Δ mean"] <= 0]
    wider = [n for n in worse if deltas.loc[n, "Δ loss gap"] > 0]
    return [f"Headline run (best mean held-out score): {best}, mean dev score {means[best]:.3f}; "
            f"{reference}: {means[reference]:.3f}.",
            f"Above {reference} on the mean: {', '.join(better) or 'none'}; "
            f"at or below: {', '.join(worse) or 'none'}.",
            f"Of those at or below {reference}, {len(wider)} of {len(worse)} have a wider dev-train "
            f"loss gap than {reference}: {', '.join(wider) or 'none'}."] + (
        [beyond_margin(runs, reference, dev_sizes)] if dev_sizes else [])


def aim_findings(record: RunRecord, aims: dict[str, float]) -> list[str]:
    """Per aimed metric, one sentence: met or by how much it fell short, with the dev score by
    epoch (* = BERT frozen), so a reader sees whether training had stopped gaining."""
    lines = []
    for metric, aim in aims.items():
        scores = [h[metric] for h in record.history]
        trend = " -> ".join(f"{h[metric]:.3f}" + ("*" if h.get("bert_frozen") else "")
                            for h in record.history)
        final = record.dev[metric]
        if final >= aim:
            lines.append(f"{metric}: {final:.3f}, aim {aim} met (by epoch: {trend}).")
            continue
        rising = len(scores) > 1 and scores[-1] > scores[-2]
        state = "still rising" if rising else "no longer rising"
        lines.append(f"{metric}: {final:.3f}, {aim - final:.3f} short of the aim {aim} (by epoch: {trend}); "
                     f"{state} at the last epoch.")
    return lines


def beyond_margin(runs: list[RunRecord], reference: str, dev_sizes: dict[str, int]) -> str:
    """One sentence: the per-task differences from `reference` larger than the 95% margin of the
    reference's score on that many dev rows (a paired test would be tighter; this is the plain one)."""
    base = next(r for r in runs if r.name == reference).dev
    metric_task = {tasks.get(t).metric: t for t in tasks.MULTITASK}
    margins = {metric: margin_of_error(metric, value, dev_sizes[metric_task[metric]])
               for metric, value in base.items()}
    clear = [f"{r.name} {metric_task[metric].upper()} {r.dev[metric] - base[metric]:+.3f}"
             for r in runs if r.name != reference
             for metric in margins if abs(r.dev[metric] - base[metric]) > margins[metric]]
    yardstick = ", ".join(f"{metric_task[m].upper()} ±{v:.3f}" for m, v in margins.items())
    return (f"95% margin of one dev score here: {yardstick}. Differences from {reference} beyond it: "
            f"{'; '.join(clear) or 'none'}.")


# ----------------------------------------------------------------------------- across notebooks

def runs_table(results: list[Results]) -> pd.DataFrame:
    """One row per run of every notebook and profile: its dev scores (blank where a task was not
    run), the mean of those it has, and the stamp's profile, device and commit. Where a notebook
    has results of several profiles, each run's name carries its profile."""
    profiles: dict[str, set[str]] = {}
    for result in results:
        profiles.setdefault(result.notebook, set()).add(result.profile)
    rows = []
    for result in results:
        several = len(profiles[result.notebook]) > 1  # e.g. a quick run here and a full one on a GPU
        for run in result.runs:
            name = f"{run.name} ({result.profile})" if several else run.name
            rows.append({"notebook": result.notebook, "run": name,
                         **{label: run.dev.get(metric) for metric, label in METRIC_LABELS.items()},
                         "mean": run.mean if run.dev else None, "held-out mean": run.heldout_mean,
                         "profile": result.profile,
                         "device": result.stamp["device"],
                         "commit": _short_commit(result.stamp),
                         "headline": run is result.headline()})
    columns = ["notebook", "run", *METRIC_LABELS.values(), "mean", "held-out mean", "profile", "device",
               "commit", "headline"]
    return pd.DataFrame(rows, columns=columns).set_index(["notebook", "run"])  # columns even when empty


def _short_commit(stamp: dict) -> str:
    return (stamp["commit"] or "?")[:7] + ("+" if stamp["dirty"] else "")


def study_table() -> pd.DataFrame:
    """The study's published dev figures and the state of the art it cites (theirs)."""
    rows = [{"model (theirs)": name, "SST acc": sst, "QQP acc": qqp, "STS pearson": sts}
            for name, (sst, qqp, sts) in STUDY_FIGURES.items()]
    rows.append({"model (theirs)": "state of the art cited by the study", "SST acc": STATE_OF_THE_ART[0],
                 "QQP acc": STATE_OF_THE_ART[1], "STS pearson": STATE_OF_THE_ART[2]})
    return pd.DataFrame(rows).set_index("model (theirs)")


def headline_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Each results file's headline run (`records.headline`), without the marker column."""
    return table.loc[table["headline"].astype(bool)].drop(columns="headline")


def plot_tasks(table: pd.DataFrame) -> plt.Figure:
    """One bar chart per task: each notebook's headline run (ours), the study's best figure and the
    state of the art it cites (theirs, hatched)."""
    ours = headline_runs(table)
    theirs = study_table()
    fig, axes = plt.subplots(1, len(METRIC_LABELS), figsize=(5.0 * len(METRIC_LABELS), 3.8))
    for ax, label in zip(axes, METRIC_LABELS.values(), strict=True):
        mine = ours[label].dropna()
        names = [f"{nb[:2]} {run}" for nb, run in mine.index]
        values = list(mine.values)
        study_best = theirs[label].drop("state of the art cited by the study").max()
        names += ["study best (theirs)", "state of the art (theirs)"]
        values += [study_best, theirs.loc["state of the art cited by the study", label]]
        bars = ax.barh(names, values, color=["tab:blue"] * len(mine) + ["tab:gray", "tab:gray"])
        for bar in bars[len(mine):]:
            bar.set_hatch("//")
        ax.set(title=label, xlim=(0, 1))
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _summary_line(result: Results) -> str:
    best = result.headline()
    scores = ", ".join(f"{METRIC_LABELS[k]} {v:.3f}" for k, v in best.dev.items() if k in METRIC_LABELS)
    stamp = result.stamp
    return (f"headline run <code>{html.escape(best.name)}</code>: {scores}; profile {result.profile}, "
            f"{html.escape(stamp['device'])}, commit {(stamp['commit'] or '?')[:7]}, "
            f"{stamp['wall_s'] / 60:.1f} min")


def write_index(reports_dir: Path | None = None) -> Path:
    """reports/index.html: a link per rendered report (`<notebook>.<profile>.html`) with its headline run,
    and the results tables."""
    folder = reports_dir or paths.reports_dir()
    every = load_all(folder / "results")
    reports = {tuple(p.stem.rsplit(".", 1)): p for p in folder.glob("[0-9][0-9]_*.*.html")}
    results = {(r.notebook, r.profile): r for r in every if r.runs}
    items = []
    for notebook, profile in sorted(set(reports) | set(results)):
        result, report = results.get((notebook, profile)), reports.get((notebook, profile))
        summary = _summary_line(result) if result else "the project's results, gathered"
        title = f"{notebook} ({profile})"
        link = f'<a href="{report.name}">{title}</a>' if report else f"{title}, results file only (no report)"
        items.append(f"<li>{link}: {summary}</li>")
    body = ["<h1>minbert reports</h1>",
            "<p>Rendered notebooks; each carries its run stamp (commit, parameters, device, versions). "
            "Dev-set figures. The study's figures are theirs (BERT-base), shown apart.</p>",
            "<ul>", *items, "</ul>"]
    if every:  # every run, of every profile
        body += ["<h2>Our runs</h2>", runs_table(every).round(3).to_html(na_rep="")]
    body += ["<h2>The study's published figures and the state of the art it cites (theirs)</h2>",
             study_table().to_html(na_rep="")]
    page = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>minbert reports</title>"
            "<style>body{font-family:sans-serif;max-width:72em;margin:2em auto}"
            "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px}"
            "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return atomic_write_text(folder / "index.html", page)
