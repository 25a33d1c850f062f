"""Optuna studies in SQLite: two workers share one study; a killed worker loses no finished trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from minbert import paths
from minbert.tuning import (
    best_line,
    best_of,
    finished_trials,
    open_study,
    run_trials,
    storage_url,
    trials_table,
)

WORKER = textwrap.dedent("""
    import sys, time
    import optuna
    from minbert.tuning import ensure_new_parameters, open_study, report_epoch, run_trials

    url, worker, n_trials, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # "none": the worker number is not given, as the notebooks do not give one
    study = open_study("shared", storage=url, seed=7, worker=None if worker == "none" else int(worker),
                       heartbeat_s=1, startup_trials=2)

    def objective(trial):
        x = trial.suggest_float("x", -1.0, 1.0)
        ensure_new_parameters(trial)
        trial.set_user_attr("worker", worker)
        for epoch in range(3):
            time.sleep(pause)
            report_epoch(trial, epoch, -(x - 0.3) ** 2 + 0.01 * epoch)
        return -(x - 0.3) ** 2 + 0.02

    run_trials(study, objective, n_trials)
""")


def start_worker(script: Path, url: str, worker: int | str, n_trials: int, pause: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT / "lib")}
    return subprocess.Popen([sys.executable, str(script), url, str(worker), str(n_trials), str(pause)],
                            env=env, stderr=subprocess.PIPE, text=True)


def finished_so_far(url: str) -> int:
    """Finished trials of the worker's study, 0 while the worker is still creating the tables:
    the poll must not race it to create them (that race is the worker's to handle, not ours)."""
    if not Path(url.removeprefix("sqlite:///")).exists():
        return 0
    try:
        return finished_trials(optuna.load_study(study_name="shared", storage=url))
    except (sqlalchemy.exc.SQLAlchemyError, KeyError):
        return 0


@pytest.fixture
def worker_script(tmp_path) -> Path:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return script


def test_default_storage_is_sqlite_under_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MINBERT_RUNS_DIR", str(tmp_path))
    assert storage_url("s1") == f"sqlite:///{tmp_path / 'optuna' / 's1.db'}"
    assert storage_url("s1", "postgresql://host/db") == "postgresql://host/db"


def test_two_workers_share_one_study(tmp_path, worker_script):
    """Two workers started together on a new study, neither given a worker number (as the notebooks
    run them): every trial recorded once, exactly the trials asked for, no point trained twice."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    workers = [start_worker(worker_script, url, "none", 12, 0.05) for _ in range(2)]
    for proc in workers:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    trials = optuna.load_study(study_name="shared", storage=url).get_trials()
    assert [t.number for t in trials] == list(range(len(trials)))  # each recorded once
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 12
    assert all("skipped" in t.user_attrs for t in trials if t.state == TrialState.FAIL)
    assert len({t.user_attrs["pid"] for t in finished}) == 2  # both workers contributed
    assert any(t.state == TrialState.PRUNED for t in trials)
    assert len({t.params["x"] for t in finished}) == len(finished)  # no point trained twice


def test_a_trial_left_running_by_a_worker_killed_before_claiming_it_is_failed_and_replaced(tmp_path):
    """A worker killed between creating a trial and claiming it (no pid, no heartbeat) leaves it running
    for ever; it counts as under way, so the next worker stopped one trial short. Now it waits out the
    grace period (4 s at a 1 s heartbeat), fails the orphan and runs the trial that is left."""
    from minbert.tuning import fail_dead_local_trials

    url = f"sqlite:///{tmp_path / 'orphan.db'}"
    study = open_study("orphan", storage=url, heartbeat_s=1, startup_trials=1)
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna's: heartbeats are for its optimize loop
        orphan = study.ask()  # created, never claimed: its worker died at once
    assert fail_dead_local_trials(study) == []  # nothing says whose it is
    run_trials(study, lambda trial: trial.suggest_float("x", 0, 1), 3)
    states = [t.state for t in study.get_trials()]
    assert finished_trials(study) == 3 and TrialState.RUNNING not in states
    assert states[orphan.number] == TrialState.FAIL


def test_killed_worker_resumes_without_losing_or_repeating_trials(tmp_path, worker_script):
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    proc = start_worker(worker_script, url, 0, 10, 0.3)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if finished_so_far(url) >= 3:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.state, t.value) for t in optuna.load_study(study_name="shared", storage=url).trials
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    assert len(before) >= 3
    resumed = start_worker(worker_script, url, 0, 10, 0.01)  # the same worker again, at once
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=url)
    trials = study.get_trials()
    assert finished_trials(study) == 10
    for number, (state, value) in before.items():
        assert (trials[number].state, trials[number].value) == (state, value)
    killed = [t for t in trials if t.state == TrialState.FAIL and "skipped" not in t.user_attrs]
    assert len(killed) <= 1  # the trial the kill interrupted, failed at once on resume
    assert all(t.state != TrialState.RUNNING for t in trials)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len({t.params["x"] for t in finished}) == 10  # the resumed worker did not replay points


def test_fresh_study_and_best_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    study = open_study("f", storage=url, seed=0)
    run_trials(study, lambda t: -abs(t.suggest_float("x", 0, 1) - 0.5), 4)
    run_trials(study, lambda t: 0.0, 4)  # already has 4 finished trials: runs none
    assert finished_trials(study) == 4 and best_of(study)["value"] == max(t.value for t in study.trials)
    best = max(study.trials, key=lambda t: t.value)
    assert best_line(study) == f"f: best objective {best.value:.3f} (trial {best.number} of 4 finished)"
    table = trials_table(study)
    assert list(table.columns) == ["state", "value", "x", "seconds"] and (table["seconds"] >= 0).all()
    assert table["value"].tolist() == [t.value for t in study.trials]
    assert finished_trials(open_study("f", storage=url, fresh=True)) == 0


def test_a_diverged_trial_fails_and_the_study_goes_on(tmp_path):
    from minbert.training import TrainingError

    study = open_study("d", storage=f"sqlite:///{tmp_path / 'd.db'}", seed=0)

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 1:
            raise TrainingError("loss is nan at step 3")
        return x

    run_trials(study, objective, 3)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


@pytest.mark.parametrize("n_trials", [3, 12])
def test_study_figure_keeps_four_panels_a_row_and_importances_for_enough_trials(n_trials, capsys):
    import matplotlib.pyplot as plt

    from minbert.tuning import MIN_TRIALS_FOR_IMPORTANCE, plot_study

    plt.close("all")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-3, log=True) * 100 + t.suggest_int("k", 2, 20)
                   + len(t.suggest_categorical("norm", ["inf", "l2"])) + t.suggest_float("rho", 0.0, 1.0)
                   + t.suggest_float("wd", 1e-4, 0.3, log=True), n_trials=n_trials)
    fig = plot_study(study)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert len(panels) == 6  # the history and one slice per parameter
    rows = {round(ax.get_position().y0, 2) for ax in panels}
    assert len(rows) == 2  # 4 + 2: at most four a row
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 1
    colorbar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
    assert all(colorbar.get_position().x0 >= ax.get_position().x1 for ax in panels)  # outside the panels
    assert fig.axes[1].get_xscale() == "log"  # lr was searched on a log scale
    enough = n_trials >= MIN_TRIALS_FOR_IMPORTANCE
    assert len(plt.get_fignums()) == (3 if enough else 1)
    assert ("are left out" in capsys.readouterr().out) != enough
    plt.close("all")
