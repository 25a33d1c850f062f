"""Optuna studies that several workers can share and a kill does not lose.

A study lives in a database: SQLite under `runs/optuna/<study>.db` by default, or
any SQLAlchemy URL (e.g. PostgreSQL, so workers on several machines share one
study). Finished trials are in the database the moment they finish. A worker killed
mid-trial leaves a "running" trial: a worker on the same machine fails it as soon as it
opens the study (its process is gone); elsewhere its heartbeat goes stale and the next
worker fails it. The sampler is seeded TPE; a worker that joins or resumes a study gets a
seed of its own, and a trial whose parameters another trial already holds is skipped, so no
point is trained twice. Workers count finished and running trials before each trial, so
together they finish exactly the number asked for. The pruner stops trials whose per-epoch
dev score falls below the median of earlier trials at the same epoch.

The study's search spaces are here too: a space turns a trial into updates of the
multitask knobs (`config.MultitaskSettings`), and the objective trains one run of the
notebook's arm with them and returns the best epoch's dev score.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import time
import warnings
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from minbert import paths, tasks
from minbert.arms import STUDY_BASES, resolve
from minbert.config import MultitaskSettings
from minbert.data import TaskData
from minbert.epochs import Epoch
from minbert.experiments import run_arm
from minbert.runtime import Runtime
from minbert.training import TrainingError

# Sophia's rho, searched over five decades: on real batches the reference's 0.04 clips every estimated
# coordinate, and half of them step unclipped only near 10 (bias-corrected estimate) to 300 (not).
RHO_RANGE = (0.01, 1000.0)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A space turns a trial into updates of the multitask knobs.
Space = Callable[[optuna.Trial], dict[str, Any]]


def storage_url(study_name: str, storage: str | None = None) -> str:
    """`storage` as given, or a SQLite file named after the study under runs/optuna/."""
    if storage:
        return storage
    folder = paths.runs_dir() / "optuna"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / f'{study_name}.db'}"


def open_study(study_name: str, storage: str | None = None, seed: int = 0, worker: int | None = None,
               direction: str = "maximize", startup_trials: int = 3, heartbeat_s: int = 30,
               fresh: bool = False) -> optuna.Study:
    """Create the study or join it where it exists (same name and storage); `fresh` deletes an
    existing one first, for a report that must not mix in trials of an earlier run.

    The sampler's seed is `seed` (plus `worker`) for a fresh study, so one worker's run is
    reproducible. A worker that joins or resumes a study gets a seed of its own (its worker
    number, or its host and process when none is given, and how many trials the study holds),
    so it does not replay the points other workers or its earlier self already tried. Trials
    left running by a dead process of this machine (a killed worker) are failed at once.
    """
    # Optuna's per-trial INFO lines go to stderr; the trials table shows the same, so keep warnings only.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(study_name, storage)
    if fresh and study_name in optuna.get_all_study_names(url):
        optuna.delete_study(study_name=study_name, storage=url)
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    pruner = optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    for attempt in range(5):
        try:
            with _quiet_experimental():
                rdb = RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                                 grace_period=4 * heartbeat_s)
            study = optuna.create_study(study_name=study_name, storage=rdb, pruner=pruner,
                                        direction=direction, load_if_exists=True)
            break
        except sqlalchemy.exc.SQLAlchemyError:
            # Workers starting together race to create the tables or the study; the loser retries.
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)
    fail_dead_local_trials(study)
    held = len(study.trials)
    if held == 0 and (fresh or worker is not None):
        offset = worker or 0
    else:
        identity = f"{worker if worker is not None else (socket.gethostname(), os.getpid())}/{held}"
        offset = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:4], "big")
    study.sampler = optuna.samplers.TPESampler(seed=seed + offset, n_startup_trials=startup_trials)
    return study


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """Fail the trials left running by a process of this machine that no longer exists (a killed
    worker), without waiting for their heartbeat to go stale; returns their numbers."""
    host = socket.gethostname()
    dead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get("host") == host and "pid" in t.user_attrs and not _alive(t.user_attrs["pid"])]
    for trial in dead:
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    return [t.number for t in dead]


def fail_orphaned_trials(study: optuna.Study, grace_s: float) -> list[int]:
    """Fail the trials running for longer than `grace_s` that no worker ever claimed (no "pid"
    attribute: a worker sets it as its trial starts). A worker killed between creating a trial and
    claiming it leaves one that neither `fail_dead_local_trials` nor Optuna's heartbeat (none was
    recorded) would ever end; returns their numbers."""
    now = datetime.datetime.now()
    orphans = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if "pid" not in t.user_attrs and t.datetime_start is not None
               and (now - t.datetime_start).total_seconds() > grace_s]
    for trial in orphans:
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    return [t.number for t in orphans]


class SkippedTrial(Exception):
    """A trial this worker should not run: its parameters were tried already, or enough trials are
    finished or under way elsewhere. It is recorded as failed, with the reason in its attributes."""


def ensure_new_parameters(trial: optuna.Trial) -> None:
    """Call after a trial's parameters are suggested: a point another trial of the study already
    holds (finished, or running elsewhere) is not trained again."""
    for other in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)):
        if other.number != trial.number and other.params == trial.params:
            trial.set_user_attr("skipped", f"the parameters of trial {other.number}")
            raise SkippedTrial(f"trial {trial.number} repeats the parameters of trial {other.number}")


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int) -> None:
    """Run trials until the study holds `n_trials` finished (completed or pruned) ones, counting
    those from earlier or parallel workers: a resumed or second worker does only what is left.
    Before a trial trains, finished trials plus those running in live workers are counted again, so
    parallel workers do not overshoot the count; where the count stops it short, it waits until the
    trials still running finish or are found dead, and goes on. A trial whose training diverged (NaN or
    Inf loss) is recorded as failed and the study goes on."""
    if finished_trials(study) >= n_trials:
        return
    host, pid = socket.gethostname(), os.getpid()

    def guarded(trial: optuna.Trial) -> float:
        trial.set_user_attr("host", host)
        trial.set_user_attr("pid", pid)
        fail_dead_local_trials(study)
        # finished trials, and those running that started before this one (the earlier trial goes on)
        under_way = [t for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
                     if t.state in FINISHED or t.number < trial.number]
        if len(under_way) >= n_trials:
            study.stop()
            trial.set_user_attr("skipped", "enough trials finished or under way")
            raise SkippedTrial(f"trial {trial.number}: {n_trials} trials are finished or under way")
        return objective(trial)

    storage = study._storage
    interval = getattr(storage, "heartbeat_interval", None) or 1
    grace = getattr(storage, "grace_period", None) or 2 * interval
    while True:
        study.optimize(guarded, callbacks=[MaxTrialsCallback(n_trials, states=FINISHED)],
                       gc_after_trial=True, catch=(TrainingError, SkippedTrial))
        if finished_trials(study) >= n_trials:
            return
        # stopped short: trials counted as under way are still running. Wait for them to finish, or to
        # be found dead (a killed worker's), and then run what is left.
        time.sleep(min(interval, grace))
        with _quiet_experimental():
            optuna.storages.fail_stale_trials(study)
        fail_dead_local_trials(study)
        fail_orphaned_trials(study, grace)


def report_epoch(trial: optuna.Trial, epoch: int, score: float) -> None:
    """Tell the pruner the dev score after an epoch; stop the trial if it says so."""
    trial.report(score, epoch)
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned after epoch {epoch} (score {score:.4f})")


def best_of(study: optuna.Study) -> dict[str, Any]:
    """The best completed trial: number, value and parameters (empty if none completed)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return {}
    best = study.best_trial
    return {"number": best.number, "value": best.value, "params": best.params,
            "user_attrs": best.user_attrs}


def best_line(study: optuna.Study) -> str:
    """The study's best trial in one printed line, its objective at three decimals."""
    best = best_of(study)
    if not best:
        return f"{study.study_name}: no finished trial"
    return (f"{study.study_name}: best objective {best['value']:.3f} (trial {best['number']} of "
            f"{finished_trials(study)} finished)")


def trials_table(study: optuna.Study):
    """Every trial's number, state, value, parameters and duration in seconds, as a DataFrame
    (seconds rather than a timedelta, so the notebooks can round the whole table)."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "duration"))
    frame.columns = [c.removeprefix("params_") for c in frame.columns]
    frame["seconds"] = frame.pop("duration").dt.total_seconds()
    return frame.set_index("number")


MIN_TRIALS_FOR_IMPORTANCE = 10  # below this, importances and parallel coordinates mostly show noise


def plot_study(study: optuna.Study) -> plt.Figure | None:
    """One figure of a study: its optimisation history (each trial's objective and the best so far), then
    one slice per parameter (objective against the value tried, coloured by trial number: one colour bar,
    outside the panels), at most four panels a row. With `MIN_TRIALS_FOR_IMPORTANCE` finished trials or
    more, Optuna's parameter importances and parallel coordinates follow; with fewer, a line says why
    they are left out. None without a finished trial."""
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        return None
    names = list(dict.fromkeys(name for t in trials for name in t.params))
    columns = min(4, 1 + len(names))
    rows = -(-(1 + len(names)) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.9 * rows), squeeze=False,
                             layout="constrained")
    numbers = np.array([t.number for t in trials])
    values = np.array([t.value for t in trials])
    running = np.maximum if study.direction == optuna.study.StudyDirection.MAXIMIZE else np.minimum
    best = running.accumulate(values)
    history = axes.flat[0]
    history.plot(numbers, values, "o", color="tab:blue", label="trial")
    history.step(numbers, best, where="post", color="tab:red", label="best so far")
    history.set(title="history", xlabel="trial", ylabel="objective")
    history.xaxis.set_major_locator(MaxNLocator(integer=True))
    history.legend(fontsize=10)
    colours = None
    for ax, name in zip(axes.flat[1:], names, strict=False):
        tried = [t for t in trials if name in t.params]
        distribution = tried[0].distributions[name]
        xs = [t.params[name] for t in tried]
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            choices = list(distribution.choices)
            xs = [choices.index(x) for x in xs]
            ax.set_xticks(range(len(choices)), [str(c) for c in choices])
            ax.set_xlim(-0.5, len(choices) - 0.5)
        colours = ax.scatter(xs, [t.value for t in tried], c=[t.number for t in tried], cmap="viridis",
                             vmin=numbers.min(), vmax=max(numbers.max(), numbers.min() + 1))
        if getattr(distribution, "log", False):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(numticks=4))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(title=name, xlabel=name)
    for ax in axes.flat[1 + len(names):]:
        ax.set_visible(False)
    if colours is not None:
        bar = fig.colorbar(colours, ax=axes.ravel().tolist(), label="trial", shrink=0.8)
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    fig.suptitle(f"{study.study_name}: {len(trials)} finished trials")
    if len(trials) < MIN_TRIALS_FOR_IMPORTANCE or len(names) < 2:
        print(f"{study.study_name}: parameter importances and parallel coordinates are left out: they need "
              f"{MIN_TRIALS_FOR_IMPORTANCE} finished trials and two parameters or more, and this study has "
              f"{len(trials)} and {len(names)}.")
        return fig
    from optuna.visualization import matplotlib as ovm

    with _quiet_experimental():
        for title, plot in (("importances", ovm.plot_param_importances),
                            ("parallel coordinates", ovm.plot_parallel_coordinate)):
            result = plot(study)
            axes_of = result if hasattr(result, "figure") else result.flat[0]
            axes_of.figure.set_size_inches(10, 3.8)
            axes_of.figure.suptitle(f"{study.study_name}: {title}")
            axes_of.figure.subplots_adjust(left=0.2, right=0.85, top=0.85)
    return fig


# ----------------------------------------------------------------------------- the study's spaces

def adamw_space(trial: optuna.Trial) -> dict[str, Any]:
    return {"optimizer": "adamw", "lr": trial.suggest_float("lr", 1e-5, 3e-4, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.3, log=True)}


def sophia_space(trial: optuna.Trial) -> dict[str, Any]:
    return {"optimizer": "sophia", "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.3, log=True),
            "rho": trial.suggest_float("rho", *RHO_RANGE, log=True),
            "hessian_interval": trial.suggest_int("hessian_interval", 2, 20, log=True)}


def sophia_per_task_space(trial: optuna.Trial) -> dict[str, Any]:
    """One Sophia per task, each with its own lr, rho and weight decay (the study's setup)."""
    settings = {task: {"lr": trial.suggest_float(f"{task}_lr", 1e-5, 1e-3, log=True),
                       "rho": trial.suggest_float(f"{task}_rho", *RHO_RANGE, log=True),
                       "weight_decay": trial.suggest_float(f"{task}_weight_decay", 1e-4, 0.3, log=True)}
                for task in tasks.MULTITASK}
    return {"optimizer": "sophia", "task_optimizers": True, "task_settings": settings}


def regularisation_space(trial: optuna.Trial) -> dict[str, Any]:
    """Per-task dropout before each head, and weight decay."""
    dropout = {task: trial.suggest_float(f"dropout_{task}", 0.0, 0.5) for task in tasks.MULTITASK}
    return {"dropout": dropout, "weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.3, log=True)}


def smart_space(task: str, defaults: dict[str, Any] | None = None) -> Space:
    """SMART on one task over `defaults`: the perturbation's size (in the defaults' units: relative to
    the embeddings' scale where they say so), the ascent step tied to it, the weight and the norm."""
    def space(trial: optuna.Trial) -> dict[str, Any]:
        epsilon = trial.suggest_float("epsilon", 3e-3, 0.3, log=True)
        settings = {**(defaults or {}), "epsilon": epsilon, "step_size": epsilon,
                    "weight": trial.suggest_float("weight", 0.1, 3.0, log=True),
                    "norm": trial.suggest_categorical("norm", ["inf", "l2"])}
        return {"smart": {task: settings}}

    return space


SPACES: dict[str, Space] = {"adamw": adamw_space, "sophia": sophia_space,
                            "sophia-per-task": sophia_per_task_space, "regularisation": regularisation_space}


def study_space(cfg: MultitaskSettings, name: str) -> Space:
    """The search space of a notebook's study: 04's are named by their task (SMART on it, over the
    notebook's SMART parameters), 03's by their optimizer idea (`SPACES`)."""
    if name in tasks.MULTITASK:
        return smart_space(name, cfg.smart_defaults())
    return SPACES[name]


def study_base(cfg: MultitaskSettings, name: str) -> dict[str, Any]:
    """The knob updates a study's trials start from (`minbert.arms.STUDY_BASES`; none for 04's)."""
    return resolve(dict(STUDY_BASES.get(name, {})), cfg)


def tuned_by_study(cfg: MultitaskSettings, studies: dict[str, optuna.Study]) -> dict[str, dict[str, Any]]:
    """Each study's knob updates at its best trial: what the tuned arms of `minbert.arms` run with."""
    return {name: tuned_settings(study, study_space(cfg, name)) for name, study in studies.items()}


def tuned_smart(cfg: MultitaskSettings, tuned: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """04's SMART per task as tuned (a record): each task's study's best settings, the notebook's SMART
    parameters for a task no study ran on."""
    smart = {task: cfg.smart_defaults() for task in cfg.smart_tasks}
    for found in tuned.values():
        smart.update(found["smart"])
    return smart


def score_of(epoch: Epoch, target: str) -> float:
    """The objective on one epoch, read by the selection rule (`epochs.selected_on`): the mean score of
    the tasks, or one task's metric."""
    return epoch.selection_score if target == "mean" else epoch.score(tasks.get(target).metric)


def multitask_objective(cfg: MultitaskSettings, arm: str, data: TaskData, space: Space, notebook: str,
                        runtime: Runtime, target: str = "mean",
                        base: dict[str, Any] | None = None) -> Callable[[optuna.Trial], float]:
    """Train one run of `arm` per trial with the space's knob updates over `base`; report each
    epoch's score to the pruner; return the best epoch's score. No checkpoints are written."""
    if target not in ("mean", *tasks.MULTITASK):
        raise ValueError(f"unknown objective {target!r}; use 'mean' or one of {list(tasks.MULTITASK)}")

    def objective(trial: optuna.Trial) -> float:
        updates = {**(base or {}), **space(trial)}
        ensure_new_parameters(trial)
        record = run_arm(
            cfg, arm, data, runtime, notebook=notebook, name=f"{trial.study.study_name}-trial-{trial.number}",
            updates=updates, checkpoints=False,
            on_epoch=lambda epoch: report_epoch(trial, epoch.epoch, score_of(epoch, target))).record
        trial.set_user_attr("dev", record.dev)
        if record.heldout:
            trial.set_user_attr("heldout", record.heldout)
        return max(score_of(epoch, target) for epoch in record.epochs)

    return objective


def tuned_settings(study: optuna.Study, space: Space) -> dict[str, Any]:
    """The space's knob updates at the study's best parameters."""
    return space(optuna.trial.FixedTrial(study.best_params))


class _quiet_experimental:
    """Silence Optuna's 'experimental feature' warnings for the calls inside."""

    def __enter__(self):
        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    def __exit__(self, *exc):
        return self._catcher.__exit__(*exc)

