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

from minbert import paths, tasks
from minbert.arms import LEVERS
from minbert.comparison import ZERO_SHOT as ZERO_SHOT_FLOOR
from minbert.comparison import Difference, cannot_answer, holm, learned, smallest_effect, verdict
from minbert.files import atomic_write_text
from minbert.published import QUOTES, STUDY_FIGURES
from minbert.records import Results, RunRecord, run_selection_score

PROFILE_ORDER = ("full", "cpu", "smoke")  # the evidence first: a GPU run, then the CPU one


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


def quote(key: str) -> str:
    """One of the study's sentences (`published.QUOTES`), in quotation marks."""
    return f"“{QUOTES[key]}”"


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
    # the study's claims as its own figures give them: (our arm, its row, the row it compared it with)
    claims: tuple[tuple[str, str, str], ...] = ()
    status: str | None = None  # a fixed status where the question is not a comparison of ours with theirs


# Statuses of a study claim against our evidence.
REPRODUCED, CONTRADICTED, MIXED, UNSETTLED = ("reproduced", "contradicted", "partly reproduced",
                                               "not settled at this budget")
NOT_TESTABLE, NOT_ASKED = "not testable here", "not asked by the study"
STATUSES = (REPRODUCED, CONTRADICTED, MIXED, UNSETTLED, NOT_TESTABLE, NOT_ASKED)
_ATTENTION_ROWS = (("linear", "sBERT-LinearSelfAttention"),
                   ("linear-nobias", "sBERT-NoBiasLinearSelfAttention"),
                   ("center", "sBERT-CenterMatrixSelfAttention"),
                   ("sparsemax", "sBERT-SparsemaxSelfAttention"),
                   ("center+linear", "sBERT-CenterMatrixLinearSelfAttention"),
                   ("linear+sparsemax", "sBERT-LinearSelfAttentionWithSparsemax"),
                   ("center+sparsemax", "sBERT-CenterMatrixSelfAttentionWithSparsemax"),
                   ("center+linear+sparsemax", "sBERT-CenterMatrixLinearSelfAttentionWithSparsemax"))


QUESTIONS: tuple[Question, ...] = (
    Question("Does fine-tuning all of BERT beat training a head on frozen BERT (SST-5)?", "01_part1_sst",
             f"Fine-tuned BERT-base: SST {_fig('Part 1 finetune (BERT-base)', 0)} (its table has no "
             "frozen-BERT figure).", ("finetune",),
             section="Training: pretrain against finetune, several seeds", needs_floors=False,
             status=f"{NOT_TESTABLE}: the study reports no frozen-BERT figure to set ours against"),
    Question("Does a different task order or schedule train the three tasks better together?",
             "02_sbert_baseline",
             "One run each, against its own BertSelfAttention baseline (SST "
             f"{_fig('sBERT-BertSelfAttention', 0)}, QQP {_fig('sBERT-BertSelfAttention', 1)}, STS "
             f"{_fig('sBERT-BertSelfAttention', 2)}): QQP first {_fig('sBERT-ReorderedTraining', 0)}, "
             f"{_fig('sBERT-ReorderedTraining', 1)}, {_fig('sBERT-ReorderedTraining', 2)}; round-robin "
             f"{_fig('sBERT-RoundRobinTraining', 0)}, {_fig('sBERT-RoundRobinTraining', 1)}, "
             f"{_fig('sBERT-RoundRobinTraining', 2)}. {quote('reordering')} The combined loss (SST "
             f"{_fig('sBERT-Combined Loss', 0)}, QQP {_fig('sBERT-Combined Loss', 1)}, STS "
             f"{_fig('sBERT-Combined Loss', 2)}): {quote('combined')} A separate QQP phase with class "
             f"weights, under Sophia ({_fig('sBERT-Sophia balanced data', 0)}, "
             f"{_fig('sBERT-Sophia balanced data', 1)}, {_fig('sBERT-Sophia balanced data', 2)} against "
             f"{_fig('sBERT-Sophia Tuned standard lr', 0)}, {_fig('sBERT-Sophia Tuned standard lr', 1)}, "
             f"{_fig('sBERT-Sophia Tuned standard lr', 2)}): {quote('balanced')}",
             ("qqp-first", "round-robin", "combined", "pcgrad", "qqp-separate", "class-weights", "freeze"),
             section="Which differences are real?",
             claims=(("qqp-first", "sBERT-ReorderedTraining", "sBERT-BertSelfAttention"),
                     ("round-robin", "sBERT-RoundRobinTraining", "sBERT-BertSelfAttention"))),
    Question("Does Sophia beat AdamW?", "03_sophia",
             "One run each, at the same batch and lr (its Sophia baseline against its second AdamW "
             f"baseline): {versus('sBERT-Sophia Baseline', 'sBERT-Baseline_2')}; it concluded "
             f"{quote('sophia')}.",
             ("sophia", "sophia-corrected", "sophia-newton", "sophia-tuned", "adamw-tuned"),
             section="What our numbers say",
             claims=(("sophia", "sBERT-Sophia Baseline", "sBERT-Baseline_2"),)),
    Question("Does SMART help?", "04_smart",
             "One run each: the sBERT with SMART against its second baseline, "
             f"{versus('sBERT-SMART Baseline', 'sBERT-Baseline_2')}: {quote('smart')}",
             ("dropout-only", "smart", "smart-tuned"), section="What our numbers say",
             claims=(("smart", "sBERT-SMART Baseline", "sBERT-Baseline_2"),
                     ("smart-tuned", "sBERT-SMART Tuned", "sBERT-Baseline_2"))),
    Question("SMART collapsed the study's STS: does the divergence applied to the score cause it?",
             "04_smart",
             f"Its BERT's STS fell from {_fig('BERT Baseline', 2)} to {_fig('BERT-SMART', 2)} with SMART: "
             f"{quote('collapse')} (That a classification divergence read off the score is the cause is our "
             "hypothesis, which 04 tests.)",
             ours=_collapse, section="What our numbers say"),
    Question("Do the attention variants (linear Q/K, centre matrix, sparsemax) help?", "05_attention",
             "One run each, against its BertSelfAttention baseline (SST "
             f"{_fig('sBERT-BertSelfAttention', 0)}, QQP {_fig('sBERT-BertSelfAttention', 1)}, STS "
             f"{_fig('sBERT-BertSelfAttention', 2)}): every variant lower on SST and QQP (linear "
             f"{_fig('sBERT-LinearSelfAttention', 0)}, {_fig('sBERT-LinearSelfAttention', 1)}), sparsemax "
             f"higher on STS ({_fig('sBERT-SparsemaxSelfAttention', 2)}). {quote('attention')}",
             ("linear", "linear-nobias", "center", "sparsemax", "center+linear", "linear+sparsemax",
              "center+sparsemax", "center+linear+sparsemax"),
             section="Against standard attention, and the overfitting question",
             claims=tuple((arm, row, "sBERT-BertSelfAttention") for arm, row in _ATTENTION_ROWS)),
    Question("How good is the final multitask model?", "06_final_bert",
             f"BERT-Final (BERT-base, all of QQP): SST {_fig('BERT-Final', 0)}, QQP {_fig('BERT-Final', 1)}, "
             f"STS {_fig('BERT-Final', 2)}.", ours=_final_model, section="Training",
             status=f"{NOT_TESTABLE}: another model on other data (see the deviations); the figures "
                    "stand side by side, not as a test"),
    Question("Like for like: does one multitask run beat a plain fine-tune of the same weights, one run a "
             "task (transformers' own recipe)?", "06_final_bert",
             "Not asked: the study reports no single-task fine-tune of its weights beside its final model.",
             ("our best single run",), checks_key="peer_single_differences", needs_floors=False,
             section="Against the peer: transformers' own fine-tune of the same weights", status=NOT_ASKED),
    Question("Not like for like: our final model (an ensemble, with the pretrained view blended in where "
             "chosen: several times the peer's parameters) against the peer's single runs", "06_final_bert",
             "Not asked.", ("ours",), checks_key="peer_differences", needs_floors=False,
             section="Against the peer: transformers' own fine-tune of the same weights", status=NOT_ASKED),
    Question("Which choices of the final recipe help (an ablation, each against the recipe)?",
             "06_final_bert", "Not measured: the study reports one run per configuration.", tuple(LEVERS),
             section="The levers: an ablation of the recipe", status=NOT_ASKED),
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


def _repeats(question: Question, result: Results) -> list[str]:
    """The question's arms whose every difference from the reference is negligible and which tuned a
    study's settings: its best trial landed on the reference's own (`Results.indistinct_arms`)."""
    studies, indistinct = result.checks.get("studies") or {}, result.indistinct_arms()
    return [arm for arm in question.arms if arm in indistinct and _study_of(arm) in studies]


def _study_of(arm: str) -> str | None:
    from minbert.arms import OPTIMIZER_ARMS, SMART_ARMS

    found = {**OPTIMIZER_ARMS, **SMART_ARMS}.get(arm)
    return getattr(found, "tuned", None)


def _repeat_note(repeats: list[str], result: Results) -> str:
    """What a tuned arm that landed on the defaults is: its best trial beside the reference's settings."""
    studies = result.checks.get("studies") or {}
    named = next((d["reference"] for d in result.checks.get("differences", [])), None)
    reference = next((r for r in result.runs if r.group == named), None)
    notes = []
    for arm in repeats:
        best = studies[_study_of(arm)].get("params", {})
        pairs = ", ".join(f"{k} {v:.3g} against {reference.config.get(k, 0.0):.3g}"
                          for k, v in best.items() if isinstance(v, float) and reference is not None)
        notes.append(f"{arm} is the reference's result again: its study's best trial ({pairs}) landed on "
                     "the defaults, and every difference is negligible; it is not the headline.")
    return " ".join(notes)


def _differences(question: Question, result: Results) -> tuple[list[Difference], dict[str, bool] | None]:
    """The question's saved differences in a results file (bar tuned arms that landed on the defaults:
    `_repeats`), and which tasks its comparison can answer (`comparison.learned` on the saved margins;
    None for a file that predates them)."""
    wanted = question.task_names or tasks.MULTITASK
    repeats = _repeats(question, result)
    found = [Difference.from_dict(d) for d in result.checks[question.checks_key]
             if d["arm"] in question.arms and d["arm"] not in repeats and d["task"] in wanted]
    answers = learned([Difference.from_dict(d) for d in result.checks.get("margins", [])]) or None
    return found, answers


def _judged(result: Results, key: str) -> list[Difference]:
    """The differences a page judges: those on the tasks its reference answered (`comparison.learned`;
    every task where the file has no margins), the family its multiplicity line counts."""
    answers = learned([Difference.from_dict(d) for d in result.checks.get("margins", [])])
    return [d for d in map(Difference.from_dict, result.checks.get(key, [])) if not cannot_answer(d, answers)]


def _holm_kept(judged: list[Difference]) -> set[tuple[str, str]] | None:
    """The (arm, task) of every difference of a page's family (`_judged`) that keeps its verdict under
    Holm's correction for all of them; None for a file saved before p-values were kept."""
    if any(d.p_value is None for d in judged):
        return None
    return {(d.arm, d.task) for d, kept in zip(judged, holm(judged), strict=True) if kept}


def _blend_part(question: Question, result: Results) -> str:
    """For the final model against the peer: what the blended pretrained view alone contributes (its
    paired difference, with against without it), so that the lead is read for what it is."""
    saved = result.checks.get("blend_differences") if question.checks_key == "peer_differences" else None
    if not saved:
        return ""
    parts = [f"{tasks.get(d.task).metric_label} {d.span} ({d.verdict})"
             for d in map(Difference.from_dict, saved)]
    return "Of that, the blended pretrained view alone contributes: " + "; ".join(parts) + "."


def answer(question: Question, result: Results | None) -> str:
    """Our answer to one question from a results file, in full sentences (`comparison.verdict`)."""
    if result is None:
        return "not run yet"
    if question.ours is not None:
        return question.ours(result)
    if question.checks_key not in result.checks:
        return "no paired differences for this in its results file (it predates them): run the notebook again"
    found, answers = _differences(question, result)
    note = _repeat_note(_repeats(question, result), result)
    arms = [a for a in question.arms if any(d.arm == a for d in found)]
    if not arms:
        return note or "none of these arms ran in this profile"
    if _unjudged(question, result):
        return UNJUDGED
    extra = [text for text in (note, _blend_part(question, result)) if text]
    return " ".join([verdict(found, arm, answers) for arm in arms] + extra)


def short_answer(question: Question, result: Results | None) -> str:
    """Our answer in a line: the arms with a named difference (better or worse, and on which task), then
    how many differences were negligible or inconclusive, and the tasks the comparison cannot answer
    (its reference did not learn there)."""
    if (result is None or question.ours is not None or question.checks_key not in result.checks
            or _unjudged(question, result)):
        return answer(question, result)
    found, answers = _differences(question, result)
    note = _repeat_note(_repeats(question, result), result)
    if not found:
        return note or "none of these arms ran in this profile"
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
    head = "; ".join(parts)
    counts = ", ".join(f"{n} {kind}" for kind in ("negligible", "inconclusive")
                       if (n := sum(d.verdict == kind for d in open_)))
    text = head or "No difference named"
    if counts:
        text += f"{'; otherwise' if head else ':'} {counts} of {len(open_)} differences"
    text += f"; {', '.join(closed)} not answered (the reference did not learn)." if closed else "."
    return " ".join(t for t in (text, _holm_part(open_, result, question.checks_key), note,
                                _blend_part(question, result)) if t)


def _holm_part(differences: list[Difference], result: Results, key: str) -> str:
    """How many of the differences an answer names keep their verdict under Holm's correction for all
    that the page judged."""
    named, judged = [d for d in differences if d.named], _judged(result, key)
    kept = _holm_kept(judged)
    if not named or kept is None:
        return ""
    holding = sum((d.arm, d.task) in kept for d in named)
    said = "none" if not holding else "all" if holding == len(named) else str(holding)
    return (f"Holm's correction for the page's {len(judged)} differences keeps {said} of the {len(named)} "
            "named.")


def anchor(heading: str) -> str:
    """The id nbconvert gives a heading of a rendered report: its text, spaces as hyphens."""
    return heading.replace("`", "").replace(" ", "-")


def _evidence_link(question: Question, result: Results, reports: Path | None = None) -> str:
    """The results file behind an answer, as a link to the section of its report that shows it where that
    report is rendered (in `reports`, default the reports folder), else as text."""
    page = f"{result.notebook}.{result.profile}.html"
    if not ((reports or paths.reports_dir()) / page).is_file():
        return html.escape(f"{_evidence(result)}, no report rendered")
    href = f"{page}#{anchor(question.section)}"
    return f'<a href="{html.escape(href)}">{html.escape(_evidence(result))}</a>'


def claim_status(question: Question, result: Results | None) -> str:
    """Whether our evidence reproduces the study's claim, as its own figures give it: for each of its
    differences that reaches our smallest effect (its row against the row it compared it with), our
    verdict on the same arm and task agrees, disagrees (the opposite, or negligible) or leaves it open
    (inconclusive, or better or worse but not after Holm's correction for its page); tasks where our
    reference did not learn do not count."""
    if question.status:
        return question.status
    if result is None:
        return "not run yet"
    if question.ours is _collapse:
        text = _collapse(result)
        return (REPRODUCED if text.startswith("Reproduces") else CONTRADICTED if text.startswith("Does not")
                else f"{NOT_TESTABLE} at this budget" if text.startswith("Cannot") else UNSETTLED)
    if question.checks_key not in result.checks or _unjudged(question, result):
        return UNSETTLED
    found, answers = _differences(question, result)
    ours = {(d.arm, d.task): d for d in found}
    kept = _holm_kept(_judged(result, question.checks_key))
    agree = oppose = open_ = 0
    for arm, row, reference in question.claims:
        for k, task in enumerate(tasks.MULTITASK):
            theirs, base = STUDY_FIGURES[row][k], STUDY_FIGURES[reference][k]
            d = ours.get((arm, task))
            if theirs is None or base is None or abs(theirs - base) < smallest_effect(task) or d is None:
                continue
            if answers is not None and not answers.get(task, True):
                continue
            expected = "better" if theirs > base else "worse"
            holds = kept is None or (arm, task) in kept  # a verdict Holm's correction undoes is open
            if d.verdict == expected and holds:
                agree += 1
            elif d.verdict == "negligible" or (d.verdict in ("better", "worse") and holds):
                oppose += 1
            else:
                open_ += 1
    counted = agree + oppose + open_
    if not counted:
        return UNSETTLED
    status = (REPRODUCED if agree and not oppose else CONTRADICTED if oppose and not agree
              else MIXED if agree else UNSETTLED)
    return f"{status} ({agree} agree, {oppose} disagree, {open_} open of the {counted} differences it named)"


EVIDENCE_PROFILES = ("full", "cpu")  # the profiles whose answers are evidence; smoke is the tests'


def _answers_by_profile(question: Question, results: list[Results], short: bool) -> list[tuple[Results, str]]:
    """Our answer from every evidence profile whose results file can answer the question, evidence
    first (the smoke profile's only where no evidence profile can)."""
    mine = sorted((r for r in results if r.notebook == question.notebook and _can_answer(question, r)),
                  key=_profile_rank)
    evidence = [r for r in mine if r.profile in EVIDENCE_PROFILES]
    return [(r, (short_answer if short else answer)(question, r)) for r in evidence or mine[:1]]


def study_summary(results: list[Results], short: bool = True, reports: Path | None = None) -> pd.DataFrame:
    """One row per question: the study's answer, ours (in a line, or with `short=False` in full), the
    status of the study's claim on our evidence (`claim_status`), and the results file behind ours
    (`evidence_for`) as a link to the section of its report that shows it. Where two profiles answer
    differently, each profile's answer is shown. The cells are HTML: text escaped, the evidence a link."""
    rows = []
    for question in QUESTIONS:
        result = evidence_for(question, results)
        answered = _answers_by_profile(question, results, short)
        texts = {text for _, text in answered}
        if len(texts) > 1:  # the profiles disagree: each says its own
            ours = " ".join(f"[{r.profile}] {text}" for r, text in answered)
            statuses = question.status or " / ".join(f"{claim_status(question, r)} ({r.profile})"
                                                     for r, _ in answered)
            links = " ".join(_evidence_link(question, r, reports) for r, _ in answered)
        else:
            ours = (short_answer if short else answer)(question, result)
            statuses = claim_status(question, result)
            links = _evidence_link(question, result, reports) if result else "-"
        rows.append({"question": html.escape(question.text, quote=False),
                     "the study (theirs, BERT-base)": html.escape(question.theirs, quote=False),
                     "ours (MiniLM)": html.escape(ours, quote=False),
                     "status of the study's claim": html.escape(statuses, quote=False),
                     "evidence": links})
    return pd.DataFrame(rows)


# The study's experiments we did not run, and why (its README's sections).
NOT_ATTEMPTED = (
    ("sBERT-Baseline_1 (30 epochs at batch 20)", "one budget per comparison here; its second baseline's "
     "recipe (batch 64, lr 1e-5) is the one the study compared against"),
    ("Sophia with per-task dropout from its own Optuna study (sBERT-Sophia dropout)", "ours tunes per-task "
     "dropout and weight decay together (03's sophia-regularised), not its dropout values"),
    ("Sophia balanced data: the separate QQP phase and class weights together under Sophia",
     "03 runs each adjustment alone on tuned Sophia, against AdamW"),
    ("Sophia Baseline (Finn): a second Sophia baseline of unstated settings", "its settings are not given"),
    ("The shared similarity layer (sBERT-Shared Similarity)", "a knob (`shared_similarity`), not an arm of a "
     "comparison"),
    ("The Optuna comparison of AdamW and Sophia over 100 trials", "the cpu profile runs no study (the smoke "
     "profile runs their mechanics); the full profile's 30 trials a study have not run, for want of a GPU"),
    ("Every arm of the study's questions on the CPU", "the cpu profile leaves out for time combined and "
     "pcgrad (02), the tuned arms (03, 04), linear-nobias and the combined attention variants (05); the "
     "full profile runs them"),
    ("SMART tuned per task for the BERT (cross-encoder) model", "04 tunes SMART on its own mode only"),
    ("BERT additional layer and extra classifier training as separate runs", "06's recipe has the hidden "
     "layer; the frozen last epoch is 02's freeze arm"),
)

GLOSSARY = (
    ("arm", "one training recipe of a comparison, run once per seed on the same data and budget"),
    ("reference arm", "the arm every other arm of a notebook is measured against (the study's baseline "
     "where it had one)"),
    ("seed", "one run of an arm; the seeds of all arms are the same, so runs pair seed by seed"),
    ("dev, held-out", "dev is the task's dev file, only reported; held-out rows are carved from train "
     "and are what every choice (best epoch, tuning, headline) is made on"),
    ("held-out mean", "the mean of the three tasks' held-out scores: what selects"),
    ("floor", "a score a model must beat before its comparison answers: the majority class, and for "
     "STS the untrained checkpoint's zero-shot cosine"),
    ("paired interval", "the 95% bootstrap interval of an arm's difference from the reference, resampling "
     "the seeds and the dev items together (both arms scored on the same rows and seeds)"),
    ("Holm's correction", "which named verdicts stay significant when all the differences of a page are "
     "tested at once (family-wise error 5%)"),
    ("smallest effect", "the smallest difference worth naming: 0.01 accuracy, 0.005 Pearson"),
    ("verdict", "better or worse: the printed interval excludes 0, every seed agrees and the difference "
     "reaches the smallest effect; negligible: the interval lies within it; inconclusive: otherwise"),
    ("status", "whether our verdicts agree with the differences the study's own figures name (those "
     "reaching the smallest effect): reproduced, contradicted, partly reproduced, not settled"),
    ("profile", "a budget of every notebook (params/<profile>/): smoke for the tests, cpu the evidence (the "
     "default), full a GPU's"),
    ("headline run", "a results file's best arm by mean held-out score over its seeds, and its best run"),
    ("peer", "transformers' own fine-tune of the same checkpoint, one run a task, its usual recipe"),
    ("lever", "one choice of 06's recipe, switched off (or changed) alone in its ablation"),
    ("pretrained view", "the frozen checkpoint with a linear model per task on its sentence embeddings"),
    ("blend", "the final model's outputs averaged with the pretrained view's, a weight per task chosen on "
     "held-out rows"),
    ("bi-encoder, cross-encoder", "sBERT (each sentence embedded apart) and BERT (a pair read as one "
     "sequence), as the study's two parts"),
)


def deviations(results: list[Results]) -> pd.DataFrame:
    """Where our runs differ from the study's: its setting, ours per profile (read from the first
    comparison notebook's results file of that profile), and what the difference can change."""
    by_profile: dict[str, Results] = {}
    for notebook in ("02_sbert_baseline", "03_sophia", "04_smart", "05_attention", "06_final_bert"):
        for result in results:
            if result.notebook == notebook and result.runs:
                by_profile.setdefault(result.profile, result)
    columns = {f"ours: {p} ({r.notebook[:2]})": r for p, r in sorted(by_profile.items(),
                                                                     key=lambda kv: _profile_rank(kv[1]))}
    trials = {r.profile: r for r in results if r.notebook == "03_sophia" and r.checks.get("studies")}

    def ours(result: Results, what: str) -> str:
        run = result.runs[0]
        config, sizes = run.config, run.train_sizes or {}
        arms = [r.group or r.name for r in result.runs]
        if what == "model":
            return f"all-MiniLM-L6-v2, {run.parameters / 1e6:.1f}M parameters" if run.parameters else "MiniLM"
        if what == "checkpoint":
            floor = (result.checks.get("floors") or {}).get(ZERO_SHOT_FLOOR, {}).get("sts")
            return ("sentence-embedding training on about a billion sentence pairs"
                    + (f"; STS zero-shot {floor:.3f} before any training" if floor is not None else ""))
        if what == "rows":
            return " / ".join(f"{sizes[t]:,}" for t in tasks.MULTITASK if t in sizes) or "-"
        if what == "proportions":
            return (f"QQP {sizes['qqp'] / sizes['sst']:.1f}x SST, STS {sizes['sts'] / sizes['sst']:.1f}x SST"
                    if {"sst", "qqp", "sts"} <= sizes.keys() else "-")
        if what == "seeds":
            return f"{max(arms.count(a) for a in set(arms))} a configuration"
        if what == "trials":
            found = trials.get(result.profile)
            studies = found.checks["studies"].values() if found else []
            counts = sorted({s.get("finished_trials") for s in studies})
            return " to ".join(map(str, counts)) + " a study" if counts else "-"
        if what == "hardware":
            return str(result.stamp.get("device", "?"))
        return str(config.get(what, "-"))

    study = {
        "model": ("BERT-base, 110M parameters",
                  "absolute scores; whether a method helps may differ with size"),
        "checkpoint": ("masked-language-model pretraining only", "a sentence-trained checkpoint starts where "
                       "the study's sBERT ended: its STS weakness cannot appear here"),
        "rows": ("8,544 / 141,506 / 6,040 (the course's full train files)",
                 "smaller data: less to learn from, wider intervals"),
        "proportions": ("QQP 16.6x SST, STS 0.7x SST", "the imbalance that its QQP-first, round-robin, "
                        "separate QQP and class-weight arms answer; equal sizes remove it"),
        "lr": ("1e-5 (AdamW)", "ours is tuned for few epochs"),
        "epochs": ("10 to 30", "fewer epochs: less overfitting, which the study blamed for several results"),
        "batch_size": ("20 to 80 (64 in most)", "little"),
        "seeds": ("1 run a configuration", "its single-run differences cannot be told from seed noise"),
        "trials": ("100 a study (50 for the BERT's SMART)", "our tuned arms searched far less"),
        "hardware": ("a GPU", "only the time it takes"),
    }
    labels = {"model": "model", "checkpoint": "checkpoint training", "rows": "train rows (SST / QQP / STS)",
              "proportions": "task proportions", "lr": "learning rate", "epochs": "epochs",
              "batch_size": "batch size", "seeds": "seeds", "trials": "Optuna trials", "hardware": "hardware"}
    rows = []
    for key, (theirs, change) in study.items():
        row = {"": labels[key], "the study": theirs}
        row.update({column: ours(result, key) for column, result in columns.items()})
        row["what it can change"] = change
        rows.append(row)
    return pd.DataFrame(rows).set_index("").rename_axis(None)


def status_counts(results: list[Results]) -> dict[str, int]:
    """How many of the questions each status holds (on the evidence profile)."""
    counts: dict[str, int] = {}
    for question in QUESTIONS:
        said = claim_status(question, evidence_for(question, results))
        kind = next((s for s in STATUSES if said.startswith(s)), said)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


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
    saved = [Difference.from_dict(d) for d in result.checks.get(key, [])]
    kept = _holm_kept(_judged(result, key))
    for d in saved:
        holds = "" if not d.named or kept is None or (d.arm, d.task) in kept else " (not after Holm)"
        said = ("not judged (no floors)" if unjudged
                else d.verdict + holds if answers.get(d.task, True) else "not answered")
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
