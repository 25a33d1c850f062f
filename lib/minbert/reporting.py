"""Run stamps, results JSON files, and the tables and figures the notebooks show.

Every results JSON has one schema, so later notebooks can read earlier ones:
{"notebook", "profile", "stamp": {commit, dirty, params, seed, device, versions,
started, wall_s}, "data": {task: {split: {source, size, skipped}}}, "runs": [{name,
config, dev, history}], "checks": {...}}.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from minbert import paths
from minbert.evaluation import margin_of_error
from minbert.files import atomic_write_text

VERSIONED_PACKAGES = ("minbert", "torch", "transformers", "tokenizers", "numpy", "pandas",
                      "scikit-learn", "optuna", "papermill")


def git_state(root: Path = paths.PROJECT_ROOT) -> tuple[str | None, bool | None]:
    """The commit checked out and whether the source (reports aside) has uncommitted changes.
    A copy of the tree run elsewhere (a lent GPU machine) names its commit in MINBERT_COMMIT."""
    if os.environ.get("MINBERT_COMMIT"):  # the copy's own .git, if any, may be stale
        return os.environ["MINBERT_COMMIT"], None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!reports"],
                                cwd=root, capture_output=True, text=True, check=True).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe_device(device: torch.device) -> str:
    """A human-readable name of the processor or GPU a run used."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu ({model}, {torch.get_num_threads()} threads)"


class RunStamp:
    """What produced a run: commit, params, seed, device, versions, start and wall time."""

    def __init__(self, params: dict[str, Any], seed: int | None, device: torch.device) -> None:
        self.commit, self.dirty = git_state()
        self.params = params
        self.seed = seed
        self.device = describe_device(device)
        self.versions = library_versions()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()

    def as_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "dirty": self.dirty, "params": self.params,
                "seed": self.seed, "device": self.device, "versions": self.versions,
                "started": self.started, "wall_s": round(time.perf_counter() - self._t0, 1)}

    def table(self) -> pd.DataFrame:
        """The stamp as a two-column table for the top of a report."""
        d = self.as_dict()
        rows = [("commit", f"{d['commit']}{' (uncommitted changes)' if d['dirty'] else ''}"),
                ("started (UTC)", d["started"]), ("device", d["device"]), ("seed", d["seed"])]
        rows += [(name, version) for name, version in d["versions"].items()]
        return pd.DataFrame(rows, columns=["", "value"]).set_index("")


def results_path(notebook: str) -> Path:
    return paths.reports_dir() / "results" / f"{notebook}.json"


def save_results(notebook: str, profile: str, stamp: RunStamp, data: dict, runs: list[dict],
                 checks: dict | None = None) -> Path:
    """Write the notebook's results JSON atomically; returns its path. `checks` holds
    notebook-level verifications (such as the BERT parity check)."""
    payload = {"notebook": notebook, "profile": profile, "stamp": stamp.as_dict(),
               "data": data, "runs": runs, "checks": checks or {}}
    return atomic_write_text(results_path(notebook), json.dumps(payload, indent=2) + "\n")


def load_results(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def plot_history(runs: list[dict], metrics: tuple[str, ...] = ("train_loss", "dev_loss", "dev_acc"),
                 ) -> plt.Figure:
    """One panel per metric, one line per run, epochs on the x axis."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for run in runs:
            epochs = [h["epoch"] for h in run["history"]]
            ax.plot(epochs, [h[metric] for h in run["history"]], marker="o", label=run["name"])
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


def multitask_table(runs: list[dict], study_rows: dict[str, str | None],
                    study_figures: dict[str, tuple], key: str = "strategy") -> pd.DataFrame:
    """Our dev scores per run beside the study's figure for the same idea (labelled as theirs);
    `study_rows` maps each run's `key` field (its strategy by default) to the study's row."""
    rows = []
    for run in runs:
        dev = run["dev"]
        study_row = study_rows.get(run.get(key, run["name"])) or "-"
        theirs = study_figures.get(study_row, (None, None, None))
        sizes = run.get("train_sizes", {})
        rows.append({"run": run["name"], "SST acc": dev["sst_acc"], "QQP acc": dev["qqp_acc"],
                     "STS pearson": dev["sts_pearson"],
                     "mean": (dev["sst_acc"] + dev["qqp_acc"] + dev["sts_pearson"]) / 3,
                     "best epoch": run["best_epoch"],
                     "seconds": round(sum(h["seconds"] for h in run["history"])),
                     "train sst/qqp/sts": "/".join(str(sizes.get(t, "?")) for t in ("sst", "qqp", "sts")),
                     "parameters": run.get("parameters"),
                     "study row (theirs)": study_row,
                     "study SST": theirs[0], "study QQP": theirs[1], "study STS": theirs[2]})
    return pd.DataFrame(rows).set_index("run")


def plot_task_losses(runs: list[dict], tasks: tuple[str, ...] = ("sst", "qqp", "sts")) -> plt.Figure:
    """Train (solid) and dev (dashed) loss per task and epoch, one colour per run."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 3.3), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, task in zip(axes[0], tasks, strict=True):
        for i, run in enumerate(runs):
            epochs = [h["epoch"] for h in run["history"]]
            colour = colours[i % len(colours)]
            ax.plot(epochs, [h[f"{task}_train_loss"] for h in run["history"]], "-o", color=colour,
                    label=f"{run['name']} train")
            ax.plot(epochs, [h[f"{task}_dev_loss"] for h in run["history"]], "--s", color=colour,
                    label=f"{run['name']} dev")
        ax.set(title=f"{task.upper()} loss", xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def overfitting_table(runs: list[dict], tasks: tuple[str, ...] = ("sst", "qqp", "sts")) -> pd.DataFrame:
    """Per run and task at the last epoch: train loss, dev loss and their gap (dev - train), and
    how much the dev loss rose from its lowest epoch: the signs of overfitting, in numbers."""
    rows = []
    for run in runs:
        last = run["history"][-1]
        row = {"run": run["name"], "epochs": last["epoch"]}
        for task in tasks:
            dev_losses = [h[f"{task}_dev_loss"] for h in run["history"]]
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


def delta_table(runs: list[dict], reference: str) -> pd.DataFrame:
    """Each run's dev scores and mean train-dev loss gap minus those of the `reference` run."""
    def numbers(run: dict) -> dict[str, float]:
        gaps = overfitting_table([run]).filter(like=" gap").iloc[0]
        dev = run["dev"]
        return {"SST acc": dev["sst_acc"], "QQP acc": dev["qqp_acc"], "STS pearson": dev["sts_pearson"],
                "mean": float(np.mean(list(dev.values()))), "loss gap": float(gaps.mean())}

    base = numbers(next(r for r in runs if r["name"] == reference))
    rows = [{"run": r["name"], **{f"Δ {k}": v - base[k] for k, v in numbers(r).items()}} for r in runs]
    return pd.DataFrame(rows).set_index("run")


def variant_findings(runs: list[dict], reference: str, dev_sizes: dict[str, int] | None = None) -> list[str]:
    """Plain sentences from the numbers: the best run, who beats `reference` on the mean dev
    score, and whether the ones that do not have a wider dev-train loss gap (overfitting).
    With `dev_sizes` (rows per task), also which differences exceed the 95% margin of one score."""
    deltas = delta_table(runs, reference)
    means = {r["name"]: float(np.mean(list(r["dev"].values()))) for r in runs}
    best = max(means, key=means.get)
    others = [name for name in deltas.index if name != reference]
    better = [n for n in others if deltas.loc[n, "Δ mean"] > 0]
    worse = [n for n in others if deltas.loc[n, "Δ mean"] <= 0]
    wider = [n for n in worse if deltas.loc[n, "Δ loss gap"] > 0]
    return [f"Best mean dev score: {best} ({means[best]:.3f}); {reference}: {means[reference]:.3f}.",
            f"Above {reference} on the mean: {', '.join(better) or 'none'}; "
            f"at or below: {', '.join(worse) or 'none'}.",
            f"Of those at or below {reference}, {len(wider)} of {len(worse)} have a wider dev-train "
            f"loss gap than {reference}: {', '.join(wider) or 'none'}."] + (
        [beyond_margin(runs, reference, dev_sizes)] if dev_sizes else [])


def aim_findings(record: dict, aims: dict[str, float]) -> list[str]:
    """Per aimed metric, one sentence: met or by how much it fell short, with the dev score by
    epoch (* = BERT frozen), so a reader sees whether training had stopped gaining."""
    lines = []
    for metric, aim in aims.items():
        scores = [h[metric] for h in record["history"]]
        trend = " -> ".join(f"{h[metric]:.3f}" + ("*" if h.get("bert_frozen") else "")
                            for h in record["history"])
        final = record["dev"][metric]
        if final >= aim:
            lines.append(f"{metric}: {final:.3f}, aim {aim} met (by epoch: {trend}).")
            continue
        rising = len(scores) > 1 and scores[-1] > scores[-2]
        state = "still rising" if rising else "no longer rising"
        lines.append(f"{metric}: {final:.3f}, {aim - final:.3f} short of the aim {aim} (by epoch: {trend}); "
                     f"{state} at the last epoch.")
    return lines


def aims_met(record: dict, aims: dict[str, float]) -> dict[str, bool]:
    """Per aimed metric, whether the run's dev score reached it."""
    return {metric: bool(record["dev"][metric] >= aim) for metric, aim in aims.items()}


def beyond_margin(runs: list[dict], reference: str, dev_sizes: dict[str, int]) -> str:
    """One sentence: the per-task differences from `reference` larger than the 95% margin of the
    reference's score on that many dev rows (a paired test would be tighter; this is the plain one)."""
    base = next(r for r in runs if r["name"] == reference)["dev"]
    margins = {metric: margin_of_error(metric, value, dev_sizes[metric.split("_")[0]])
               for metric, value in base.items()}
    clear = [f"{r['name']} {metric.split('_')[0].upper()} {r['dev'][metric] - base[metric]:+.3f}"
             for r in runs if r["name"] != reference
             for metric in margins if abs(r["dev"][metric] - base[metric]) > margins[metric]]
    yardstick = ", ".join(f"{m.split('_')[0].upper()} ±{v:.3f}" for m, v in margins.items())
    return (f"95% margin of one dev score here: {yardstick}. Differences from {reference} beyond it: "
            f"{'; '.join(clear) or 'none'}.")
