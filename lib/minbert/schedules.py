"""Multitask schedules: which tasks train at each step of an epoch, on an equal budget.

A plan is a list of steps; each step names the tasks whose next batch is used in it.
One task per step means one optimizer step on that task's loss; several tasks mean
their losses are combined in one step (summed, or by PCGrad).

Every schedule spends the same budget, so that the arms of a comparison differ only in
how they spend it: an epoch is `sum(batches)` optimizer steps (one pass over every
train set at the run's batch size) of `batch_size` examples each. A task whose share of
the steps is larger than its batches cycles (a fresh shuffle per pass), and a step that
takes several tasks splits the batch size between them (`batch_sizes`).
"""

from __future__ import annotations

from collections.abc import Sequence

SCHEDULES = ("sequential", "round-robin", "combined", "pcgrad", "proportional")
MIXED = ("combined", "pcgrad")  # schedules whose steps take every task


def _shares(total: int, weights: dict[str, int], order: Sequence[str]) -> dict[str, int]:
    """`total` steps split in proportion to `weights` (largest remainder, ties to the earlier task)."""
    scale = sum(weights[t] for t in order)
    exact = {t: total * weights[t] / scale for t in order}
    shares = {t: int(exact[t]) for t in order}
    left = total - sum(shares.values())
    for t in sorted(order, key=lambda t: (shares[t] - exact[t], list(order).index(t)))[:left]:
        shares[t] += 1
    return shares


def annealed_exponent(epoch: int, epochs: int) -> float:
    """The `proportional` schedule's exponent: 1 in the first epoch (steps in proportion to size), down
    to 0.2 in the last (nearer equal shares), as in Stickland and Murray's annealed sampling (2019)."""
    return 1.0 if epochs <= 1 else 1.0 - 0.8 * (epoch - 1) / (epochs - 1)


def _interleaved(shares: dict[str, int], order: Sequence[str]) -> list[tuple[str, ...]]:
    """Each task's steps spread evenly over the epoch (the k-th of n at (k + 1/2) / n), ties in `order`."""
    slots = sorted(((k + 0.5) / n, list(order).index(task), task)
                   for task, n in shares.items() for k in range(n))
    return [(task,) for _, _, task in slots]


def epoch_plan(schedule: str, batches: dict[str, int], order: Sequence[str],
               qqp_only: bool = False, qqp_cap: bool = False, exponent: float = 1.0) -> list[tuple[str, ...]]:
    """The `sum(batches)` steps of one epoch.

    - `sequential`: blocks in `order`, each task as many steps as it has batches;
    - `round-robin`: the tasks take turns in `order`, one batch each (smaller tasks cycle);
    - `combined`, `pcgrad`: every step takes a (split) batch of every task;
    - `proportional`: each task's share of the steps in proportion to its batches to the power
      `exponent` (see `annealed_exponent`), its steps spread evenly through the epoch, so every
      head keeps up with the encoder (no task is trained only at the start of an epoch);
    - `qqp_only` (the separate QQP phase): every step on QQP;
    - `qqp_cap` (after that phase): QQP's share is cut to the largest other task's, and the
      sequential blocks share the epoch's steps in proportion (the others cycle a little).
    `batches` maps each task to how many batches of the run's batch size it has.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {list(SCHEDULES)}")
    if sorted(order) != sorted(batches):
        raise ValueError(f"task order {list(order)} must name each task of {sorted(batches)} once")
    steps = sum(batches.values())
    if qqp_only:
        return [("qqp",)] * steps
    if schedule in MIXED:
        return [tuple(order)] * steps
    if schedule == "round-robin":
        return [(order[k % len(order)],) for k in range(steps)]
    if schedule == "proportional":
        return _interleaved(_shares(steps, {t: batches[t] ** exponent for t in order}, order), order)
    weights = dict(batches)
    if qqp_cap:
        weights["qqp"] = min(batches["qqp"], max(n for task, n in batches.items() if task != "qqp"))
    shares = _shares(steps, weights, order)
    return [(task,) for task in order for _ in range(shares[task])]


def batch_sizes(schedule: str, batch_size: int, order: Sequence[str]) -> dict[str, int]:
    """Each task's batch size: the run's, or for a step that takes every task, the run's split
    between them (the first tasks in `order` take the remainder), so a step is `batch_size` examples."""
    if schedule not in MIXED:
        return dict.fromkeys(order, batch_size)
    if batch_size < len(order):
        raise ValueError(f"schedule {schedule!r} splits each batch between {len(order)} tasks: "
                         f"batch_size must be at least {len(order)}, got {batch_size}")
    base, extra = divmod(batch_size, len(order))
    return {task: base + (i < extra) for i, task in enumerate(order)}
