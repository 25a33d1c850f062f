"""Multitask schedules: which tasks train at each step of an epoch.

A plan is a list of steps; each step names the tasks whose next batch is used in
it. One task per step means one optimizer step on that task's loss; several
tasks mean their losses are combined in one step (summed, or by PCGrad).
"""

from __future__ import annotations

from collections.abc import Sequence

SCHEDULES = ("sequential", "round-robin", "combined", "pcgrad")


def epoch_plan(schedule: str, batches: dict[str, int], order: Sequence[str],
               qqp_only: bool = False) -> list[tuple[str, ...]]:
    """The steps of one epoch.

    - `sequential`: every batch of the first task in `order`, then of the next, ...
    - `round-robin`: as many batches from each task as the smallest task has,
      interleaved one by one in `order`;
    - `combined`, `pcgrad`: each step takes one batch of every task, as many
      steps as the smallest task has batches;
    - `qqp_only` (the separate QQP phase): every QQP batch, nothing else.
    `batches` maps each task to how many batches it offers this epoch.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {list(SCHEDULES)}")
    if sorted(order) != sorted(batches):
        raise ValueError(f"task order {list(order)} must name each task of {sorted(batches)} once")
    if qqp_only:
        return [("qqp",)] * batches["qqp"]
    if schedule == "sequential":
        return [(task,) for task in order for _ in range(batches[task])]
    smallest = min(batches.values())
    if schedule == "round-robin":
        return [(task,) for _ in range(smallest) for task in order]
    return [tuple(order)] * smallest


def qqp_batches_after_phase(batches: dict[str, int]) -> int:
    """After the QQP-only phase, QQP is subsampled to the size of the largest other task."""
    return min(batches["qqp"], max(n for task, n in batches.items() if task != "qqp"))
