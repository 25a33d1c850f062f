"""A comparison of arms on equal budgets: several seeds per arm, and each arm's difference from a
reference arm with a paired bootstrap interval over the dev items.

Why paired: every arm is scored on the same dev rows, so the rows' difficulty cancels out of a
difference, and its interval is much narrower than two scores' own intervals suggest. The
interval resamples dev items (`scipy.stats.bootstrap`, paired, percentile); each resample
recomputes every seed's score of both arms and takes the difference of the seed means. It
covers the sampling of the dev set, not seed-to-seed variance; so a difference is named only
when its interval excludes 0 *and* every seed, compared with the reference run of the same seed,
points the same way. Otherwise the report says "no difference detected at this budget".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from minbert import tasks
from minbert.records import RunRecord, headline

CONFIDENCE = 0.95
RESAMPLES = 2000
NO_DIFFERENCE = "no difference detected at this budget"


def signed(value: float) -> str:
    """A difference with its sign and three decimals, or as many more (up to six) as it takes not to show
    a non-zero value as 0.000: an interval bound that excludes 0 must not read as touching it."""
    decimals = 3
    while value and round(value, decimals) == 0 and decimals < 6:
        decimals += 1
    return f"{value:+.{decimals}f}"


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

    @property
    def detected(self) -> bool:
        """The interval excludes 0 and every seed agrees on the sign."""
        return self.excludes_zero and all(np.sign(d) == np.sign(self.estimate) for d in self.seed_differences)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def seeds_disagree(self) -> bool:
        """The interval excludes 0 but a seed points the other way: not named, and said why."""
        return self.excludes_zero and not self.detected

    @property
    def why_not_named(self) -> str:
        """What a reader needs where the interval alone would suggest a difference."""
        if not self.seeds_disagree:
            return ""
        seeds = " / ".join(signed(d) for d in self.seed_differences)
        return (f"On {tasks.get(self.task).metric_label} the interval {self.span} excludes 0, but the seeds "
                f"split ({seeds}).")

    def sentence(self) -> str:
        label = tasks.get(self.task).metric_label
        span = self.span
        if self.detected:
            verdict = f"{self.arm} is {'above' if self.estimate > 0 else 'below'} {self.reference}"
        else:
            verdict = NO_DIFFERENCE + (": the seeds disagree" if self.seeds_disagree else "")
        seeds = ", ".join(signed(d) for d in self.seed_differences)
        return (f"{label}, {self.arm} − {self.reference}: {span} on {self.items:,} dev items ({verdict}; "
                f"by seed: {seeds}).")

    @property
    def span(self) -> str:
        """The estimate and its 95% interval: "+0.012 [+0.003, +0.021]"."""
        return f"{signed(self.estimate)} [{signed(self.low)}, {signed(self.high)}]"

    def to_dict(self) -> dict:
        return {**asdict(self), "detected": self.detected}


def paired_difference(task_name: str, gold: Sequence[float], arm: np.ndarray, reference: np.ndarray, *,
                      arm_name: str = "arm", reference_name: str = "reference",
                      resamples: int = RESAMPLES, seed: int = 0) -> Difference:
    """The difference of seed-mean dev scores, arm minus reference, with its paired 95% interval.

    `arm` and `reference` hold predictions shaped (seeds, items), seed k of one paired with seed k
    of the other; the task's dev metric scores them."""
    task = tasks.get(task_name)
    gold = np.asarray(gold, dtype=float)
    arm, reference = (np.atleast_2d(np.asarray(x, dtype=float)) for x in (arm, reference))
    if arm.shape != reference.shape or arm.shape[-1] != gold.shape[-1]:
        raise ValueError(f"{task_name}: predictions of {arm_name} {arm.shape} and {reference_name} "
                         f"{reference.shape} must both be (seeds, {gold.shape[-1]} dev items)")

    def difference(g: np.ndarray, a: np.ndarray, r: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(task.score(a, g), axis=0) - np.mean(task.score(r, g), axis=0)

    estimate = float(difference(gold, arm, reference))
    by_seed = [float(task.score(a, gold) - task.score(r, gold)) for a, r in zip(arm, reference, strict=True)]
    if np.allclose(arm, reference):  # nothing to resample: every resample's difference is 0
        low = high = estimate
    else:
        result = stats.bootstrap((gold, arm, reference), difference, paired=True, vectorized=True,
                                 n_resamples=resamples, confidence_level=CONFIDENCE, method="percentile",
                                 batch=200, rng=seed, axis=-1)
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Difference(arm_name, reference_name, task_name, estimate, low, high, by_seed, int(gold.shape[-1]))


@dataclass
class Comparison:
    """The runs of one comparison: each arm over the same seeds, with each run's dev predictions."""

    reference: str
    gold: dict[str, np.ndarray]  # task -> dev gold labels or scores
    runs: dict[str, list[RunRecord]] = field(default_factory=dict)
    predictions: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)

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

    def differences(self, resamples: int = RESAMPLES) -> list[Difference]:
        """Every other arm against the reference, task by task."""
        if self.reference not in self.runs:
            raise ValueError(f"the reference arm {self.reference!r} has no runs; arms: {self.arms}")
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


def findings(differences: Sequence[Difference]) -> list[str]:
    """The differences that survive the rule first, then a line naming the ones that do not."""
    if not differences:
        return ["Only one arm ran: there is nothing to compare it with."]
    named = [d.sentence() for d in differences if d.detected]
    missed = [f"{d.arm} on {tasks.get(d.task).metric_label}" for d in differences if not d.detected]
    lines = named or ["No arm differs from the reference on any task beyond the intervals."]
    if missed:
        lines.append(f"{NO_DIFFERENCE.capitalize()}: {', '.join(missed)}.")
    return lines


def verdict(differences: Sequence[Difference], arm: str) -> str:
    """One arm against the reference in words, from its differences: above, below, mixed, or no
    difference detected; the named differences come with their intervals."""
    own = [d for d in differences if d.arm == arm]
    if not own:
        raise ValueError(f"no differences of arm {arm!r}; arms: {sorted({d.arm for d in differences})}")
    reference = own[0].reference
    above = [d for d in own if d.detected and d.estimate > 0]
    below = [d for d in own if d.detected and d.estimate < 0]
    unseen = [tasks.get(d.task).metric_label for d in own if not d.detected]
    split = "".join(f" {d.why_not_named}" for d in own if d.seeds_disagree)

    def listed(found: list[Difference]) -> str:
        return ", ".join(f"{tasks.get(d.task).metric_label} {d.span}" for d in found)

    if above and below:
        head = f"{arm} is mixed against {reference}: above on {listed(above)}; below on {listed(below)}"
    elif above:
        head = f"{arm} is above {reference} on {listed(above)}"
    elif below:
        head = f"{arm} is below {reference} on {listed(below)}"
    else:
        return f"{arm} against {reference}: {NO_DIFFERENCE} on any task ({', '.join(unseen)}).{split}"
    return head + (f"; {NO_DIFFERENCE} on {', '.join(unseen)}." if unseen else ".") + split
