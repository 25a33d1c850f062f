"""The study's Optuna studies on the multitask model: search spaces and the objective.

A space turns an Optuna trial into (config updates, MultitaskRun options); the
objective trains one run of the notebook's strategy with them on the trial data and
returns the best epoch's dev score: the mean of the three tasks or one task's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import torch

from minbert.config import MultitaskConfig
from minbert.experiments import MultitaskData, run_strategy
from minbert.models import TASKS
from minbert.multitask import METRICS, mean_score
from minbert.tuning import Space, report_epoch


def adamw_space(trial: optuna.Trial) -> tuple[dict, dict]:
    return {}, {"optimizer": "adamw", "lr": trial.suggest_float("lr", 1e-5, 3e-4, log=True),
                "weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.3, log=True)}


def sophia_space(trial: optuna.Trial) -> tuple[dict, dict]:
    return {}, {"optimizer": "sophia", "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
                "weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.3, log=True),
                "rho": trial.suggest_float("rho", 0.005, 0.2, log=True),
                "hessian_interval": trial.suggest_int("hessian_interval", 2, 20, log=True)}


def sophia_per_task_space(trial: optuna.Trial) -> tuple[dict, dict]:
    """One Sophia per task, each with its own lr, rho and weight decay (the study's setup)."""
    settings = {task: {"lr": trial.suggest_float(f"{task}_lr", 1e-5, 1e-3, log=True),
                       "rho": trial.suggest_float(f"{task}_rho", 0.005, 0.2, log=True),
                       "weight_decay": trial.suggest_float(f"{task}_weight_decay", 1e-4, 0.3, log=True)}
                for task in TASKS}
    return {}, {"optimizer": "sophia", "task_optimizers": True, "task_settings": settings}


def regularisation_space(trial: optuna.Trial) -> tuple[dict, dict]:
    """Per-task dropout before each head, and weight decay."""
    updates = {f"dropout_{task}": trial.suggest_float(f"dropout_{task}", 0.0, 0.5) for task in TASKS}
    return updates, {"weight_decay": trial.suggest_float("weight_decay", 1e-4, 0.3, log=True)}


def smart_space(task: str, defaults: dict[str, Any] | None = None) -> Space:
    """SMART on one task: ball radius, ascent step, initial noise and norm (over `defaults`)."""
    def space(trial: optuna.Trial) -> tuple[dict, dict]:
        settings = {**(defaults or {}),
                    "epsilon": trial.suggest_float("epsilon", 1e-6, 1e-1, log=True),
                    "step_size": trial.suggest_float("step_size", 1e-5, 1e-1, log=True),
                    "noise_var": trial.suggest_float("noise_var", 1e-6, 1e-1, log=True),
                    "norm": trial.suggest_categorical("norm", ["inf", "l2", "l1"])}
        return {}, {"smart": {task: settings}}

    return space


SPACES: dict[str, Space] = {"adamw": adamw_space, "sophia": sophia_space,
                            "sophia-per-task": sophia_per_task_space, "regularisation": regularisation_space}


def score_of(record: dict[str, float], target: str) -> float:
    """The objective: the mean dev score of the three tasks, or one task's dev metric."""
    return mean_score(record) if target == "mean" else float(record[METRICS[target]])


def multitask_objective(cfg: MultitaskConfig, strategy: str, data: MultitaskData, space: Space,
                        notebook: str, device: torch.device, target: str = "mean",
                        base_run_options: dict[str, Any] | None = None) -> Callable[[optuna.Trial], float]:
    """Train one run per trial with the space's settings over `base_run_options`; report each
    epoch's score to the pruner; return the best epoch's score. No checkpoints are written."""
    if target not in ("mean", *METRICS):
        raise ValueError(f"unknown objective {target!r}; use 'mean' or one of {list(METRICS)}")

    def objective(trial: optuna.Trial) -> float:
        updates, run_options = space(trial)
        record, _ = run_strategy(
            cfg.model_copy(update=updates), strategy, data, notebook, device,
            run_name=f"{trial.study.study_name}-trial-{trial.number}",
            run_options={**(base_run_options or {}), **run_options}, checkpoints=False,
            on_epoch=lambda epoch: report_epoch(trial, epoch["epoch"], score_of(epoch, target)))
        trial.set_user_attr("dev", record["dev"])
        return max(score_of(epoch, target) for epoch in record["history"])

    return objective


def tuned_settings(study: optuna.Study, space: Space) -> tuple[dict, dict]:
    """The space's (config updates, run options) at the study's best parameters."""
    return space(optuna.trial.FixedTrial(study.best_params))
