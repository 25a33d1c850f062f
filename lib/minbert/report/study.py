"""The study-wide summary: each question the study asked, the study's answer, ours, and the evidence.

The study's answers are its own figures (`minbert.published`) put in words; ours are worded from the
paired differences each notebook saved in its results file (`comparison.verdict`), so the summary
cannot drift from the reports. Where a notebook has a full-profile results file, that one answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from minbert import tasks
from minbert.arms import LEVERS
from minbert.comparison import Difference, verdict
from minbert.files import atomic_write_text
from minbert.published import STUDY_FIGURES
from minbert.records import Results, RunRecord

PROFILE_ORDER = ("full", "quick", "smoke")  # the evidence first


def _fig(row: str, task: int) -> str:
    value = STUDY_FIGURES[row][task]
    return "-" if value is None else f"{value:.3f}"


def final_run(result: Results) -> RunRecord:
    """Notebook 06's final model in its results file: the run named "final" (an ensemble's record, or
    the one run of a profile without one), else the one member chosen; the headline run for files that
    predate ensembles."""
    chosen = result.checks.get("ensemble") or []
    for name in ("final", *chosen[:1]):
        found = next((r for r in result.runs if r.name == name), None)
        if found is not None:
            return found
    return result.headline()


def _final_model(result: Results) -> str:
    run = final_run(result)
    specs = [tasks.get(t) for t in tasks.MULTITASK if tasks.get(t).metric in run.dev]
    scores = ", ".join(f"{spec.metric_label} {run.dev[spec.metric]:.3f}" for spec in specs)
    rows = "/".join(f"{run.dev_sizes[t]:,}" for t in tasks.MULTITASK if run.dev_sizes and t in run.dev_sizes)
    return f"{run.name}: {scores} (dev rows {rows or 'as in the report'}; MiniLM, 22M parameters)."


COLLAPSE = (STUDY_FIGURES["BERT Baseline"][2], STUDY_FIGURES["BERT-SMART"][2])  # its STS before, after


def collapse_verdict(naive: Difference, right: list[RunRecord]) -> str:
    """Whether the study's STS collapse (its BERT's STS Pearson from 0.847 to 0.438 under SMART with a
    classification divergence) reproduces: `naive` is the naive divergence's paired difference from the
    right one at the same size, `right` the right one's runs. Where their mean dev Pearson is no higher
    than the study's collapsed figure there is nothing to collapse, and the budget cannot tell."""
    level = sum(run.dev["sts_pearson"] for run in right) / len(right)
    interval = naive.span
    if naive.detected and naive.estimate < 0:
        return (f"reproduces at this budget: against the squared-difference divergence at the same size, the "
                f"naive one moves STS Pearson by {interval} (from {level:.3f}).")
    if level <= COLLAPSE[1]:
        return (f"cannot be judged at this budget: with the right divergence STS reaches only {level:.3f} "
                f"Pearson, no higher than the study's collapsed {COLLAPSE[1]:.3f}, so there is nothing for "
                f"the naive one to collapse (it moves STS by {interval}); a run that trains STS further (the "
                "full profile) can answer it.")
    return (f"does not reproduce at this budget: with STS at {level:.3f} Pearson under the right divergence, "
            f"the naive one moves it by {interval}; what SMART does to STS here, the divergence's form does "
            "not cause.")


def _collapse(result: Results) -> str:
    saved = result.checks.get("divergence_form") or []
    right = [run for run in result.runs if run.group == "smart"]
    if not saved or not right:
        return "the naive and the right divergence did not both run in this profile"
    naive = Difference(**{k: v for k, v in saved[0].items() if k != "detected"})
    text = collapse_verdict(naive, right)
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class Question:
    """One of the study's questions: where we answer it, the study's answer, and which of our arms'
    differences (against that notebook's reference, on `task_names` or every task) answer it."""

    text: str
    notebook: str
    theirs: str
    arms: tuple[str, ...] = ()
    task_names: tuple[str, ...] | None = None
    checks_key: str = "differences"  # where the results file keeps the differences that answer it
    ours: Callable[[Results], str] | None = None  # for a question that is not a comparison


QUESTIONS: tuple[Question, ...] = (
    Question("Does fine-tuning all of BERT beat training a head on frozen BERT (SST-5)?", "01_part1_sst",
             f"Fine-tuned BERT-base: SST {_fig('Part 1 finetune (BERT-base)', 0)} (its table has no "
             "frozen-BERT figure).", ("finetune",)),
    Question("Does a different task order or schedule train the three tasks better together?",
             "02_sbert_baseline",
             f"One run each: reordering gave SST {_fig('sBERT-ReorderedTraining', 0)}, STS "
             f"{_fig('sBERT-ReorderedTraining', 2)} against its baseline's {_fig('sBERT-Baseline_2', 0)}, "
             f"{_fig('sBERT-Baseline_2', 2)}; round-robin STS {_fig('sBERT-RoundRobinTraining', 2)}; the "
             f"combined loss SST {_fig('sBERT-Combined Loss', 0)}.",
             ("qqp-first", "round-robin", "combined", "pcgrad", "qqp-separate", "class-weights", "freeze")),
    Question("Does Sophia beat AdamW?", "03_sophia",
             f"No: Sophia at its defaults SST {_fig('sBERT-Sophia Baseline', 0)}, QQP "
             f"{_fig('sBERT-Sophia Baseline', 1)}, STS {_fig('sBERT-Sophia Baseline', 2)}; tuned, SST "
             f"{_fig('sBERT-Sophia Tuned', 0)}; AdamW's baseline SST {_fig('sBERT-Baseline_2', 0)}.",
             ("sophia", "sophia-corrected", "sophia-newton", "sophia-tuned")),
    Question("Does SMART help?", "04_smart",
             f"Little, one run each: the sBERT with SMART SST {_fig('sBERT-SMART Baseline', 0)}, QQP "
             f"{_fig('sBERT-SMART Baseline', 1)}, STS {_fig('sBERT-SMART Baseline', 2)}; the BERT with SMART "
             f"SST {_fig('BERT-SMART', 0)}, QQP {_fig('BERT-SMART', 1)}.",
             ("dropout-only", "smart", "smart-tuned")),
    Question("Does a classification divergence on the STS score collapse STS?", "04_smart",
             f"Yes: the BERT's STS fell from {_fig('BERT Baseline', 2)} to {_fig('BERT-SMART', 2)} with "
             "SMART.",
             ours=_collapse),
    Question("Do the attention variants (linear Q/K, centre matrix, sparsemax) help?", "05_attention",
             f"No: all below standard attention (SST {_fig('sBERT-BertSelfAttention', 0)}), e.g. linear "
             f"{_fig('sBERT-LinearSelfAttention', 0)}, sparsemax {_fig('sBERT-SparsemaxSelfAttention', 0)}; "
             "blamed on overfitting.",
             ("linear", "linear-nobias", "center", "sparsemax", "center+linear", "linear+sparsemax",
              "center+sparsemax", "center+linear+sparsemax")),
    Question("How good is the final multitask model?", "06_final_bert",
             f"BERT-Final (BERT-base, all of QQP): SST {_fig('BERT-Final', 0)}, QQP {_fig('BERT-Final', 1)}, "
             f"STS {_fig('BERT-Final', 2)}.", ours=_final_model),
    Question("Does the multitask model beat a plain fine-tune of the same weights, one task at a time?",
             "06_final_bert", "Not asked: the study reports no single-task fine-tune of its weights beside "
             "its final model.", ("ours",), checks_key="peer_differences"),
    Question("Which choices of the final recipe help (an ablation, each against the recipe)?",
             "06_final_bert", "Not measured: the study reports one run per configuration.", tuple(LEVERS)),
)


def _evidence(result: Results) -> str:
    arms = [r.group or r.name for r in result.runs]
    seeds = max((arms.count(a) for a in set(arms)), default=1)
    commit = str(result.stamp.get("commit") or "?")[:7]
    per_arm = f"{seeds} seed{'s' if seeds != 1 else ''} per arm"
    return f"{result.notebook}.{result.profile} ({len(result.runs)} runs, {per_arm}, commit {commit})"


def answer(question: Question, result: Results | None) -> str:
    """Our answer to one question from a results file, in words."""
    if result is None:
        return "not run yet"
    if question.ours is not None:
        return question.ours(result)
    if question.checks_key not in result.checks:
        return "no paired differences for this in its results file (it predates them): run the notebook again"
    wanted = question.task_names or tasks.MULTITASK
    found = [Difference(**{k: v for k, v in d.items() if k != "detected"})
             for d in result.checks[question.checks_key] if d["arm"] in question.arms and d["task"] in wanted]
    arms = [a for a in question.arms if any(d.arm == a for d in found)]
    return " ".join(verdict(found, arm) for arm in arms) or "none of these arms ran in this profile"


def study_summary(results: list[Results]) -> pd.DataFrame:
    """One row per question: the study's answer, ours, and the results file behind ours (full profile
    where there is one)."""
    by_notebook: dict[str, Results] = {}
    for result in sorted(results, key=lambda r: PROFILE_ORDER.index(r.profile)
                         if r.profile in PROFILE_ORDER else len(PROFILE_ORDER)):
        by_notebook.setdefault(result.notebook, result)
    rows = []
    for question in QUESTIONS:
        result = by_notebook.get(question.notebook)
        rows.append({"question": question.text, "the study (theirs, BERT-base)": question.theirs,
                     "ours (MiniLM)": answer(question, result),
                     "evidence": _evidence(result) if result else "-"})
    return pd.DataFrame(rows)


def headline(result: Results) -> dict[str, str]:
    """A results file's headline in parts (its final model, or its headline arm as the mean over that arm's
    seeds; for a file of one run per task, as the peer's, each task's run), for the index page and the
    README alike."""
    labels = {tasks.get(t).metric: tasks.get(t).metric_label for t in tasks.MULTITASK}
    covered = [[m for m in labels if m in r.dev] for r in result.runs]
    one_per_task = all(len(c) == 1 for c in covered) and len({c[0] for c in covered}) == len(covered)
    if len(result.runs) > 1 and one_per_task:
        name, seeds = "one run per task: " + ", ".join(r.name for r in result.runs), ""
        scores = [f"{label} {r.dev[m]:.3f}" for m, label in labels.items() for r in result.runs if m in r.dev]
    else:
        best = final_run(result) if "ensemble" in result.checks else result.headline()
        runs = [r for r in result.runs if best.group is not None and r.group == best.group] or [best]
        name, seeds = best.group or best.name, f"mean of {len(runs)} seeds" if len(runs) > 1 else ""
        scores = []
        for metric, label in labels.items():
            values = [r.dev[metric] for r in runs if r.dev.get(metric) is not None]
            if metric in best.dev and values:
                scores.append(f"{label} {sum(values) / len(values):.3f}")
    stamp = result.stamp
    resumed = RESUMED if stamp.get("params", {}).get("resume") else ""
    return {"run": name, "seeds": seeds, "scores": ", ".join(scores), "profile": result.profile,
            "device": str(stamp.get("device", "?")), "commit": str(stamp.get("commit") or "?")[:7],
            "minutes": f"{stamp.get('wall_s', 0) / 60:.1f}{resumed}"}


# A render that continued finished runs (`resume: true`) trained only the missing ones: its wall time is not
# the profile's.
RESUMED = " (resumed)"
RESUMED_NOTE = ("A render marked resumed read its finished runs back and trained only the missing ones: its "
                "minutes are not the profile's; its report gives each run's training time.")


def is_resumed(minutes: str) -> bool:
    return minutes.endswith(RESUMED)


class ReadmeSectionError(ValueError):
    """The README lacks its results section's markers, or has them more than once."""


README_START = "<!-- results: written by `python -m minbert readme` from reports/results/; do not edit -->"
README_END = "<!-- results: end -->"


def readme_block(results: list[Results]) -> str:
    """The README's results section: each results file's headline run with its dev scores, wall time and
    commit, from the committed results files (no figure typed by hand). The study's questions and our
    answers are the index page's (`minbert.report.index.write_index`)."""
    order = sorted((r for r in results if r.runs), key=lambda r: (r.notebook, r.profile))
    reports = pd.DataFrame([{"notebook": r.notebook, **headline(r)} for r in order])
    if not reports.empty:
        reports = reports[["notebook", "profile", "run", "seeds", "scores", "minutes", "commit"]]
        reports = reports.rename(columns={"scores": "dev scores", "minutes": "minutes (wall)"})
    return "\n".join([
        README_START, "",
        "Each results file's headline run (dev sets; a profile's QQP dev subsample as its report states; "
        "each stamp names the device):", "",
        reports.to_markdown(index=False) if not reports.empty else "No results yet.", "",
        *([RESUMED_NOTE, ""] if any(map(is_resumed, reports.get("minutes (wall)", []))) else []),
        README_END])


def write_readme(readme: Path, results: list[Results]) -> Path:
    """Replace the README's results section (between its two markers) with `readme_block`; the rest of
    the file is left as it is."""
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    if len(pattern.findall(text)) != 1:
        raise ReadmeSectionError(f"{readme}: expected one results section between {README_START!r} and "
                         f"{README_END!r}")
    return atomic_write_text(readme, pattern.sub(lambda _: readme_block(results), text))
