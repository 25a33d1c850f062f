"""One epoch of a multitask run, typed: what the trainer (and the peer) record per epoch and what the
selection rule, tuning's pruner, the tables and the figures read back. The results files store it as
flat JSON keys (`sst_train_loss`, `heldout_sst_acc`, `sts_dev_loss`); only this module spells them, so
a key is never built from a string in one place and parsed back in another. (Part 1's single-task
classifier keeps its own small record: `minbert.part1`.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from minbert import tasks

# Keys of the epoch itself, in the order the trainer writes them.
_SCALARS = ("epoch", "seconds", "bert_frozen", "qqp_only", "lr", "steps", "examples", "members")
# Sophia's diagnostics (`minbert.optim.SophiaG`), stored as `sophia_<name>`.
SOPHIA_NAMES = ("clipped_share", "clipped_share_estimated", "hessian_mean", "rho_half")
# Per-task values, stored as `<task>_<suffix>`.
_PER_TASK = {"train_loss": "train_loss", "task_steps": "steps", "smart_loss": "smart_loss",
             "smart_control": "smart_control", "dev_loss": "dev_loss"}


@dataclass
class Epoch:
    """One epoch's record. Scores are keyed by metric (`sst_acc`), losses and counts by task (`sst`).
    `heldout` holds the scores on the rows carved from train that select the kept epoch; `dev` holds
    dev scores: every epoch's for a run without held-out rows, else only the kept epoch's (dev is then
    evaluated once, for the kept weights). An ensemble's one entry names its `members`."""

    epoch: int
    seconds: float = 0.0
    steps: int | None = None
    examples: int | None = None
    lr: float | None = None
    bert_frozen: bool | None = None
    qqp_only: bool | None = None
    members: list[str] | None = None
    train_loss: dict[str, float] = field(default_factory=dict)
    task_steps: dict[str, int] = field(default_factory=dict)
    smart_loss: dict[str, float] = field(default_factory=dict)
    smart_control: dict[str, float] = field(default_factory=dict)
    sophia: dict[str, float] = field(default_factory=dict)
    heldout: dict[str, float] = field(default_factory=dict)
    heldout_loss: dict[str, float] = field(default_factory=dict)
    heldout_mean: float | None = None
    dev: dict[str, float] = field(default_factory=dict)
    dev_loss: dict[str, float] = field(default_factory=dict)
    dev_mean: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this module does not know (kept as they are)

    @property
    def selection_score(self) -> float:
        """What picks the best epoch: its mean score as the selection rule reads it."""
        return selected_on(self.heldout_mean, self.dev_mean)

    def score(self, metric: str) -> float:
        """One metric as the selection rule reads it: held-out where the epoch has it, else dev."""
        return selected_on(self.heldout.get(metric), self.dev.get(metric))

    def checked_loss(self, task: str) -> float | None:
        """The loss the epoch was checked on: held-out where the run has held-out rows, else dev."""
        return self.heldout_loss.get(task) if self.heldout_loss else self.dev_loss.get(task)

    def set_heldout(self, metrics: dict[str, float]) -> None:
        """Held-out scores and losses from `evaluation.dev_metrics` (metric and `<task>_dev_loss` keys)."""
        scores, losses = _split_metrics(metrics)
        self.heldout, self.heldout_loss = scores, losses
        self.heldout_mean = tasks.mean_score(scores)

    def set_dev(self, metrics: dict[str, float]) -> None:
        """Dev scores and losses from `evaluation.dev_metrics` output."""
        scores, losses = _split_metrics(metrics)
        self.dev, self.dev_loss = scores, losses
        self.dev_mean = tasks.mean_score(scores)

    def to_dict(self) -> dict[str, Any]:
        """The results files' flat form."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _SCALARS if getattr(self, k) is not None}
        out.update({f"sophia_{k}": v for k, v in self.sophia.items()})
        for task in dict.fromkeys([*self.train_loss, *self.task_steps]):
            for attr in ("train_loss", "task_steps", "smart_loss", "smart_control"):
                if task in getattr(self, attr):
                    out[f"{task}_{_PER_TASK[attr]}"] = getattr(self, attr)[task]
        out.update({f"heldout_{m}": v for m, v in self.heldout.items()})
        out.update({f"heldout_{t}_loss": v for t, v in self.heldout_loss.items()})
        if self.heldout_mean is not None:
            out["heldout_mean"] = self.heldout_mean
        out.update(self.dev)
        out.update({f"{t}_dev_loss": v for t, v in self.dev_loss.items()})
        if self.dev_mean is not None:
            out["dev_mean"] = self.dev_mean
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Epoch:
        """An epoch from its flat form; keys of the registry's tasks are parsed, others kept in `extra`."""
        keys = _keys()
        found = cls(epoch=int(values["epoch"]))
        for key, value in values.items():
            if key in _SCALARS:
                setattr(found, key, value)
            elif key in ("heldout_mean", "dev_mean"):
                setattr(found, key, value)
            elif key in keys:
                attr, name = keys[key]
                getattr(found, attr)[name] = value
            else:
                found.extra[key] = value
        return found


def selected_on(heldout: float | None, dev: float | None) -> float:
    """THE selection rule, for every choice (an epoch, a run, an arm, a trial, the headline): the score on
    the held-out rows carved from train; the dev score only where there are none (then dev is both
    chosen on and reported, and the report says so)."""
    if heldout is None and dev is None:
        raise ValueError("nothing to select on: neither a held-out nor a dev score")
    return float(dev if heldout is None else heldout)


def _split_metrics(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    losses = {k.removesuffix("_dev_loss"): v for k, v in metrics.items() if k.endswith("_dev_loss")}
    scores = {k: v for k, v in metrics.items() if not k.endswith("_dev_loss")}
    return scores, losses


def _keys() -> dict[str, tuple[str, str]]:
    """Flat key -> (attribute, task or metric) for every task in the registry, read when called (a task
    added at run time is known)."""
    keys = {f"sophia_{name}": ("sophia", name) for name in SOPHIA_NAMES}
    for name, task in tasks.TASKS.items():
        keys.update({f"{name}_{suffix}": (attr, name) for attr, suffix in _PER_TASK.items()})
        keys[f"heldout_{name}_loss"] = ("heldout_loss", name)
        keys[f"heldout_{task.metric}"] = ("heldout", task.metric)
        keys[task.metric] = ("dev", task.metric)
    return keys


def epochs(history: list[dict[str, Any]]) -> list[Epoch]:
    """A run's history (its results file's list of flat records) as typed epochs."""
    return [Epoch.from_dict(h) for h in history]


def best_epoch(history: list[Epoch]) -> Epoch:
    """The epoch a run keeps: the best selection score, the latest of equals (the weights `best.pt` holds)."""
    top = max(e.selection_score for e in history)
    return [e for e in history if e.selection_score == top][-1]
