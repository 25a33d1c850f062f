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
from minbert.comparison import Comparison, Difference, signed
from minbert.evaluation import margin_of_error, normalised_confusion
from minbert.files import atomic_write_text
from minbert.published import STATE_OF_THE_ART, STUDY_FIGURES
from minbert.records import Results, RunRecord, load_all
from minbert.summary import RESUMED, headline, is_resumed, study_summary

METRIC_LABELS = {tasks.get(t).metric: tasks.get(t).metric_label for t in tasks.MULTITASK}

def report_links(notebook: str, profile: str, outputs: bool = True, predictions: bool = True):
    """The links a rendered report (reports/<notebook>.<profile>.html) opens with: back to the index,
    and, with `outputs`, to its results file and (for a notebook that writes them, `predictions`) its
    prediction files (paths relative to reports/)."""
    from IPython.display import HTML

    links = [("all reports", "index.html")]
    if outputs:
        links.append(("results file", f"results/{notebook}.{profile}.json"))
    if outputs and predictions:
        links.append(("prediction files", f"predictions/{notebook}.{profile}/"))
    items = " · ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in links)
    return HTML(f"<p>{items}</p>")


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
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=8,
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


def _checked_on(run: RunRecord) -> tuple[str, str]:
    """What each epoch of a run was scored on: its held-out rows (carved from train), or dev for runs
    without them; the loss key's pattern and its label."""
    if run.history and "heldout_mean" in run.history[0]:
        return "heldout_{task}_loss", "held-out"
    return "{task}_dev_loss", "dev"


def plot_task_losses(runs: list[RunRecord], names: tuple[str, ...] = tasks.MULTITASK) -> plt.Figure:
    """Small multiples, one panel per task: train (solid) and held-out (dashed; dev for runs without
    held-out rows) loss by epoch, one colour per run, the legend below the panels. Runs of a single
    epoch have no curve to draw: their two losses are bars instead."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False,
                             layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    one_epoch = all(len(run.history) == 1 for run in runs)
    for ax, task in zip(axes[0], names, strict=True):
        for i, run in enumerate(runs):
            key, label = _checked_on(run)
            colour = colours[i % len(colours)]
            train = [h[f"{task}_train_loss"] for h in run.history]
            checked = [h[key.format(task=task)] for h in run.history]
            if one_epoch:
                ax.bar([i - 0.2, i + 0.2], [train[0], checked[0]], width=0.4, color=colour,
                       hatch=["", "//"], edgecolor="white")
            else:
                epochs = [h["epoch"] for h in run.history]
                for values, style in ((train, "-o"), (checked, "--s")):
                    # a task trained in one epoch only (after a QQP-only phase) is a lone point: drawn larger
                    lone = np.isfinite(np.asarray(values, dtype=float)).sum() == 1
                    ax.plot(epochs, values, style, color=colour, ms=7 if lone else 3)
        if one_epoch:
            ax.set_xticks(range(len(runs)), [run.name for run in runs], rotation=45, ha="right", fontsize=8)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
        ax.set_title(f"{task.upper()} loss")
        ax.grid(alpha=0.3)
    label = _checked_on(runs[0])[1] if runs else "held-out"
    if one_epoch:
        styles = [plt.Rectangle((0, 0), 1, 1, color="grey", hatch=h) for h in ("", "//")]
    else:
        styles = [Line2D([], [], color="grey", ls="-"), Line2D([], [], color="grey", ls="--")]
    handles = styles + ([] if one_epoch else [Line2D([], [], color=colours[i % len(colours)], lw=3)
                                              for i in range(len(runs))])
    labels = ["train", label] + ([] if one_epoch else [run.name for run in runs])
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=8,
               frameon=False)
    return fig


def overfitting_table(runs: list[RunRecord], names: tuple[str, ...] = tasks.MULTITASK) -> pd.DataFrame:
    """Per run and task at the last epoch: train loss, held-out loss (dev for runs without held-out
    rows) and their gap, and how much the held-out loss rose from its lowest epoch: the signs of
    overfitting, in numbers."""
    rows = []
    for run in runs:
        key, label = _checked_on(run)
        last = run.history[-1]
        row = {"run": run.name, "epochs": last["epoch"]}
        for task in names:
            losses = [h[key.format(task=task)] for h in run.history]
            row[f"{task} train"] = last[f"{task}_train_loss"]
            row[f"{task} {label}"] = losses[-1]
            row[f"{task} gap"] = losses[-1] - last[f"{task}_train_loss"]
            row[f"{task} {label} rise"] = losses[-1] - min(losses)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def examples_view(table: pd.DataFrame):
    """An examples table (`analysis.examples_table` rows) as a page shows it: sentences read left to
    right (pandas right-aligns every cell), scores to 3 digits, no row numbers."""
    text = list(table.select_dtypes(exclude=["number", "bool"]).columns)
    return (table.style.hide(axis="index").format(precision=3)
            .set_properties(subset=text, **{"text-align": "left"}))


def plot_attention(maps: dict[str, np.ndarray], tokens: list[str], title: str = "") -> plt.Figure:
    """Attention weights (query rows, key columns) of one sentence, one panel per model, on one colour
    scale from 0 to 1 with its colour bar beside the panels."""
    side = max(0.38 * len(tokens), 3.0)
    fig, axes = plt.subplots(1, len(maps), figsize=(side * len(maps) + 1.5, side + 1.2), squeeze=False,
                             layout="constrained")
    for ax, (name, weights) in zip(axes[0], maps.items(), strict=True):
        sns.heatmap(weights, vmin=0, vmax=1, cmap="viridis", square=True, cbar=False, ax=ax,
                    xticklabels=tokens, yticklabels=tokens)
        zeros = float((weights == 0).mean())
        ax.set(title=f"{name}\n{zeros:.0%} exact zeros", xlabel="key", ylabel="query")
        ax.tick_params(labelsize=9)
    fig.colorbar(axes[0][0].collections[0], ax=axes[0].tolist(), label="attention weight", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def comparison_table(comparison: Comparison, study_rows: dict[str, str | None] | None = None) -> pd.DataFrame:
    """One row per arm: each task's dev score as mean ± standard deviation over its seeds, the
    held-out mean it is selected on, and its budget per run (examples, optimizer steps, seconds),
    so a reader sees that the arms had the same budget."""
    rows = []
    for arm, runs in comparison.runs.items():
        row: dict = {"arm": arm, "seeds": len(runs)}
        for metric, label in METRIC_LABELS.items():
            scores = [r.dev[metric] for r in runs if metric in r.dev]
            if scores:
                spread = np.std(scores, ddof=1) if len(scores) > 1 else 0.0
                row[label] = f"{np.mean(scores):.3f} ± {spread:.3f}"
        row["mean"] = round(float(np.mean([r.mean for r in runs])), 3)
        held = [r.heldout_mean for r in runs if r.heldout]
        row["held-out mean"] = round(float(np.mean(held)), 3) if held else None
        row["dev rows"] = _dev_rows(runs[0])
        row["examples"] = runs[0].examples
        row["steps"] = runs[0].steps
        row["seconds"] = round(float(np.mean([r.seconds for r in runs])))
        if study_rows is not None:
            study_row = study_rows.get(arm) or "-"
            theirs = STUDY_FIGURES.get(study_row, (None, None, None))
            row.update({"study row (theirs)": study_row, "study SST": theirs[0], "study QQP": theirs[1],
                        "study STS": theirs[2]})
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def _dev_rows(run: RunRecord) -> str | None:
    """The dev rows each task's score is on, sst/qqp/sts (fewer than the file where a seeded subset
    was used for speed), or None for records that predate counting them."""
    if not run.dev_sizes:
        return None
    return "/".join(f"{run.dev_sizes[t]:,}" for t in tasks.MULTITASK if t in run.dev_sizes)


def differences_table(differences: list[Difference]) -> pd.DataFrame:
    """Each arm minus the reference per task: the seed-mean difference, its paired 95% bootstrap
    interval over the dev items, the difference by seed, and whether it is named a finding."""
    rows = [{"arm": d.arm, "task": tasks.get(d.task).metric_label, "Δ": signed(d.estimate),
             "95% interval": f"[{signed(d.low)}, {signed(d.high)}]",
             "by seed": " ".join(signed(x) for x in d.seed_differences), "dev items": d.items,
             "finding": ("above" if d.estimate > 0 else "below") if d.detected else "none detected"}
            for d in differences]
    columns = ["arm", "task", "Δ", "95% interval", "by seed", "dev items", "finding"]
    return pd.DataFrame(rows, columns=columns).set_index(["arm", "task"])  # columns even when empty


def candidates_table(candidates: dict[str, dict], kept: str | None) -> pd.DataFrame:
    """The ways of assembling the final model side by side: members, held-out scores (what chose the
    one kept) and dev scores (reported only), each with the mean of the tasks."""
    rows = {}
    for name, found in candidates.items():
        row = {"kept": "yes" if name == kept else "", "members": len(found["members"])}
        for split in ("heldout", "dev"):
            label = "held-out" if split == "heldout" else "dev"
            row |= {f"{label} {task.upper()}": found[split][key] for task, key in tasks.metrics().items()}
            row[f"{label} mean"] = tasks.mean_score(found[split])
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("ensemble")


def blend_table(blend: dict) -> pd.DataFrame:
    """The pretrained view's blend per task: the view's weight (chosen on the held-out rows) and the
    held-out and dev scores of the final model without the view, of the view alone, and with it. Its
    seconds (fitting the view, scoring it) are in `blend["seconds"]`."""
    weights = {tasks.get(task).metric_label: w for task, w in blend["weights"].items()}
    rows = {("weight of the view", ""): weights}
    for split in ("heldout", "dev"):
        for which, found in blend[split].items():
            rows[("held-out" if split == "heldout" else "dev", which)] = {
                tasks.get(task).metric_label: found[key] for task, key in tasks.metrics().items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["rows", "model"])


def aim_findings(record: RunRecord, aims: dict[str, float],
                 members: list[RunRecord] | None = None) -> list[str]:
    """Per aimed metric, one sentence: the dev score met the aim or by how much it fell short, with
    the held-out score by epoch (dev for runs without held-out rows; * = BERT frozen), so a reader sees
    whether training had stopped gaining. An ensemble has no epochs of its own: its trend is its
    `members`' curves, one per run, and "rising" reads their mean at the last two epochs."""
    curves = [m for m in (members or []) if m.history] or [record]
    held = bool(curves[0].history) and "heldout_mean" in curves[0].history[0]
    lines = []
    for metric, aim in aims.items():
        key = f"heldout_{metric}" if held else metric
        trends = [" -> ".join(f"{h[key]:.3f}" + ("*" if h.get("bert_frozen") else "") for h in r.history)
                  for r in curves]
        shown = trends[0] if len(curves) == 1 else "; ".join(
            f"{r.name} {t}" for r, t in zip(curves, trends, strict=True))
        where = "held-out by epoch" if held else "by epoch"
        final = record.dev[metric]
        if final >= aim:
            lines.append(f"{metric}: {final:.3f}, aim {aim} met ({where}: {shown}).")
            continue
        last = [[h[key] for h in r.history][-2:] for r in curves]
        rising = all(len(pair) == 2 for pair in last) and np.mean([b - a for a, b in last]) > 0
        state = "still rising" if rising else "no longer rising"
        lines.append(f"{metric}: {final:.3f}, {aim - final:.3f} short of the aim {aim} ({where}: {shown}); "
                     f"{state} at the last epoch.")
    return lines


def runs_table(results: list[Results]) -> pd.DataFrame:
    """One row per arm (the runs of one `group`, its seeds; a run without a group is its own row) of
    every notebook and profile: its mean dev scores over the seeds (blank where a task was not run),
    the mean of those it has, the held-out mean, how many seeds, and the stamp's profile, device and
    commit. Where a notebook has results of several profiles, each row's name carries its profile."""
    profiles: dict[str, set[str]] = {}
    for result in results:
        profiles.setdefault(result.notebook, set()).add(result.profile)
    rows = []
    for result in results:
        several = len(profiles[result.notebook]) > 1  # e.g. a quick run here and a full one on a GPU
        top = result.headline() if result.runs else None
        groups: dict[str, list[RunRecord]] = {}
        for run in result.runs:
            groups.setdefault(run.group or run.name, []).append(run)
        for group, runs in groups.items():
            name = f"{group} ({result.profile})" if several else group
            scores = {label: _mean_or_none([r.dev.get(metric) for r in runs])
                      for metric, label in METRIC_LABELS.items()}
            rows.append({"notebook": result.notebook, "run": name, **scores,
                         "mean": _mean_or_none([r.mean if r.dev else None for r in runs]),
                         "held-out mean": _mean_or_none([r.heldout_mean for r in runs]),
                         "seeds": len(runs), "dev rows": _dev_rows(runs[0]), "profile": result.profile,
                         "device": result.stamp["device"],
                         "commit": _short_commit(result.stamp), "headline": any(r is top for r in runs)})
    columns = ["notebook", "run", *METRIC_LABELS.values(), "mean", "held-out mean", "seeds", "dev rows",
               "profile", "device", "commit", "headline"]
    return pd.DataFrame(rows, columns=columns).set_index(["notebook", "run"])  # columns even when empty


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


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
    """One bar chart per task: each notebook's headline run (ours), the study's final model (its
    BERT-Final row) and the state of the art it cites (theirs, hatched)."""
    ours = headline_runs(table)
    theirs = study_table()
    fig, axes = plt.subplots(1, len(METRIC_LABELS), figsize=(5.4 * len(METRIC_LABELS), 4.2),
                             layout="constrained")
    for ax, label in zip(axes, METRIC_LABELS.values(), strict=True):
        mine = ours[label].dropna()
        names = [f"{nb[:2]} {run}" for nb, run in mine.index]
        values = list(mine.values)
        names += ["study BERT-Final (theirs)", "state of the art (theirs)"]
        values += [theirs.loc["BERT-Final", label], theirs.loc["state of the art cited by the study", label]]
        bars = ax.barh(names, values, color=["tab:blue"] * len(mine) + ["tab:gray", "tab:gray"])
        for bar in bars[len(mine):]:
            bar.set_hatch("//")
        ax.set(title=label, xlim=(0, 1.12))
        ax.bar_label(bars, fmt="%.3f", fontsize=9, padding=2)
        ax.invert_yaxis()
        ax.tick_params(labelsize=9)
    return fig


def _summary_line(result: Results) -> str:
    """The headline arm's dev scores (the mean over its seeds where it has several) and its stamp."""
    h = headline(result)
    seeds = f" ({h['seeds']})" if h["seeds"] else ""
    minutes = (f"{h['minutes'].removesuffix(RESUMED)} min, resumed from finished runs (each run's training "
               "time is in the report)" if is_resumed(h["minutes"]) else f"{h['minutes']} min")
    return (f"headline run <code>{html.escape(h['run'])}</code>{seeds}: {h['scores']}; "
            f"profile {h['profile']}, {html.escape(h['device'])}, commit {h['commit']}, {minutes}")


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
            "<p>A re-implementation and check of a student study of BERT multitask fine-tuning. Dev-set "
            "figures; the study's are theirs (BERT-base), ours come from the embedded MiniLM.</p>",
            "<h2>The study's questions, its answers and ours</h2>",
            "<p>Ours are worded from each notebook's paired differences (95% intervals over the dev items, "
            "several seeds); a difference is named only when its interval excludes 0 and every seed "
            "agrees. The full profile answers where it has run.</p>",
            study_summary(every).to_html(index=False, escape=True),
            "<h2>Reports</h2>",
            "<p>Rendered notebooks; each carries its run stamp (commit, parameters, device, versions).</p>",
            "<ul>", *items, "</ul>"]
    if every:  # every run, of every profile
        body += ["<h2>Our runs</h2>", runs_table(every).round(3).to_html(na_rep="")]
    body += ["<h2>The study's published figures and the state of the art it cites (theirs)</h2>",
             study_table().to_html(na_rep="")]
    page = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>minbert reports</title>"
            "<style>body{font-family:sans-serif;max-width:72em;margin:2em auto}"
            "table{border-collapse:collapse;font-size:0.85em}"
            "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left}"
            "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return atomic_write_text(folder / "index.html", page)


# ----------------------------------------------------------------------------- what ran inside the runs

def _epoch_mean(runs: list[RunRecord], key: str) -> float | None:
    """The mean of one history key over every epoch of every run that records it."""
    values = [h[key] for r in runs for h in r.history if key in h and np.isfinite(h[key])]
    return float(np.mean(values)) if values else None


def smart_terms_table(comparison: Comparison, names: tuple[str, ...] = tasks.MULTITASK) -> pd.DataFrame:
    """Per arm and task, means over seeds and epochs: the task loss, the SMART term trained on, and the
    same term at zero perturbation (dropout alone); their difference is what the perturbation adds."""
    rows = []
    for arm, runs in comparison.runs.items():
        for task in names:
            term = _epoch_mean(runs, f"{task}_smart_loss")
            control = _epoch_mean(runs, f"{task}_smart_control")
            if term is None:
                continue
            loss = _epoch_mean(runs, f"{task}_train_loss")
            rows.append({"arm": arm, "task": task.upper(), "task loss": loss,
                         "SMART term": term, "at zero perturbation": control,
                         "added by the perturbation": term - control if control is not None else None})
    columns = ["arm", "task", "task loss", "SMART term", "at zero perturbation", "added by the perturbation"]
    return pd.DataFrame(rows, columns=columns).set_index(["arm", "task"])


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


def _rho(run: RunRecord) -> str:
    """The rho a Sophia run stepped with (each task's, with one optimizer per task)."""
    own = {t: s["rho"] for t, s in (run.config.get("task_settings") or {}).items() if "rho" in s}
    if run.config.get("task_optimizers") and own:
        return ", ".join(f"{t} {v:.3g}" for t, v in own.items())
    return f"{run.config.get('rho', float('nan')):.3g}"


def sophia_regime_table(comparison: Comparison) -> pd.DataFrame:
    """Per Sophia arm, means over seeds and epochs: the share of coordinate steps clipped to
    lr * sign(m) (near 1: sign descent; lower: Newton-like steps where the Hessian estimate is
    trusted), the same among coordinates with an estimate (h > 0; rows no refresh reached always
    clip), the Hessian estimate's mean as the step used it, and the rho at which half the estimated
    coordinates would step unclipped beside the run's own rho (far above it: sign descent)."""
    rows = [{"arm": arm, "clipped share": _epoch_mean(runs, "sophia_clipped_share"),
             "clipped share where h > 0": _epoch_mean(runs, "sophia_clipped_share_estimated"),
             "Hessian mean": _epoch_mean(runs, "sophia_hessian_mean"),
             "rho for half unclipped": _epoch_mean(runs, "sophia_rho_half"),
             "rho": _rho(runs[0])}
            for arm, runs in comparison.runs.items() if _epoch_mean(runs, "sophia_clipped_share") is not None]
    columns = ["arm", "clipped share", "clipped share where h > 0", "Hessian mean", "rho for half unclipped",
               "rho"]
    return pd.DataFrame(rows, columns=columns).set_index("arm")


def variant_movement_table(comparison: Comparison) -> pd.DataFrame:
    """Per attention variant with parameters of its own, how far each moved from its start
    (||theta - start|| / ||start||, where start is standard attention): one column per layer,
    means over the seeds."""
    rows = []
    for arm, runs in comparison.runs.items():
        moved = [r.variant_movement for r in runs if r.variant_movement]
        if not moved:
            continue
        names = [k for k in moved[0][0] if k != "layer"]
        for name in names:
            rows.append({"variant": arm, "parameter": name,
                         **{f"layer {layer['layer']}": float(np.mean([m[i][name] for m in moved]))
                            for i, layer in enumerate(moved[0])}})
    return pd.DataFrame(rows).set_index(["variant", "parameter"]) if rows else pd.DataFrame()


def variant_movement_line(comparison: Comparison) -> str:
    """The movement table in words: per variant with parameters of its own, the range over layers and
    parameters of ||theta - start|| / ||start|| in percent, and whether they stayed near the start (below
    5%), where a variant is close to standard attention by construction rather than by what it learned."""
    table = variant_movement_table(comparison)
    if table.empty:
        return ""
    spans = {arm: (float(rows.min().min()), float(rows.max().max()))
             for arm, rows in table.groupby(level="variant", sort=False)}
    parts = ", ".join(f"{arm} {low:.1%}-{high:.1%}" if f"{low:.1%}" != f"{high:.1%}" else f"{arm} {low:.1%}"
                      for arm, (low, high) in spans.items())
    largest = max(high for _, high in spans.values())
    tail = (" of their start norm: they stayed close to standard attention, so these variants were tested "
            "near their starting point, not as what more training would make of them." if largest < 0.05 else
            " of their start norm.")
    return f"The variants' own parameters moved {parts} (per layer, mean over seeds){tail}"


def loss_gaps(comparison: Comparison, names: tuple[str, ...] = tasks.MULTITASK) -> pd.Series:
    """Per arm, the held-out (dev without held-out rows) minus train loss at the last epoch, averaged
    over the tasks and seeds: larger where an arm fits its training data better than new data."""
    gaps = {}
    for arm, runs in comparison.runs.items():
        table = overfitting_table(runs, names)
        gaps[arm] = float(table[[f"{task} gap" for task in names]].to_numpy().mean())
    return pd.Series(gaps, name="loss gap")


def limits(comparison: Comparison, differences: list[Difference], profile: str) -> str:
    """What a comparison's budget can and cannot show, from its own runs, as Markdown: the data and
    seeds behind it and, per task, the typical half-width of its paired intervals (differences much
    smaller than that go undetected at this budget)."""
    records = comparison.records()
    first = records[0]
    names = [t for t in tasks.MULTITASK if t in (first.train_sizes or first.dev_sizes or {})]
    sized = ", ".join(f"{t.upper()} {first.train_sizes[t]:,}" for t in names if first.train_sizes)
    dev = _dev_rows(first)
    seeds = len(next(iter(comparison.runs.values())))
    by_arm = {(r.group or r.name): r.config.get("epochs", "?") for r in records}
    epochs = (f"{next(iter(by_arm.values()))} epochs" if len(set(by_arm.values())) == 1
              else ", ".join(f"{n} epochs ({arm})" for arm, n in by_arm.items()))
    lines = [f"- Budget: {sized or 'the data above'} training rows, {epochs}, "
             f"{seeds} seed{'s' if seeds != 1 else ''} per arm; dev rows {dev or 'as shown'} "
             f"({'/'.join(names) or 'per task'})."]
    widths = {}
    for d in differences:
        widths.setdefault(d.task, []).append((d.high - d.low) / 2)
    if widths:
        lines.append("- Resolution: the paired 95% intervals are typically ±" + ", ±".join(
            f"{float(np.median(w)):.3f} on {tasks.get(t).metric_label}" for t, w in widths.items())
            + " wide; smaller true differences go undetected here.")
    if profile != "full":
        lines.append(f"- This is the {profile} profile, sized for a 2-core CPU: it shows the mechanics and "
                     "the direction of large effects. The full profile (all data, 5 seeds) is the evidence.")
    return "\n".join(lines)


def peer_table(ours: dict[str, RunRecord], peer: Results | None,
               differences: list[Difference]) -> pd.DataFrame:
    """Per task, whose each row is: the study's final BERT-base (theirs), the peer (transformers' own
    fine-tune of the same weights, one task at a time) and each of `ours` (label -> record): the dev
    score with its 95% margin, the dev rows, the training seconds; then ours minus the peer with its
    paired interval."""
    theirs = STUDY_FIGURES["BERT-Final"]
    rows = []
    for k, task in enumerate(tasks.MULTITASK):
        spec = tasks.get(task)
        rows.append({"task": spec.metric_label, "model": "study BERT-Final (theirs; BERT-base, all of QQP)",
                     "dev": f"{theirs[k]:.3f}", "dev rows": "", "seconds": ""})
        entries = []
        if peer is not None:
            run = next((r for r in peer.runs if spec.metric in r.dev), None)
            if run is not None:
                entries.append(("peer: transformers, one task at a time (same weights, same rows)", run))
        entries += [(label, record) for label, record in ours.items()]
        for label, record in entries:
            score, n = record.dev[spec.metric], (record.dev_sizes or {}).get(task)
            margin = f" ± {margin_of_error(spec.metric, score, n):.3f}" if n and n >= 4 else ""
            rows.append({"task": spec.metric_label, "model": label, "dev": f"{score:.3f}{margin}",
                         "dev rows": f"{n:,}" if n else "", "seconds": f"{record.seconds:,.0f}"})
        for d in differences:
            if d.task == task:
                rows.append({"task": spec.metric_label, "model": f"{d.arm} − peer (paired 95% interval)",
                             "dev": d.span,
                             "dev rows": f"{d.items:,}", "seconds": ""})
    return pd.DataFrame(rows).set_index(["task", "model"])
