"""Multitask schedules, checked step by step on small counts: every schedule spends the same budget."""

from __future__ import annotations

from collections import Counter

import pytest

from minbert.schedules import SCHEDULES, batch_sizes, epoch_plan

COUNTS = {"sst": 3, "qqp": 5, "sts": 2}
ORDER = ["sst", "qqp", "sts"]


def test_sequential_follows_the_task_order():
    assert epoch_plan("sequential", COUNTS, ["sts", "sst", "qqp"]) == (
        [("sts",)] * 2 + [("sst",)] * 3 + [("qqp",)] * 5)
    plan = epoch_plan("sequential", COUNTS, ["qqp", "sts", "sst"])
    assert plan[0] == ("qqp",) and Counter(t for (t,) in plan) == Counter(COUNTS)


def test_round_robin_takes_turns_and_cycles_the_smaller_tasks():
    plan = epoch_plan("round-robin", COUNTS, ORDER)
    assert plan[:4] == [("sst",), ("qqp",), ("sts",), ("sst",)]
    assert Counter(t for (t,) in plan) == {"sst": 4, "qqp": 3, "sts": 3}  # sts cycles past its 2 batches


@pytest.mark.parametrize("schedule", ["combined", "pcgrad"])
def test_combined_steps_take_every_task_with_a_split_batch(schedule):
    assert epoch_plan(schedule, COUNTS, ORDER) == [("sst", "qqp", "sts")] * 10
    assert batch_sizes(schedule, 32, ORDER) == {"sst": 11, "qqp": 11, "sts": 10}
    assert batch_sizes("sequential", 32, ORDER) == {"sst": 32, "qqp": 32, "sts": 32}
    with pytest.raises(ValueError, match="batch_size must be at least 3"):
        batch_sizes(schedule, 2, ORDER)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_spends_the_same_steps_and_examples(schedule):
    plan = epoch_plan(schedule, COUNTS, ORDER)
    sizes = batch_sizes(schedule, 32, ORDER)
    assert len(plan) == sum(COUNTS.values()) == 10
    assert sum(sizes[t] for step in plan for t in step) == 10 * 32


def test_separate_qqp_phase():
    assert epoch_plan("sequential", COUNTS, ORDER, qqp_only=True) == [("qqp",)] * 10
    # after it, QQP's share is cut to the largest other task's (3 of 8 weights), over the same 10 steps
    after = Counter(t for (t,) in epoch_plan("sequential", COUNTS, ["sts", "sst", "qqp"], qqp_cap=True))
    assert after == {"sst": 4, "qqp": 4, "sts": 2} and sum(after.values()) == 10
    assert epoch_plan("sequential", {"sst": 3, "qqp": 2, "sts": 2}, ORDER, qqp_cap=True) == (
        [("sst",)] * 3 + [("qqp",)] * 2 + [("sts",)] * 2)  # a small QQP keeps all its batches


def test_bad_schedule_and_order_are_named():
    with pytest.raises(ValueError, match="unknown schedule 'random'"):
        epoch_plan("random", COUNTS, ORDER)
    with pytest.raises(ValueError, match="must name each task"):
        epoch_plan("sequential", COUNTS, ["sst", "qqp"])
