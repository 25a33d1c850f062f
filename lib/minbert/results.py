"""The project's results table from every results JSON, the study's beside it, and reports/index.html.

Ours and theirs never share a column: the study's figures (BERT-base, its data) and
the state of the art it cites are a separate, labelled table.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from minbert import paths
from minbert.files import atomic_write_text
from minbert.study import STATE_OF_THE_ART, STUDY_FIGURES

METRICS = {"sst_acc": "SST acc", "qqp_acc": "QQP acc", "sts_pearson": "STS pearson"}


def load_all(results_dir: Path | None = None) -> list[dict]:
    """Every results JSON under reports/results/, in notebook order."""
    folder = results_dir or paths.reports_dir() / "results"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def runs_table(results: list[dict]) -> pd.DataFrame:
    """One row per run of every notebook: its dev scores (blank where a task was not run), the
    mean of those it has, and the stamp's profile, device and commit. Where a notebook has
    results of several profiles, each run's name carries its profile."""
    profiles: dict[str, set[str]] = {}
    for result in results:
        profiles.setdefault(result["notebook"], set()).add(result["profile"])
    rows = []
    for result in results:
        stamp = result["stamp"]
        several = len(profiles[result["notebook"]]) > 1  # e.g. a quick run here and a full one on a GPU
        for run in result["runs"]:
            dev = run.get("dev", {})
            scores = {label: dev.get(key) for key, label in METRICS.items()}
            present = [v for v in scores.values() if v is not None]
            name = f"{run['name']} ({result['profile']})" if several else run["name"]
            rows.append({"notebook": result["notebook"], "run": name, **scores,
                         "mean": float(np.mean(present)) if present else None,
                         "profile": result["profile"], "device": stamp["device"],
                         "commit": (stamp["commit"] or "?")[:7] + ("+" if stamp["dirty"] else "")})
    columns = ["notebook", "run", *METRICS.values(), "mean", "profile", "device", "commit"]
    return pd.DataFrame(rows, columns=columns).set_index(["notebook", "run"])  # columns even when empty


def study_table() -> pd.DataFrame:
    """The study's published dev figures and the state of the art it cites (theirs)."""
    rows = [{"model (theirs)": name, "SST acc": sst, "QQP acc": qqp, "STS pearson": sts}
            for name, (sst, qqp, sts) in STUDY_FIGURES.items()]
    rows.append({"model (theirs)": "state of the art cited by the study", "SST acc": STATE_OF_THE_ART[0],
                 "QQP acc": STATE_OF_THE_ART[1], "STS pearson": STATE_OF_THE_ART[2]})
    return pd.DataFrame(rows).set_index("model (theirs)")


def best_per_notebook(table: pd.DataFrame) -> pd.DataFrame:
    """Each notebook's run with the highest mean dev score."""
    best = table.reset_index().sort_values("mean", ascending=False).groupby("notebook", sort=False).head(1)
    return best.set_index(["notebook", "run"]).sort_index()


def plot_tasks(table: pd.DataFrame) -> plt.Figure:
    """One bar chart per task: each notebook's best run (ours), the study's best figure and the
    state of the art it cites (theirs, hatched)."""
    ours = best_per_notebook(table)
    theirs = study_table()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5.0 * len(METRICS), 3.8))
    for ax, label in zip(axes, METRICS.values(), strict=True):
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


def _summary_line(result: dict) -> str:
    best = max(result["runs"], key=lambda r: np.mean([v for v in r.get("dev", {}).values()] or [0]))
    scores = ", ".join(f"{METRICS[k]} {v:.3f}" for k, v in best.get("dev", {}).items() if k in METRICS)
    stamp = result["stamp"]
    return (f"best run <code>{html.escape(best['name'])}</code>: {scores}; profile {result['profile']}, "
            f"{html.escape(stamp['device'])}, commit {(stamp['commit'] or '?')[:7]}, "
            f"{stamp['wall_s'] / 60:.1f} min")


def write_index(reports_dir: Path | None = None) -> Path:
    """reports/index.html: a link and a one-line summary per report, and the results tables."""
    folder = reports_dir or paths.reports_dir()
    every = load_all(folder / "results")
    results = {r["notebook"]: r for r in every}  # one summary line per report
    items = []
    for report in sorted(folder.glob("[0-9][0-9]_*.html")):
        result = results.get(report.stem)
        line = _summary_line(result) if result and result["runs"] else "the project's results, gathered"
        items.append(f'<li><a href="{report.name}">{report.stem}</a>: {line}</li>')
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
