"""The findings the reports state in words, from their own numbers: the final model against its aims,
how far the attention variants' parameters moved, and what a comparison's budget cannot show."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from minbert import tasks
from minbert.comparison import Comparison, Difference, cannot_answer, multiplicity_line, smallest_effect
from minbert.records import Results, RunRecord
from minbert.report.tables import dev_rows, variant_movement_table


def label_of(metric: str) -> str:
    """A metric key as a reader reads it: "sst_acc" -> "SST acc"."""
    return next((t.metric_label for t in tasks.TASKS.values() if t.metric == metric), metric)


def aim_findings(record: RunRecord, aims: dict[str, float],
                 members: list[RunRecord] | None = None) -> list[str]:
    """Per aimed metric, one sentence: the dev score met the aim or by how much it fell short, with
    the held-out score by epoch (dev for runs without held-out rows; * = BERT frozen), so a reader sees
    whether training had stopped gaining. An ensemble has no epochs of its own: its trend is its
    `members`' curves, one per run, and "rising" reads their mean at the last two epochs."""
    curves = [m for m in (members or []) if m.history] or [record]
    held = bool(curves[0].history) and curves[0].epochs[0].heldout_mean is not None
    lines = []
    for metric, aim in aims.items():
        trends = [" -> ".join(f"{e.score(metric):.3f}" + ("*" if e.bert_frozen else "") for e in r.epochs)
                  for r in curves]
        shown = trends[0] if len(curves) == 1 else "; ".join(
            f"{r.name} {t}" for r, t in zip(curves, trends, strict=True))
        where = "held-out by epoch" if held else "by epoch"
        final = record.dev[metric]
        if final >= aim:
            lines.append(f"{label_of(metric)}: {final:.3f}, aim {aim} met ({where}: {shown}).")
            continue
        last = [[e.score(metric) for e in r.epochs][-2:] for r in curves]
        rising = all(len(pair) == 2 for pair in last) and np.mean([b - a for a, b in last]) > 0
        state = "still rising" if rising else "no longer rising"
        lines.append(f"{label_of(metric)}: {final:.3f}, {aim - final:.3f} short of the aim {aim} "
                     f"({where}: {shown}); "
                     f"{state} at the last epoch.")
    return lines


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


# What a comparison's reference arm should reach before its answers bear on the study's questions (mean dev
# score over its seeds): the evidence issue's targets; a cross-encoder's STS (which no zero-shot cosine
# floors) has its own.
TARGETS = {"sst_acc": 0.43, "qqp_acc": 0.77, "sts_pearson": 0.85}
CROSS_ENCODER_TARGETS = {**TARGETS, "sts_pearson": 0.82}


# Where a profile shows what a larger budget reaches: the reference recipe trained again on more rows.
LARGER_BUDGET = {
    "bi-encoder": "notebook 02's final run is the reference recipe on more rows: its page sets it "
                  "against the same targets",
    "cross-encoder": "notebook 06's final runs are a cross-encoder on more rows, its learning "
                     "curve a smaller point",
}


def _targets_of(run: RunRecord) -> tuple[dict[str, float], str]:
    """The targets a run's mode is held to, and where a larger budget of that mode is shown."""
    mode = "cross-encoder" if run.config.get("mode") == "cross-encoder" else "bi-encoder"
    return (CROSS_ENCODER_TARGETS if mode == "cross-encoder" else TARGETS), LARGER_BUDGET[mode]


def final_run_line(final_runs: list[RunRecord]) -> str:
    """A final run (the reference recipe on more rows) against the targets, as a Markdown line: what a
    larger budget reaches, for the comparisons whose reference misses a target."""
    if not final_runs:
        return ""
    run = final_runs[0]
    sizes = ", ".join(f"{t.upper()} {n:,}" for t, n in (run.train_sizes or {}).items())
    parts = []
    for metric, target in _targets_of(run)[0].items():
        if metric in run.dev:
            mark = "meets" if run.dev[metric] >= target else f"misses by {target - run.dev[metric]:.3f}"
            parts.append(f"{label_of(metric)} {run.dev[metric]:.3f} (target {target:.2f}: {mark})")
    seeds = "one seed" if len(final_runs) == 1 else f"{len(final_runs)} runs"
    return (f"- A larger budget: {run.arm or run.name} again on {sizes} training rows ({seeds}, the same dev "
            f"rows): {'; '.join(parts)}.")


def target_line(comparison: Comparison) -> str:
    """The reference arm's mean dev score per task against its target (`TARGETS`), and by how much it
    misses one, as a Markdown line."""
    runs = comparison.runs.get(comparison.reference) or []
    if not runs:
        return ""
    targets, larger = _targets_of(runs[0])
    parts, missed = [], []
    for metric, target in targets.items():
        scores = [r.dev[metric] for r in runs if metric in r.dev]
        if not scores:
            continue
        mean = float(np.mean(scores))
        parts.append(f"{label_of(metric)} {mean:.3f} (target {target:.2f})")
        if mean < target:
            missed.append(f"{label_of(metric)} by {target - mean:.3f}")
    if not parts:
        return ""
    verdict = (f"misses {', '.join(missed)}: its answers there stand on a reference weaker than the evidence "
               f"asks, and more rows for every arm are what would reach it ({larger})" if missed
               else "meets every target")
    return f"- Targets: the reference arm {comparison.reference}'s mean dev {'; '.join(parts)} {verdict}."


def multiplicity_by_comparison(families: dict[str, list[Difference]],
                               answers: dict[str, dict[str, bool]] | None = None) -> list[str]:
    """Holm's correction on a page of several comparisons (06), each comparison its own family: what each
    judged and named, and how many of those keep their verdict (`comparison.multiplicity_line`). A
    comparison's `answers` (`comparison.learned`) leave out the tasks its reference did not learn, as the
    other pages' lines do."""
    parts = []
    for name, differences in families.items():
        judged = [d for d in differences if not cannot_answer(d, (answers or {}).get(name))]
        if judged:
            parts.append(f"{name}: {multiplicity_line(judged)}")
    return ["Holm's correction, each comparison its own family. " + " ".join(parts)] if parts else []


def limits(comparison: Comparison, differences: list[Difference], profile: str) -> str:
    """What a comparison's budget can and cannot show, from its own runs, as Markdown: the data and
    seeds behind it and, per task, the typical half-width of its paired intervals (differences much
    smaller than that go undetected at this budget)."""
    records = comparison.records()
    first = records[0]
    names = [t for t in tasks.MULTITASK if t in (first.train_sizes or first.dev_sizes or {})]
    sized = ", ".join(f"{t.upper()} {first.train_sizes[t]:,}" for t in names if first.train_sizes)
    dev = dev_rows(first)
    seeds = len(next(iter(comparison.runs.values())))
    by_arm = {(r.group or r.name): r.config.get("epochs", "?") for r in records}
    epochs = (f"{next(iter(by_arm.values()))} epochs" if len(set(by_arm.values())) == 1
              else ", ".join(f"{n} epochs ({arm})" for arm, n in by_arm.items()))
    lines = [f"- Budget: {sized or 'the data above'} training rows, {epochs}, "
             f"{seeds} seed{'s' if seeds != 1 else ''} per arm; dev rows {dev or 'as shown'} "
             f"({'/'.join(names) or 'per task'})."]
    if (targets := target_line(comparison)) and len(names) > 1:  # the multitask comparisons
        lines.append(targets)
    widths = {}
    for d in differences:
        widths.setdefault(d.task, []).append((d.high - d.low) / 2)
    if widths:
        lines.append("- Resolution: the paired 95% intervals are typically ±" + ", ±".join(
            f"{float(np.median(w)):.3f} on {tasks.get(t).metric_label}" for t, w in widths.items())
            + " wide, against the smallest effects worth naming, ±" + ", ±".join(
                f"{smallest_effect(t):g} on {tasks.get(t).metric_label}" for t in widths)
            + ": where an interval is wider than its smallest effect, no difference there can be called "
            "negligible at this budget, and smaller true differences go undetected.")
    if profile == "cpu":
        lines.append("- This is the cpu profile, the evidence on a 2-core CPU until a GPU run exists. It "
                     "cannot show effects smaller than the intervals above, nor what all the data, more "
                     "epochs, more seeds and the arms it leaves out (its params file names them) would "
                     "change: the full profile can.")
    elif profile != "full":
        lines.append(f"- This is the {profile} profile, the tests' budget: it shows that the notebook runs "
                     "end to end, and its figures answer nothing. The cpu profile is the evidence; the "
                     "index says which notebooks also ran the full profile.")
    return "\n".join(lines)


def quora_caveat(checkpoint: str | None = None) -> str:
    """What the checkpoint's model card says it was trained on that overlaps QQP, in one paragraph (read
    from the card the checkpoint folder ships, README.md; a checkpoint without one gets a plain warning):
    the embedded all-MiniLM-L6-v2 saw Quora's duplicate questions, the source of QQP, in its training."""
    from minbert.bert import default_checkpoint

    card = Path(checkpoint or default_checkpoint()) / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    quora = re.search(r"^\|\s*\[?(Quora[^\]|]*)\]?[^|]*\|[^|]*\|\s*([\d,]+)\s*\|", text, flags=re.M)
    total = re.search(r"^\|\s*\*\*Total\*\*\s*\|[^|]*\|\s*\*\*([\d,]+)\*\*", text, flags=re.M)
    if not quora:
        return ("Caveat on QQP: the checkpoint's model card does not say whether its training data include "
                "Quora's questions; if they do, QQP dev figures may be flattered by overlap.")
    pairs = f" of the {total.group(1)} pairs of its training data" if total else ""
    name, rows = quora.group(1).strip(), quora.group(2)
    return (f"Caveat on QQP: the checkpoint's model card lists {rows} {name}{pairs}. Quora's duplicate "
            "questions are the source of QQP, so some QQP dev pairs may have been seen in its training: our "
            "QQP figures may be flattered by that overlap (against the study's BERT-base, which was not "
            "trained on them), while a comparison of our own arms shares it alike.")


def profile_disagreements(differences: list[Difference], other: Results | None,
                          key: str = "differences") -> str:
    """Where this run's verdicts and another profile's results file (`other`) disagree on the same arm and
    task: one better and the other worse, or one naming a difference the other calls negligible. Empty
    where they agree or there is no other file; budgets differ, so a disagreement is a caveat, not an
    error."""
    if other is None:
        return ""
    theirs = {(d["arm"], d["task"]): Difference.from_dict(d).verdict for d in other.checks.get(key, [])}
    named = ("better", "worse")
    clash = []
    for d in differences:
        there = theirs.get((d.arm, d.task))
        if there is None or there == d.verdict:
            continue
        if {d.verdict, there} == set(named) or (d.verdict in named and there == "negligible") or (
                there in named and d.verdict == "negligible"):
            clash.append(f"{d.arm} on {tasks.get(d.task).metric_label}: {d.verdict} here, {there} there")
    if not clash:
        return ""
    commit = str(other.stamp.get("commit") or "?")[:7]
    return (f"The {other.profile} profile's run (commit {commit}) disagrees on " + "; ".join(clash)
            + ": the budgets differ, so read either as the evidence of its own budget only.")
