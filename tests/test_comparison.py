"""Paired comparisons of arms: the bootstrap interval against hand-computed values, and the rule
that names a difference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from minbert import tasks
from minbert.comparison import NO_DIFFERENCE, Comparison, findings, paired_difference
from minbert.records import RunRecord


def two_arms(n: int = 2000, arm_only: int = 300, reference_only: int = 200):
    """Binary predictions where the arm alone is right on `arm_only` items, the reference alone
    on `reference_only`, and both on the rest."""
    gold = np.zeros(n)
    arm, reference = gold.copy(), gold.copy()
    reference[:arm_only] = 1
    arm[arm_only:arm_only + reference_only] = 1
    return gold, arm[None], reference[None]


def test_accuracy_interval_matches_the_hand_computed_normal_interval():
    gold, arm, reference = two_arms()
    d = paired_difference("qqp", gold, arm, reference, resamples=4000)
    # by hand: per-item differences are +1 (300), -1 (200), 0 (1500): mean 0.05, variance
    # 500/2000 - 0.05^2 = 0.2475, standard error sqrt(0.2475 / 2000) = 0.011124
    se = np.sqrt((500 / 2000 - 0.05**2) / 2000)
    assert d.estimate == pytest.approx(0.05)
    assert d.low == pytest.approx(0.05 - 1.96 * se, abs=0.002)
    assert d.high == pytest.approx(0.05 + 1.96 * se, abs=0.002)
    assert d.detected and "above" in d.sentence()


def test_pairing_narrows_the_interval_against_unpaired_scores():
    gold, arm, reference = two_arms()
    d = paired_difference("qqp", gold, arm, reference)
    unpaired_half_width = 1.96 * np.sqrt(2 * 0.85 * 0.15 / 2000 + 0.0)  # two independent scores
    assert (d.high - d.low) / 2 < unpaired_half_width


def test_identical_arms_and_balanced_disagreements_are_not_findings():
    gold, arm, _ = two_arms()
    same = paired_difference("qqp", gold, arm, arm)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0) and not same.detected
    gold, arm, reference = two_arms(arm_only=100, reference_only=100)
    balanced = paired_difference("qqp", gold, arm, reference)
    assert balanced.low < 0 < balanced.high and NO_DIFFERENCE in balanced.sentence()


def test_seeds_that_disagree_block_a_finding():
    gold, arm, reference = two_arms()
    # seed 2: the reference's better predictions and the arm's swap roles, by less
    _, arm2, reference2 = two_arms(arm_only=200, reference_only=220)
    d = paired_difference("qqp", gold, np.vstack([arm, arm, arm2]),
                          np.vstack([reference, reference, reference2]))
    assert d.low > 0 and d.seed_differences[2] < 0 and not d.detected


def test_pearson_differences_use_the_task_metric():
    rng = np.random.default_rng(3)
    gold = rng.uniform(0, 5, 400)
    arm = gold + rng.normal(0, 0.5, (2, 400))
    reference = gold + rng.normal(0, 2.0, (2, 400))
    d = paired_difference("sts", gold, arm, reference, resamples=500)
    by_hand = np.mean([stats.pearsonr(a, gold)[0] for a in arm]) - np.mean(
        [stats.pearsonr(r, gold)[0] for r in reference])
    assert d.estimate == pytest.approx(by_hand, abs=1e-12) and d.detected
    assert tasks.get("sts").score(arm, gold) == pytest.approx([stats.pearsonr(a, gold)[0] for a in arm])


def test_mismatched_shapes_are_named():
    gold, arm, reference = two_arms()
    with pytest.raises(ValueError, match="qqp: predictions of arm"):
        paired_difference("qqp", gold, arm, reference[:, :10])


def test_a_comparison_measures_every_arm_against_its_reference():
    gold, arm, reference = two_arms()
    comparison = Comparison("base", {"qqp": gold})
    for name, predicted in (("base", reference[0]), ("new", arm[0]), ("same", reference[0])):
        comparison.add(name, RunRecord(f"{name}-seed1", {"qqp_acc": 0.0}, 1, []), {"qqp": predicted})
    found = comparison.differences(resamples=500)
    assert [(d.arm, d.task) for d in found] == [("new", "qqp"), ("same", "qqp")]
    lines = findings(found)
    assert lines[0].startswith("QQP") and "new is above base" in lines[0]
    assert lines[-1] == f"{NO_DIFFERENCE.capitalize()}: same on {tasks.get('qqp').metric_label}."
    with pytest.raises(ValueError, match="reference arm 'missing'"):
        Comparison("missing", {"qqp": gold}, comparison.runs, comparison.predictions).differences()


def test_one_arm_alone_has_nothing_to_compare():
    from minbert.report.tables import differences_table

    assert findings([]) == ["Only one arm ran: there is nothing to compare it with."]
    assert differences_table([]).empty


def test_verdicts_name_only_detected_differences_with_their_intervals():
    from minbert.comparison import Difference, verdict

    def diff(task, estimate, low, high):
        return Difference("b", "a", task, estimate, low, high, [estimate] * 3, 100)

    up, down = diff("sst", 0.05, 0.02, 0.08), diff("qqp", -0.04, -0.07, -0.01)
    flat = diff("sts", 0.01, -0.02, 0.04)
    assert verdict([up, flat], "b") == ("b is above a on SST acc +0.050 [+0.020, +0.080]; no difference "
                                        "detected at this budget on STS pearson.")
    assert verdict([up, down], "b").startswith("b is mixed against a: above on SST acc")
    assert verdict([down], "b") == "b is below a on QQP acc -0.040 [-0.070, -0.010]."
    assert verdict([flat], "b") == ("b against a: no difference detected at this budget on any task "
                                    "(STS pearson).")
    with pytest.raises(ValueError, match="no differences of arm 'c'"):
        verdict([flat], "c")


def test_an_interval_that_excludes_zero_with_seeds_that_disagree_is_not_named_and_says_why():
    from minbert.comparison import Difference, verdict

    split = Difference("b", "a", "qqp", -0.028, -0.047, -0.010, [-0.061, 0.004], 1000)
    assert not split.detected and split.seeds_disagree
    why = "On QQP acc the interval -0.028 [-0.047, -0.010] excludes 0, but the seeds split (-0.061 / +0.004)."
    assert verdict([split], "b") == f"b against a: {NO_DIFFERENCE} on any task (QQP acc). {why}"
    assert "the seeds disagree; by seed: -0.061, +0.004" in split.sentence()
    agreeing = Difference("b", "a", "qqp", -0.028, -0.047, -0.010, [-0.03, -0.02], 1000)
    assert agreeing.detected and not agreeing.seeds_disagree and agreeing.why_not_named == ""
    assert verdict([agreeing, split], "b").endswith(f"; {NO_DIFFERENCE} on QQP acc. {why}")


def test_a_bound_that_excludes_zero_never_prints_as_zero():
    from minbert.comparison import Difference, signed

    assert signed(0.0123) == "+0.012" and signed(-0.5) == "-0.500" and signed(0.0) == "+0.000"
    assert signed(0.0004) == "+0.0004" and signed(-0.00004) == "-0.00004"
    assert signed(1e-9) == "+0.000000"  # six decimals at most
    tight = Difference("b", "a", "sts", 0.002, 0.0003, 0.0031, [0.002] * 3, 863)
    assert tight.span == "+0.002 [+0.0003, +0.003]"
