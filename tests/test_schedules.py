"""Multitask schedules, checked step by step on small counts."""

from __future__ import annotations

from collections import Counter

import pytest

from minbert.schedules import epoch_plan, qqp_batches_after_phase

COUNTS = {"sst": 3, "qqp": 5, "sts": 2}


def test_sequential_follows_the_task_order():
    assert epoch_plan("sequential", COUNTS, ["sts", "sst", "qqp"]) == (
        [("sts",)] * 2 + [("sst",)] * 3 + [("qqp",)] * 5)
    plan = epoch_plan("sequential", COUNTS, ["qqp", "sts", "sst"])
    assert plan[0] == ("qqp",) and Counter(t for (t,) in plan) == Counter(COUNTS)


def test_round_robin_interleaves_equal_chunks():
    assert epoch_plan("round-robin", COUNTS, ["sst", "qqp", "sts"]) == [
        ("sst",), ("qqp",), ("sts",), ("sst",), ("qqp",), ("sts",)]


@pytest.mark.parametrize("schedule", ["combined", "pcgrad"])
def test_combined_steps_take_every_task(schedule):
    assert epoch_plan(schedule, COUNTS, ["sst", "qqp", "sts"]) == [("sst", "qqp", "sts")] * 2


def test_separate_qqp_phase():
    assert epoch_plan("round-robin", COUNTS, ["sst", "qqp", "sts"], qqp_only=True) == [("qqp",)] * 5
    assert qqp_batches_after_phase({"sst": 267, "qqp": 422, "sts": 189}) == 267
    assert qqp_batches_after_phase({"sst": 267, "qqp": 100, "sts": 189}) == 100


def test_bad_schedule_and_order_are_named():
    with pytest.raises(ValueError, match="unknown schedule 'random'"):
        epoch_plan("random", COUNTS, ["sst", "qqp", "sts"])
    with pytest.raises(ValueError, match="must name each task"):
        epoch_plan("sequential", COUNTS, ["sst", "qqp"])
