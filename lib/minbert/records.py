"""What a run leaves behind: its stamp, typed run records, and results files keyed by notebook AND profile.

A results file `reports/results/<notebook>.<profile>.json` holds
{"notebook", "profile", "stamp": {commit, dirty, params, seed, device, versions,
started, wall_s}, "data": {...}, "runs": [run records], "checks": {...}}; a
notebook's prediction files go to `reports/predictions/<notebook>.<profile>/`. So
cpu, full and smoke runs of one notebook live side by side. `headline` is the one
rule that picks a notebook's headline run, for its findings, the results table and
the index.

A run starts with `start_run`, which claims the notebook's outputs (`minbert.runlock`: a
second run of the same notebook and profile is refused) and stamps it. Its prediction
files go to a staging folder that `save_results` publishes together with the results
file, so the published predictions are always those of the published results: a failed
run leaves the previous set whole, and files of an earlier run never stay beside a
later run's.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from minbert import paths, runlock, tasks
from minbert.epochs import Epoch, epochs, selected_on
from minbert.files import atomic_write_text, remove_partials
from minbert.runtime import Runtime

VERSIONED_PACKAGES = ("minbert", "torch", "transformers", "tokenizers", "numpy", "pandas",
                      "scikit-learn", "optuna", "papermill")


# What is not source: the pages and results, and the README's results section that receiving a GPU run
# rewrites (a git pathspec). A change there leaves a checkout clean.
NOT_SOURCE = (".", ":!reports", ":!README.md")


def git_state(root: Path = paths.PROJECT_ROOT) -> tuple[str | None, bool | None]:
    """The commit checked out and whether the source (`NOT_SOURCE` aside) has uncommitted changes.
    A copy of the tree run elsewhere (a lent GPU machine) names its commit in MINBERT_COMMIT."""
    if os.environ.get("MINBERT_COMMIT"):  # the copy's own .git, if any, may be stale
        dirty = os.environ.get("MINBERT_DIRTY")
        return os.environ["MINBERT_COMMIT"], None if dirty is None else dirty == "1"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", *NOT_SOURCE],
                                cwd=root, capture_output=True, text=True, check=True).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "source tree" if name == "minbert" else "not installed"
    origin = checkpoint_origin()
    if origin:
        versions["checkpoint"] = origin
    return versions


def checkpoint_origin() -> str | None:
    """What the folder standing in for the embedded checkpoint is ($MINBERT_CHECKPOINT), as its
    origin note says: a run on a carried copy says so in its stamp."""
    from minbert.bert import CHECKPOINT_ENV, CHECKPOINT_ORIGIN

    folder = os.environ.get(CHECKPOINT_ENV)
    if not folder:
        return None
    note = Path(folder) / CHECKPOINT_ORIGIN
    return note.read_text().strip() if note.is_file() else folder


class RunStamp:
    """What produced a run: commit, params, seed, device, versions, start and wall time."""

    def __init__(self, params: dict[str, Any], seed: int | None, runtime: Runtime,
                 changed: dict[str, Any] | None = None) -> None:
        self.commit, self.dirty = git_state()
        self.params = params
        self.changed = changed or {}  # the params that differ from the notebook's defaults
        self.seed = seed
        self.device = runtime.describe()
        self.versions = library_versions()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()

    @classmethod
    def of(cls, cfg, runtime: Runtime) -> RunStamp:
        """The stamp of a notebook run: its whole validated config, what of it differs from the
        notebook's defaults (the profile's file and any overrides), and its seed."""
        params, defaults = cfg.model_dump(), type(cfg)().model_dump()
        changed = {k: v for k, v in params.items() if k != "profile" and defaults.get(k) != v}
        return cls(params, getattr(cfg, "seed", None), runtime, changed)

    def as_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "dirty": self.dirty, "params": self.params, "changed": self.changed,
                "seed": self.seed, "device": self.device, "versions": self.versions,
                "started": self.started, "wall_s": round(time.perf_counter() - self._t0, 1)}

    def table(self) -> pd.DataFrame:
        """The stamp as a two-column table for the top of a report."""
        d = self.as_dict()
        rows = [("commit", f"{d['commit']}{' (uncommitted changes)' if d['dirty'] else ''}"),
                ("started (UTC)", d["started"]), ("device", d["device"]),
                ("seed", "-" if d["seed"] is None else d["seed"]),  # 07 trains nothing: no seed
                ("profile", d["params"].get("profile", "-"))]
        rows += [(f"param {key}", str(value)) for key, value in self.changed.items()]  # not the defaults
        rows += [(name, version) for name, version in d["versions"].items()]
        return pd.DataFrame(rows, columns=["", "value"]).set_index("")


@dataclass
class RunRecord:
    """One trained run: its name, settings, dev scores at its best epoch, and every epoch."""

    name: str
    dev: dict[str, float]  # metric key (sst_acc, ...) -> dev score of the best epoch
    best_epoch: int
    history: list[dict]  # one record per epoch: losses, dev metrics, seconds
    config: dict = field(default_factory=dict)  # the settings it ran with
    arm: str | None = None  # the study arm it follows (multitask runs)
    train_sizes: dict[str, int] | None = None
    parameters: int | None = None
    heldout: dict[str, float] | None = None  # the held-out scores (carved from train) it was selected on
    group: str | None = None  # the comparison arm it is one seed of
    dev_sizes: dict[str, int] | None = None  # task -> dev rows its scores are on (a seeded subset is fewer)
    variant_movement: list[dict] | None = None  # attention variants: how far their own parameters moved

    @property
    def mean(self) -> float:
        """The mean of the multitask dev metrics it has."""
        return tasks.mean_score(self.dev)

    @property
    def heldout_mean(self) -> float | None:
        return tasks.mean_score(self.heldout) if self.heldout else None

    @property
    def epochs(self) -> list[Epoch]:
        """The history as typed epochs (`minbert.epochs`)."""
        return epochs(self.history)

    @property
    def seconds(self) -> float:
        return float(sum(h["seconds"] for h in self.history))

    def _total(self, key: str) -> int | None:
        return sum(h[key] for h in self.history) if all(key in h for h in self.history) else None

    @property
    def steps(self) -> int | None:
        """Optimizer steps over the run (its budget); None for records that predate counting them."""
        return self._total("steps")

    @property
    def examples(self) -> int | None:
        """Training examples seen over the run; None for records that predate counting them."""
        return self._total("examples")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, values: dict) -> RunRecord:
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        return cls(**known)


def run_selection_score(run: RunRecord) -> float:
    """A run's mean score as the selection rule reads it (`selected_on`)."""
    return selected_on(run.heldout_mean, run.mean)


def _groups(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.group or run.name, []).append(run)
    return groups


def headline(runs: list[RunRecord], passed_over: set[str] | frozenset = frozenset()) -> RunRecord:
    """THE rule for a notebook's headline run: the arm (a run's `group`; a run without one is its own)
    with the highest mean held-out score (rows carved from train) over its seeds, then that arm's
    run with the highest held-out score; dev is only reported. The arms `passed_over` (the reference's
    results again: `Results.indistinct_arms`) are not candidates. Runs recorded without held-out
    scores (before the held-out split) are chosen by their mean dev score, as they were."""
    if not runs:
        raise ValueError("no runs to choose a headline run from")
    if not all(r.heldout for r in runs):
        return max(runs, key=lambda r: r.mean)
    groups = [group for arm, group in _groups(runs).items() if arm not in passed_over] or \
        list(_groups(runs).values())
    best = max(groups, key=lambda group: sum(map(run_selection_score, group)) / len(group))
    return max(best, key=run_selection_score)


def results_path(notebook: str, profile: str) -> Path:
    return paths.reports_dir(profile) / "results" / f"{notebook}.{profile}.json"


def published_predictions_dir(notebook: str, profile: str) -> Path:
    return paths.reports_dir(profile) / "predictions" / f"{notebook}.{profile}"


def _staging_dir(notebook: str, profile: str) -> Path:
    final = published_predictions_dir(notebook, profile)
    return final.with_name(f".{final.name}.part")


_staging: set[tuple[str, str]] = set()  # the runs this process started


def predictions_dir(notebook: str, profile: str) -> Path:
    """Where a run's prediction files go: the staging folder of a run this process started (published
    with its results file), else the published folder."""
    if (notebook, profile) in _staging:
        return _staging_dir(notebook, profile)
    return published_predictions_dir(notebook, profile)


class OutputError(OSError):
    """A run's outputs cannot be written where they must go."""


def ensure_reports_writable(profile: str | None = None) -> Path:
    """The profile's reports folder, created if needed; a folder that cannot be written stops a run before
    it trains."""
    reports = paths.reports_dir(profile)
    try:
        reports.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{reports}: the reports folder cannot be created ({exc.strerror})") from None
    if not os.access(reports, os.W_OK) or not os.access(reports.parent, os.X_OK):
        raise OutputError(f"{reports}: the reports folder is not writable; nothing was run")
    return reports


def start_run(notebook: str, cfg, runtime: Runtime) -> RunStamp:
    """Claim the notebook's outputs on the config's profile (RunLockedError if another run holds them),
    check that the reports folder can be written, clear what an interrupted run left, and stamp."""
    runlock.claim(notebook, cfg.profile)
    ensure_reports_writable(cfg.profile)
    staging = _staging_dir(notebook, cfg.profile)
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted run of this notebook left
    remove_partials(results_path(notebook, cfg.profile).parent, results_path(notebook, cfg.profile).name)
    _staging.add((notebook, cfg.profile))
    return RunStamp.of(cfg, runtime)


def _publish_predictions(notebook: str, profile: str) -> None:
    if (notebook, profile) not in _staging:
        return
    staging, final = _staging_dir(notebook, profile), published_predictions_dir(notebook, profile)
    if staging.is_dir():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    _staging.discard((notebook, profile))


@dataclass
class Results:
    """A notebook's results file: the run stamp, the data it used, its runs and its checks."""

    notebook: str
    profile: str
    stamp: dict
    data: dict
    runs: list[RunRecord]
    checks: dict = field(default_factory=dict)

    def headline(self) -> RunRecord:
        return headline(self.runs, self.indistinct_arms())

    def indistinct_arms(self) -> set[str]:
        """The arms whose every saved difference from the comparison's reference is negligible (a tuned
        arm whose best trial landed on the defaults): the reference's result again, never a headline."""
        from minbert.comparison import Difference

        verdicts: dict[str, set[str]] = {}
        for saved in self.checks.get("differences", []):
            verdicts.setdefault(saved["arm"], set()).add(Difference.from_dict(saved).verdict)
        return {arm for arm, found in verdicts.items() if found == {"negligible"}}

    def run(self, name: str) -> RunRecord:
        for run in self.runs:
            if run.name == name:
                return run
        raise KeyError(f"{self.notebook}.{self.profile}: no run named {name!r}")

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "profile": self.profile, "stamp": self.stamp, "data": self.data,
                "runs": [r.to_dict() for r in self.runs], "checks": self.checks}

    @classmethod
    def from_dict(cls, values: dict) -> Results:
        return cls(values["notebook"], values["profile"], values["stamp"], values["data"],
                   [RunRecord.from_dict(r) for r in values["runs"]], values.get("checks", {}))

    def save(self) -> Path:
        """Write atomically to results/<notebook>.<profile>.json, then publish the run's prediction
        files beside it; returns the path."""
        path = atomic_write_text(results_path(self.notebook, self.profile),
                                 json.dumps(self.to_dict(), indent=2) + "\n")
        _publish_predictions(self.notebook, self.profile)
        return path


def save_results(notebook: str, profile: str, stamp: RunStamp, data: dict, runs: list[RunRecord],
                 checks: dict | None = None) -> Path:
    """A notebook's results file with its stamp; `checks` holds notebook-level verifications."""
    return Results(notebook, profile, stamp.as_dict(), data, list(runs), checks or {}).save()


def load_results(notebook: str, profile: str) -> Results:
    return Results.from_dict(json.loads(results_path(notebook, profile).read_text()))


def load_all(results_dir: Path | None = None) -> list[Results]:
    """Every results file, in notebook order, each notebook's profiles side by side."""
    folder = results_dir or paths.reports_dir() / "results"
    return [Results.from_dict(json.loads(p.read_text())) for p in sorted(folder.glob("*.*.json"))]
