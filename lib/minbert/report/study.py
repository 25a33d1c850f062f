"""The study-wide summary: each question the study asked, the study's answer, ours, and the evidence.

The study's answers are its own figures (`minbert.published`) put in words; ours are worded from the
paired differences each notebook saved in its results file (`comparison.verdict`), so the summary
cannot drift from the reports. Where a notebook has a full-profile results file, that one answers.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from minbert import tasks
from minbert.arms import LEVERS
from minbert.comparison import Difference, learned, verdict
from minbert.files import atomic_write_text
from minbert.published import STUDY_FIGURES
from minbert.records import Results, RunRecord, run_selection_score

PROFILE_ORDER = ("full", "cpu", "quick", "smoke")  # the evidence first: a GPU run, then the CPU one


def _fig(row: str, task: int) -> str:
    value = STUDY_FIGURES[row][task]
    return "-" if value is None else f"{value:.3f}"


STUDY_TASKS = ("SST", "QQP", "STS")  # the order of `published.STUDY_FIGURES`' columns


def versus(row: str, reference: str) -> str:
    """One of the study's rows against another in words, task by task from its own table: "above on QQP
    0.808 vs 0.773, STS ...; below on SST ..." (its answer as its figures give it, never retyped)."""
    above, below = [], []
    for k, task in enumerate(STUDY_TASKS):
        ours, theirs = STUDY_FIGURES[row][k], STUDY_FIGURES[reference][k]
        if ours is None or theirs is None or ours == theirs:
            continue
        (above if ours > theirs else below).append(f"{task} {ours:.3f} vs {theirs:.3f}")
    parts = [f"{side} on {', '.join(found)}" for side, found in (("above", above), ("below", below)) if found]
    return "; ".join(parts)


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
    members = run.config.get("ensemble") or []
    what = f"an ensemble of {len(members)} runs" if len(members) > 1 else "one run"
    what += " with the pretrained view" if run.config.get("blend") else ""
    size = f", {run.parameters / 1e6:.1f}M parameters" if run.parameters else ""
    single = [r for r in result.runs if r.name in members]
    best = ""
    if single:
        top = max(single, key=run_selection_score)
        best = f"; its best single run {top.name}: " + ", ".join(
            f"{s.metric_label} {top.dev[s.metric]:.3f}" for s in specs)
    return f"{run.name} ({what}{size}): {scores} (dev rows {rows or 'as in the report'}){best}."


COLLAPSE = (STUDY_FIGURES["BERT Baseline"][2], STUDY_FIGURES["BERT-SMART"][2])  # its STS before, after


def collapse_verdict(naive: Difference, right: list[RunRecord]) -> str:
    """Whether the study's STS collapse (its BERT's STS Pearson from 0.847 to 0.438 under SMART with a
    classification divergence) reproduces: `naive` is the naive divergence's paired difference from the
    right one at the same size, `right` the right one's runs. Where their mean dev Pearson is no higher
    than the study's collapsed figure there is nothing to collapse, and the budget cannot tell."""
    level = sum(run.dev["sts_pearson"] for run in right) / len(right)
    interval = naive.span
    if naive.verdict == "worse":
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
    naive = Difference.from_dict(saved[0])
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
    # whether its reference must clear floors before it answers (`comparison.learned`); not for 01's modes
    # (their figures stand beside the majority class) nor for the peer (a reference that is itself trained)
    needs_floors: bool = True
    section: str = "Findings"  # the heading of the notebook's page that shows the evidence


QUESTIONS: tuple[Question, ...] = (
    Question("Does fine-tuning all of BERT beat training a head on frozen BERT (SST-5)?", "01_part1_sst",
             f"Fine-tuned BERT-base: SST {_fig('Part 1 finetune (BERT-base)', 0)} (its table has no "
             "frozen-BERT figure).", ("finetune",),
             section="Training: pretrain against finetune, several seeds", needs_floors=False),
    Question("Does a different task order or schedule train the three tasks better together?",
             "02_sbert_baseline",
             f"One run each: reordering gave SST {_fig('sBERT-ReorderedTraining', 0)}, STS "
             f"{_fig('sBERT-ReorderedTraining', 2)} against its baseline's {_fig('sBERT-Baseline_2', 0)}, "
             f"{_fig('sBERT-Baseline_2', 2)}; round-robin STS {_fig('sBERT-RoundRobinTraining', 2)}; the "
             f"combined loss SST {_fig('sBERT-Combined Loss', 0)}.",
             ("qqp-first", "round-robin", "combined", "pcgrad", "qqp-separate", "class-weights", "freeze"),
             section="Which differences are real?"),
    Question("Does Sophia beat AdamW?", "03_sophia",
             "Mixed, one run each: at its defaults, against AdamW at the same batch and lr, "
             f"{versus('sBERT-Sophia Baseline', 'sBERT-Baseline_2')}.",
             ("sophia", "sophia-corrected", "sophia-newton", "sophia-tuned"), section="What our numbers say"),
    Question("Does SMART help?", "04_smart",
             f"Little, one run each: the sBERT with SMART SST {_fig('sBERT-SMART Baseline', 0)}, QQP "
             f"{_fig('sBERT-SMART Baseline', 1)}, STS {_fig('sBERT-SMART Baseline', 2)}; the BERT with SMART "
             f"SST {_fig('BERT-SMART', 0)}, QQP {_fig('BERT-SMART', 1)}.",
             ("dropout-only", "smart", "smart-tuned"), section="What our numbers say"),
    Question("Does a classification divergence on the STS score collapse STS?", "04_smart",
             f"Yes: the BERT's STS fell from {_fig('BERT Baseline', 2)} to {_fig('BERT-SMART', 2)} with "
             "SMART.",
             ours=_collapse, section="What our numbers say"),
    Question("Do the attention variants (linear Q/K, centre matrix, sparsemax) help?", "05_attention",
             f"No: all below standard attention (SST {_fig('sBERT-BertSelfAttention', 0)}), e.g. linear "
             f"{_fig('sBERT-LinearSelfAttention', 0)}, sparsemax {_fig('sBERT-SparsemaxSelfAttention', 0)}; "
             "blamed on overfitting.",
             ("linear", "linear-nobias", "center", "sparsemax", "center+linear", "linear+sparsemax",
              "center+sparsemax", "center+linear+sparsemax"),
             section="Against standard attention, and the overfitting question"),
    Question("How good is the final multitask model?", "06_final_bert",
             f"BERT-Final (BERT-base, all of QQP): SST {_fig('BERT-Final', 0)}, QQP {_fig('BERT-Final', 1)}, "
             f"STS {_fig('BERT-Final', 2)}.", ours=_final_model, section="Training"),
    Question("Does the multitask model beat a plain fine-tune of the same weights, one task at a time?",
             "06_final_bert", "Not asked: the study reports no single-task fine-tune of its weights beside "
             "its final model.", ("ours",), checks_key="peer_differences", needs_floors=False,
             section="Against the peer: transformers' own fine-tune of the same weights"),
    Question("Like for like: does our best single run beat the peer's single run?", "06_final_bert",
             "Not asked.", ("our best single run",), checks_key="peer_single_differences", needs_floors=False,
             section="Against the peer: transformers' own fine-tune of the same weights"),
    Question("Which choices of the final recipe help (an ablation, each against the recipe)?",
             "06_final_bert", "Not measured: the study reports one run per configuration.", tuple(LEVERS),
             section="The levers: an ablation of the recipe"),
)


UNJUDGED = ("No answer: its results file predates the floors, so whether its reference learned is unknown "
            "(run the notebook again).")
# the notebooks whose comparison ("differences") answers only where its reference cleared its floors
_FLOORED = {q.notebook for q in QUESTIONS if q.needs_floors and q.ours is None}


def _unjudged(question: Question, result: Results) -> bool:
    """Whether the question needs floors that its results file, saved before them, does not have."""
    return question.needs_floors and "margins" not in result.checks


def _evidence(result: Results) -> str:
    arms = [r.group or r.name for r in result.runs]
    seeds = max((arms.count(a) for a in set(arms)), default=1)
    commit = str(result.stamp.get("commit") or "?")[:7]
    per_arm = f"{seeds} seed{'s' if seeds != 1 else ''} per arm"
    return f"{result.notebook}.{result.profile} ({len(result.runs)} runs, {per_arm}, commit {commit})"


def _differences(question: Question, result: Results) -> tuple[list[Difference], dict[str, bool] | None]:
    """The question's saved differences in a results file, and which tasks its comparison can answer
    (`comparison.learned` on the saved margins; None for a file that predates them)."""
    wanted = question.task_names or tasks.MULTITASK
    found = [Difference.from_dict(d)
             for d in result.checks[question.checks_key] if d["arm"] in question.arms and d["task"] in wanted]
    answers = learned([Difference.from_dict(d) for d in result.checks.get("margins", [])]) or None
    return found, answers


def answer(question: Question, result: Results | None) -> str:
    """Our answer to one question from a results file, in full sentences (`comparison.verdict`)."""
    if result is None:
        return "not run yet"
    if question.ours is not None:
        return question.ours(result)
    if question.checks_key not in result.checks:
        return "no paired differences for this in its results file (it predates them): run the notebook again"
    found, answers = _differences(question, result)
    arms = [a for a in question.arms if any(d.arm == a for d in found)]
    if not arms:
        return "none of these arms ran in this profile"
    if _unjudged(question, result):
        return UNJUDGED
    return " ".join(verdict(found, arm, answers) for arm in arms)


def short_answer(question: Question, result: Results | None) -> str:
    """Our answer in a line: the arms with a named difference (better or worse, and on which task), then
    how many differences were negligible or inconclusive, and the tasks the comparison cannot answer
    (its reference did not learn there)."""
    if (result is None or question.ours is not None or question.checks_key not in result.checks
            or _unjudged(question, result)):
        return answer(question, result)
    found, answers = _differences(question, result)
    if not found:
        return "none of these arms ran in this profile"
    answerable = {d.task: answers is None or answers.get(d.task, True) for d in found}
    open_ = [d for d in found if answerable[d.task]]
    closed = sorted({tasks.get(t).metric_label for t, ok in answerable.items() if not ok})
    if not open_:
        return f"No answer at this budget: the reference did not learn ({', '.join(closed)})."
    named: dict[str, dict[str, list[str]]] = {}
    for d in open_:
        if d.named:
            named.setdefault(d.arm, {}).setdefault(d.verdict, []).append(d.task.upper())
    parts = [f"{arm} " + ", ".join(f"{kind} on {'/'.join(where)}" for kind, where in said.items())
             for arm, said in named.items()]
    more = len(parts) - 3
    head = "; ".join(parts[:3]) + (f"; {more} more arm{'s' if more > 1 else ''}" if more > 0 else "")
    counts = ", ".join(f"{n} {kind}" for kind in ("negligible", "inconclusive")
                       if (n := sum(d.verdict == kind for d in open_)))
    text = head or "No difference named"
    if counts:
        text += f"{'; otherwise' if head else ':'} {counts} of {len(open_)} differences"
    return text + (f"; {', '.join(closed)} not answered (the reference did not learn)." if closed else ".")


def anchor(heading: str) -> str:
    """The id nbconvert gives a heading of a rendered report: its text, spaces as hyphens."""
    return heading.replace("`", "").replace(" ", "-")


def _evidence_link(question: Question, result: Results) -> str:
    href = f"{result.notebook}.{result.profile}.html#{anchor(question.section)}"
    return f'<a href="{html.escape(href)}">{html.escape(_evidence(result))}</a>'


def study_summary(results: list[Results], short: bool = True) -> pd.DataFrame:
    """One row per question: the study's answer, ours (in a line, or with `short=False` in full), and
    the results file behind ours (`evidence_for`) as a link to the section of its report that shows it.
    The cells are HTML: text escaped, the evidence a link."""
    rows = []
    for question in QUESTIONS:
        result = evidence_for(question, results)
        ours = (short_answer if short else answer)(question, result)
        rows.append({"question": html.escape(question.text, quote=False),
                     "the study (theirs, BERT-base)": html.escape(question.theirs, quote=False),
                     "ours (MiniLM)": html.escape(ours, quote=False),
                     "evidence": _evidence_link(question, result) if result else "-"})
    return pd.DataFrame(rows)


def effects(result: Results, key: str = "differences") -> pd.DataFrame:
    """A comparison notebook's effects at a glance: one row per arm (first, the reference against each
    floor), one column per task, each cell the difference with its 95% interval and its verdict; "not
    answered" where the reference did not clear its floors on that task."""
    margins = [Difference.from_dict(d) for d in result.checks.get("margins", [])]
    answers = learned(margins)
    unjudged = key == "differences" and "margins" not in result.checks and result.notebook in _FLOORED
    rows: dict[str, dict[str, str]] = {}
    for d in margins:
        cleared = "cleared" if d.verdict == "better" else "NOT cleared"
        label = tasks.get(d.task).metric_label
        rows.setdefault(f"{d.arm} − {d.reference}", {})[label] = f"{d.span} {cleared}"
    for d in map(Difference.from_dict, result.checks.get(key, [])):
        said = ("not judged (no floors)" if unjudged
                else d.verdict if answers.get(d.task, True) else "not answered")
        rows.setdefault(f"{d.arm} − {d.reference}", {})[tasks.get(d.task).metric_label] = f"{d.span} {said}"
    labels = [tasks.get(t).metric_label for t in tasks.MULTITASK]
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table[[c for c in labels if c in table.columns]].rename_axis(f"{result.notebook}.{result.profile}")


def _profile_rank(result: Results) -> int:
    return PROFILE_ORDER.index(result.profile) if result.profile in PROFILE_ORDER else len(PROFILE_ORDER)


def _can_answer(question: Question, result: Results) -> bool:
    """Whether a results file holds what the question needs: its differences, and for a comparison that
    needs floors the margins saved beside them (not a file saved before either)."""
    if question.ours is not None:
        return True
    return bool(result.checks.get(question.checks_key)) and not _unjudged(question, result)


def evidence_for(question: Question, results: list[Results]) -> Results | None:
    """The results file that answers a question: the first profile of `PROFILE_ORDER` whose file can
    (`_can_answer`), so that an older full file without floors yields to a cpu file with them while the
    full file still answers what it holds; where none can, the first profile, to say why."""
    mine = sorted((r for r in results if r.notebook == question.notebook), key=_profile_rank)
    return next((r for r in mine if _can_answer(question, r)), mine[0] if mine else None)


def effect_tables(results: list[Results]) -> dict[str, pd.DataFrame]:
    """Every comparison's `effects` table, titled, from the results file that answers its question
    (the first profile that can, as `evidence_for`; else the first profile that has the comparison)."""
    out = {}
    for notebook in sorted({r.notebook for r in results}):
        for key, what in (("differences", "the comparison"), ("peer_differences", "against the peer"),
                          ("peer_single_differences", "our best single run against the peer")):
            asking = next((q for q in QUESTIONS if q.notebook == notebook and q.checks_key == key
                           and q.ours is None), None)
            having = sorted((r for r in results if r.notebook == notebook and r.checks.get(key)),
                            key=_profile_rank)
            result = next((r for r in having if asking is None or _can_answer(asking, r)),
                          next(iter(having), None))
            if result is not None:
                out[f"{notebook} ({result.profile}): {what}"] = effects(result, key)
    return out


def headline_arm(result: Results) -> tuple[RunRecord, list[RunRecord]]:
    """A results file's headline run (its final model, or the headline rule's run) and the seeds of its
    arm (the run alone where it has no group)."""
    best = final_run(result) if "ensemble" in result.checks else result.headline()
    return best, [r for r in result.runs if best.group is not None and r.group == best.group] or [best]


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
        best, runs = headline_arm(result)
        members = best.config.get("ensemble") or []
        name = best.group or best.name
        seeds = (f"mean of {len(runs)} seeds" if len(runs) > 1
                 else f"ensemble of {len(members)} runs" if members else "")
        scores = []
        for metric, label in labels.items():
            values = [r.dev[metric] for r in runs if r.dev.get(metric) is not None]
            if metric in best.dev and values:
                scores.append(f"{label} {sum(values) / len(values):.3f}")
    stamp = result.stamp
    return {"run": name, "seeds": seeds, "scores": ", ".join(scores), "profile": result.profile,
            "device": str(stamp.get("device", "?")), "commit": str(stamp.get("commit") or "?")[:7],
            "minutes": wall_minutes(stamp)}


def wall_minutes(stamp: dict) -> str:
    """A render's wall time in minutes, marked `RESUMED` where it trained only the runs it lacked."""
    resumed = RESUMED if stamp.get("params", {}).get("resume") else ""
    return f"{stamp.get('wall_s', 0) / 60:.1f}{resumed}"


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
