"""A comparison of arms on equal budgets: several seeds per arm, and each arm's difference from a
reference arm with a paired two-level bootstrap interval, over the seeds and the dev items, read as
a verdict.

Why paired: every arm is scored on the same dev rows, so the rows' difficulty cancels out of a
difference, and its interval is much narrower than two scores' own intervals suggest. Why two
levels: seed to seed, a run differs as much as the dev set's sampling moves it, or more. Each
resample draws the seeds (a run of the arm with the reference's run of the same seed, with
replacement) and the dev items (with replacement) together, scores every drawn run on the drawn
items and takes the mean of the paired differences (a percentile interval; the two-sided bootstrap
p-value of no difference beside it). Two seeds of opposite sign therefore give an interval that
spans 0, whatever the number of dev items. The verdict asks the seeds too:

- better / worse: the interval excludes 0, every seed (against the reference run of the same seed)
  points the same way, and the estimate is at least the smallest effect worth naming;
- negligible: the whole interval lies within that smallest effect either side of 0;
- inconclusive: anything else (the budget cannot tell).

A page judges many differences at once; `holm` says which named verdicts survive Holm's correction
for all of them (family-wise error 5%), and the findings say how many.

A comparison answers on a task only where its reference arm learned: where it beats every floor
(the majority class, the untrained checkpoint's zero-shot score) by that same verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from minbert import tasks
from minbert.records import RunRecord, headline

CONFIDENCE = 0.95
RESAMPLES = 2000

# The smallest effect worth naming, by metric. 0.01 accuracy is 11 of SST's 1,101 dev rows and 50 of
# 5,000 QQP pairs, and below the smallest differences the study drew conclusions from (its reordered
# and round-robin training against its baseline: +0.009 to +0.021 on SST and QQP); 0.005 Pearson is a
# third of the smallest STS difference it reported there (+0.015). Below these, a difference changes
# no conclusion a reader would draw, however sure its interval.
SMALLEST_EFFECT = {"acc": 0.01, "pearson": 0.005}
VERDICTS = ("better", "worse", "negligible", "inconclusive")
MAJORITY = "majority class"
ZERO_SHOT = "untrained checkpoint (zero-shot cosine)"


def smallest_effect(task: str) -> float:
    """The smallest difference worth naming on the task's dev metric (`SMALLEST_EFFECT`)."""
    return SMALLEST_EFFECT[tasks.get(task).metric.rsplit("_", 1)[-1]]


DIGITS = 3  # what a difference is printed with, and what its verdict is decided on


def signed(value: float) -> str:
    """A difference with its sign and three decimals, intervals alike (a bound that rounds to 0 keeps its
    sign: "+0.000")."""
    return f"{value:+.{DIGITS}f}"


@dataclass(frozen=True)
class Difference:
    """One arm minus the reference arm on one task's dev metric, seed means, with its interval."""

    arm: str
    reference: str
    task: str
    estimate: float
    low: float
    high: float
    seed_differences: list[float]
    items: int
    p_value: float | None = None  # two-sided, of no difference (None: saved before it was kept)

    @property
    def smallest(self) -> float:
        return smallest_effect(self.task)

    @property
    def excludes_zero(self) -> bool:
        """Whether the printed interval excludes 0 (a bound printed "+0.000" does not)."""
        return round(self.low, DIGITS) > 0 or round(self.high, DIGITS) < 0

    @property
    def seeds_agree(self) -> bool:
        return all(np.sign(d) == np.sign(self.estimate) for d in self.seed_differences)

    @property
    def verdict(self) -> str:
        """better, worse, negligible or inconclusive (the module's docstring says when), decided on the
        figures as printed (`DIGITS` decimals): a reader checking "+0.010 [+0.006, +0.014]" against the
        smallest effect of 0.01 reaches the same verdict as the report."""
        estimate, low, high = (round(v, DIGITS) for v in (self.estimate, self.low, self.high))
        if self.excludes_zero and self.seeds_agree and abs(estimate) >= self.smallest:
            return "better" if estimate > 0 else "worse"
        if -self.smallest < low and high < self.smallest:
            return "negligible"
        return "inconclusive"

    @property
    def named(self) -> bool:
        """A difference the report names: better or worse."""
        return self.verdict in ("better", "worse")

    @property
    def why_inconclusive(self) -> str:
        """What keeps an inconclusive difference from a verdict, in a few words."""
        if self.verdict != "inconclusive":
            return ""
        if self.excludes_zero and not self.seeds_agree:
            return "the seeds split (" + " / ".join(signed(d) for d in self.seed_differences) + ")"
        if self.excludes_zero:
            return f"smaller than {self.smallest:g}"
        return f"the interval spans 0 and reaches past ±{self.smallest:g}"

    def sentence(self) -> str:
        label = tasks.get(self.task).metric_label
        reason = self.why_inconclusive
        seeds = ", ".join(signed(d) for d in self.seed_differences)
        return (f"{label}, {self.arm} − {self.reference}: {self.span} on {self.items:,} dev items "
                f"({self.verdict}{': ' + reason if reason else ''}; by seed: {seeds}).")

    @property
    def span(self) -> str:
        """The estimate and its 95% interval: "+0.012 [+0.003, +0.021]"."""
        return f"{signed(self.estimate)} [{signed(self.low)}, {signed(self.high)}]"

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

    @classmethod
    def from_dict(cls, values: dict) -> Difference:
        """A saved difference (a results file's); the verdict is recomputed, never read back."""
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


def paired_difference(task_name: str, gold: Sequence[float], arm: np.ndarray, reference: np.ndarray, *,
                      arm_name: str = "arm", reference_name: str = "reference",
                      resamples: int = RESAMPLES, seed: int = 0) -> Difference:
    """The difference of seed-mean dev scores, arm minus reference, with its paired 95% interval over
    the seeds and the dev items together (the module's docstring) and its bootstrap p-value.

    `arm` and `reference` hold predictions shaped (seeds, items), seed k of one paired with seed k
    of the other; the task's dev metric scores them."""
    task = tasks.get(task_name)
    gold = np.asarray(gold, dtype=float)
    arm, reference = (np.atleast_2d(np.asarray(x, dtype=float)) for x in (arm, reference))
    if arm.shape != reference.shape or arm.shape[-1] != gold.shape[-1]:
        raise ValueError(f"{task_name}: predictions of {arm_name} {arm.shape} and {reference_name} "
                         f"{reference.shape} must both be (seeds, {gold.shape[-1]} dev items)")

    by_seed = [float(task.score(a, gold) - task.score(r, gold)) for a, r in zip(arm, reference, strict=True)]
    estimate = float(np.mean(by_seed))
    if np.allclose(arm, reference):  # nothing to resample: every resample's difference is 0
        low = high = estimate
        p_value = 1.0
    else:
        drawn = resampled_differences(task_name, gold, arm, reference, resamples, np.random.default_rng(seed))
        tail = (1 - CONFIDENCE) / 2
        low, high = (float(v) for v in np.nanquantile(drawn, [tail, 1 - tail]))
        p_value = float(min(1.0, 2 * min(np.nanmean(drawn <= 0), np.nanmean(drawn >= 0))))
    return Difference(arm_name, reference_name, task_name, estimate, low, high, by_seed, int(gold.shape[-1]),
                      p_value)


def resampled_differences(task_name: str, gold: np.ndarray, arm: np.ndarray, reference: np.ndarray,
                          resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`resamples` bootstrap replicates of the seed-mean difference, each drawing the seeds and the dev
    items with replacement (the items as counts, so that a replicate costs one weighted sum per seed)."""
    seeds, items = arm.shape
    out = np.empty(resamples)
    chunk = max(1, min(resamples, 4_000_000 // items))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        draws = rng.integers(0, items, (size, items)) + np.arange(size)[:, None] * items
        counts = np.bincount(draws.ravel(), minlength=size * items).reshape(size, items).astype(float)
        paired = _weighted_scores(task_name, gold, arm, counts) - _weighted_scores(task_name, gold, reference,
                                                                                    counts)
        chosen = rng.integers(0, seeds, (size, seeds))
        out[start:start + size] = np.take_along_axis(paired, chosen, axis=1).mean(axis=1)
    return out


def _weighted_scores(task_name: str, gold: np.ndarray, predictions: np.ndarray,
                     counts: np.ndarray) -> np.ndarray:
    """The task's metric of each seed's predictions (seeds, items) on each resample of the items given
    as counts (resamples, items): accuracy, or Pearson's correlation from weighted moments.
    Returns (resamples, seeds). The metric's weighted form, not `Task.score` on gathered items: a QQP
    difference on all 40,429 dev pairs takes 1.7 s so, against 7.5 s gathered (and 10 s with
    `scipy.stats.bootstrap`, items only)."""
    total = counts.sum(axis=1, keepdims=True)
    if tasks.get(task_name).kind != "regression":
        return counts @ (predictions == gold).T.astype(float) / total

    def moment(values: np.ndarray) -> np.ndarray:
        return counts @ values.T / total

    x, y = predictions, np.broadcast_to(gold, predictions.shape)
    mx, my = moment(x), moment(y)
    sxx, syy, sxy = moment(x * x) - mx * mx, moment(y * y) - my * my, moment(x * y) - mx * my
    with np.errstate(invalid="ignore", divide="ignore"):
        return sxy / np.sqrt(sxx * syy)


def holm(differences: Sequence[Difference], alpha: float = 1 - CONFIDENCE) -> list[bool]:
    """For each difference, whether it stays significant under Holm's step-down correction for testing
    all of `differences` at once (family-wise error `alpha`): the k-th smallest p-value must be at most
    alpha / (m - k + 1), and every smaller one must pass too. A difference without a p-value fails."""
    m = len(differences)
    order = sorted(range(m), key=lambda i: (differences[i].p_value is None, differences[i].p_value or 0.0))
    kept = [False] * m
    for rank, i in enumerate(order):
        p = differences[i].p_value
        if p is None or p > alpha / (m - rank):
            break
        kept[i] = True
    return kept


def majority_predictions(task: str, gold: Sequence[float]) -> np.ndarray:
    """The majority-class floor of a classification task: its most frequent gold label on these dev
    items, for every item (the best any constant answer scores here)."""
    values, counts = np.unique(np.asarray(gold), return_counts=True)
    return np.full(len(gold), values[np.argmax(counts)], dtype=float)


@dataclass
class Comparison:
    """The runs of one comparison: each arm over the same seeds, with each run's dev predictions, and
    the floors the reference arm must clear (name -> task -> predictions on the same dev items):
    the majority class of every classification task, and any the notebook adds (`ZERO_SHOT`)."""

    reference: str
    gold: dict[str, np.ndarray]  # task -> dev gold labels or scores
    runs: dict[str, list[RunRecord]] = field(default_factory=dict)
    predictions: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    floors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        majority = {task: majority_predictions(task, gold) for task, gold in self.gold.items()
                    if tasks.get(task).kind != "regression"}
        if majority:
            self.floors.setdefault(MAJORITY, majority)

    def add(self, arm: str, record: RunRecord, predictions: dict[str, np.ndarray]) -> None:
        """One run of `arm` (its seeds must come in the same order for every arm); the record's
        `group` becomes the arm."""
        record.group = arm
        self.runs.setdefault(arm, []).append(record)
        self.predictions.setdefault(arm, []).append(predictions)

    @property
    def arms(self) -> list[str]:
        return list(self.runs)

    def best_arm(self) -> str:
        """The arm with the highest held-out mean over its seeds (`records.headline`'s rule)."""
        return headline(self.records()).group

    def records(self) -> list[RunRecord]:
        return [record for runs in self.runs.values() for record in runs]

    def stacked(self, arm: str, task: str) -> np.ndarray:
        """The arm's dev predictions of one task, (seeds, items)."""
        return np.stack([np.asarray(p[task], dtype=float) for p in self.predictions[arm]])

    def _check_reference(self) -> None:
        if self.reference not in self.runs:
            raise ValueError(f"the reference arm {self.reference!r} has no runs; arms: {self.arms}")

    def differences(self, resamples: int = RESAMPLES) -> list[Difference]:
        """Every other arm against the reference, task by task."""
        self._check_reference()
        found = []
        for arm in self.arms:
            if arm == self.reference:
                continue
            seeds = min(len(self.runs[arm]), len(self.runs[self.reference]))
            for task, gold in self.gold.items():
                found.append(paired_difference(
                    task, gold, self.stacked(arm, task)[:seeds],
                    self.stacked(self.reference, task)[:seeds], arm_name=arm, reference_name=self.reference,
                    resamples=resamples))
        return found

    def floor_scores(self) -> dict[str, dict[str, float]]:
        """Each floor's dev score per task (the metric of the task)."""
        return {name: {task: float(tasks.get(task).score(np.asarray(predicted), self.gold[task]))
                       for task, predicted in by_task.items()}
                for name, by_task in self.floors.items()}

    def margins(self, resamples: int = RESAMPLES) -> list[Difference]:
        """The reference arm minus each floor, task by task, paired on the same dev items (the floor's
        predictions stand beside every seed): whether the reference learned at all."""
        self._check_reference()
        found = []
        for name, by_task in self.floors.items():
            for task, predicted in by_task.items():
                reference = self.stacked(self.reference, task)
                floor = np.broadcast_to(np.asarray(predicted, dtype=float), reference.shape)
                found.append(paired_difference(task, self.gold[task], reference, floor,
                                               arm_name=self.reference, reference_name=name,
                                               resamples=resamples))
        return found


def learned(margins: Sequence[Difference]) -> dict[str, bool]:
    """Per task with a floor, whether the reference arm learned: better than every floor of the task."""
    out: dict[str, bool] = {}
    for d in margins:
        out[d.task] = out.get(d.task, True) and d.verdict == "better"
    return out


def learned_line(margins: Sequence[Difference]) -> str:
    """Whether the reference arm learned, task by task, in one sentence with each margin's interval."""
    if not margins:
        return "This comparison has no floor to clear."
    reference = margins[0].arm
    parts = [f"{tasks.get(d.task).metric_label} {d.span} over the {d.reference}" for d in margins]
    verdicts = learned(margins)
    failed = [tasks.get(t).metric_label for t, ok in verdicts.items() if not ok]
    if not failed:
        return f"The reference arm {reference} learned: {'; '.join(parts)}."
    where = "that task" if len(failed) == 1 else "those tasks"
    return (f"The reference arm {reference} did not clear its floors on {', '.join(failed)} "
            f"({'; '.join(parts)}): the comparison cannot answer on {where} at this budget, and names no "
            "difference there.")


def cannot_answer(d: Difference, answers: dict[str, bool] | None) -> bool:
    """Whether `d` is on a task where the reference did not learn (`answers`, from `learned`), so that
    no difference may be named there."""
    return answers is not None and not answers.get(d.task, True)


def findings(differences: Sequence[Difference], answers: dict[str, bool] | None = None) -> list[str]:
    """The differences named (better or worse) first, then a line for the negligible ones and one for the
    inconclusive ones. `answers` (`learned`) marks the tasks the comparison cannot answer: none of
    their differences is named."""
    if not differences:
        return ["Only one arm ran: there is nothing to compare it with."]
    open_ = [d for d in differences if not cannot_answer(d, answers)]
    named = [d.sentence() for d in open_ if d.named]
    lines = named or ["No arm is better or worse than the reference on any task it can answer."]
    for kind in ("negligible", "inconclusive"):
        listed = [f"{d.arm} on {tasks.get(d.task).metric_label}" for d in open_ if d.verdict == kind]
        if listed:
            lines.append(f"{kind.capitalize()}: {', '.join(listed)}.")
    unanswered = sorted({tasks.get(d.task).metric_label for d in differences if cannot_answer(d, answers)})
    if unanswered:
        lines.append(f"Not answered (the reference arm did not learn): {', '.join(unanswered)}.")
    lines.append(multiplicity_line(open_))
    return lines


def multiplicity_line(differences: Sequence[Difference]) -> str:
    """How many differences a page judged, how many it named, and how many of those keep their verdict
    under Holm's correction for all of them (`holm`)."""
    named = [d for d in differences if d.named]
    if not differences:
        return "No difference judged."
    judged = f"{len(differences)} difference{'' if len(differences) == 1 else 's'}"
    if any(d.p_value is None for d in differences):
        return (f"Judged {judged} and named {len(named)}; Holm's correction needs the p-values that this "
                "results file predates.")
    kept = holm(differences)
    survive = sum(k for d, k in zip(differences, kept, strict=True) if d.named)
    keep = "keeps its" if survive == 1 else "keep their"
    family = (f"for all {len(differences)} (family-wise error 5%)" if len(differences) > 1
              else "(one difference: nothing to correct)")
    return (f"Judged {judged} and named {len(named)} better or worse; {survive} of those {keep} verdict "
            f"under Holm's correction {family}.")


def verdict(differences: Sequence[Difference], arm: str, answers: dict[str, bool] | None = None) -> str:
    """One arm against the reference in words: better on ..., worse on ..., negligible on ...,
    inconclusive on ..., with the named differences' intervals; tasks the comparison cannot answer
    (`answers`) are said to be so."""
    own = [d for d in differences if d.arm == arm]
    if not own:
        raise ValueError(f"no differences of arm {arm!r}; arms: {sorted({d.arm for d in differences})}")
    reference = own[0].reference
    parts = []
    for kind in VERDICTS:
        found = [d for d in own if d.verdict == kind and not cannot_answer(d, answers)]
        if found and kind in ("better", "worse"):
            spans = ", ".join(f"{tasks.get(d.task).metric_label} {d.span}" for d in found)
            parts.append(f"{kind} on {spans}")
        elif found:
            parts.append(f"{kind} on " + ", ".join(tasks.get(d.task).metric_label for d in found))
    unanswered = [tasks.get(d.task).metric_label for d in own if cannot_answer(d, answers)]
    if unanswered:
        parts.append(f"not answered on {', '.join(unanswered)} (the reference did not learn)")
    return f"{arm} against {reference}: " + "; ".join(parts) + "."
