"""Run the study's arms: one multitask run of an arm, and a comparison of arms over seeds.

`run_arm` trains one arm from the pretrained checkpoint and returns its typed record and model;
`run_comparison` runs every arm of a comparison (`minbert.arms.comparison_arms`) once per seed on
the same data, with the same budget. Notebook 06's final model is `minbert.final`; Part 1's
classifier is `minbert.part1`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from minbert import paths, tasks
from minbert.arms import comparison_arms, reference_arm
from minbert.attention import variant_movement
from minbert.bert import BertModel, count_parameters
from minbert.comparison import ZERO_SHOT, Comparison
from minbert.config import MultitaskComparisonConfig, MultitaskSettings, arm_settings
from minbert.data import TaskData, load_tasks
from minbert.epochs import Epoch, best_epoch
from minbert.evaluation import save_predictions
from minbert.finished import load_finished, save_finished
from minbert.models import MultitaskBert
from minbert.pretrained_view import zero_shot
from minbert.records import RunRecord, predictions_dir
from minbert.runtime import Runtime
from minbert.training import Trained, train_multitask


def load_multitask(cfg: MultitaskSettings, tokenizer) -> TaskData:
    """SST, QQP and STS as the settings say: sizes, seed, strictness, and pairs read together in
    cross-encoder mode."""
    return load_tasks(tokenizer, cfg.max_length, train_limits=cfg.train_limits, dev_limits=cfg.dev_limits,
                      test_limit=cfg.test_limit, seed=cfg.seed, strict=cfg.strict_data,
                      cross_encoder=cfg.mode == "cross-encoder", heldout_sizes=cfg.heldout_sizes)


def build_model(settings: MultitaskSettings) -> MultitaskBert:
    """The multitask model from the pretrained checkpoint, seeded, as the settings describe it."""
    torch.manual_seed(settings.seed)
    layers = {} if settings.num_layers is None else {"num_hidden_layers": settings.num_layers}
    bert = BertModel.from_pretrained(settings.checkpoint, attention=settings.attention, **layers)
    return MultitaskBert(bert, pooling=settings.pooling, head_hidden=settings.head_hidden,
                         dropout=dict(settings.dropout), shared_similarity=settings.shared_similarity,
                         mode=settings.mode)


@dataclass
class ArmRun:
    """One trained run of an arm: its typed record, its model (the kept epoch's weights; None for a
    finished run taken from its file without them) and what its trainer left beside them
    (`training.Trained`: dev outputs and predictions, snapshots)."""

    record: RunRecord
    model: MultitaskBert | None
    trained: Trained


def epoch_checkpoints() -> bool:
    """Whether runs write `last.pt` after every epoch, to resume a killed run on this machine: yes,
    unless MINBERT_EPOCH_CHECKPOINTS=0 (the GPU run: a lease's end takes its files along, and what
    continues on the next lease is the finished runs, `minbert.finished`)."""
    return os.environ.get("MINBERT_EPOCH_CHECKPOINTS", "1") != "0"


def run_arm(cfg: MultitaskSettings, arm: str, data: TaskData, runtime: Runtime, *, notebook: str,
            name: str | None = None, updates: dict[str, Any] | None = None, checkpoints: bool = True,
            keep_snapshots: bool = False, on_epoch: Callable[[Epoch], None] | None = None,
            need_model: bool = True, keep_outputs: bool = False) -> ArmRun:
    """Train one arm from the pretrained checkpoint.

    `updates` change knobs over the arm's (an attention variant, a tuned optimizer, a run seed...);
    `name` (default: the arm) tells apart runs of one arm with other settings. Checkpoints
    go to runs/<notebook>/<profile>/<name>/, TensorBoard logs to runs/tensorboard/; without
    `checkpoints` (tuning trials) nothing is written. `on_epoch` sees each epoch's record;
    `keep_snapshots` keeps every epoch's weights (CPU copies) for a checkpoint ensemble.
    A run with checkpoints leaves its finished-run file as it ends (`minbert.finished`); with
    `resume`, a run that has one with the same settings is taken from it, not trained again: with its
    kept weights on the runtime's device where they are on this machine, or without them (model None)
    where the caller does not `need_model` (then nothing is loaded). The file keeps the dev predictions
    (what a comparison resamples) and, with `keep_outputs`, the raw dev outputs (what an ensemble averages).
    """
    name = name or arm
    settings = arm_settings(cfg, arm, updates)
    checkpoint_dir = paths.runs_dir() / notebook / settings.profile / name if checkpoints else None
    if checkpoint_dir is not None and settings.resume and not keep_snapshots:
        found = load_finished(notebook, settings, name)
        weights = checkpoint_dir / "best.pt"
        if found is not None and (weights.is_file() or not need_model):
            model = _with_weights(settings, weights, runtime.device) if need_model else None
            return ArmRun(found[0], model, found[1])
    model = build_model(settings)
    if checkpoint_dir is not None and not settings.resume and checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    trained = train_multitask(model, data.train, data.dev, settings, heldout=data.heldout or None, name=name,
                              runtime=runtime, checkpoint_dir=checkpoint_dir,
                              resume=settings.resume and checkpoints, keep_snapshots=keep_snapshots,
                              on_epoch=on_epoch, epoch_checkpoints=epoch_checkpoints(),
                              log_dir=paths.runs_dir() / "tensorboard" / notebook / settings.profile / name)
    best = best_epoch(trained.history)  # the epoch whose weights the trainer kept
    knobs = set(MultitaskSettings.model_fields) - {"profile", "device", "strict_data", "resume"}
    config = settings.model_dump(include=knobs)
    metrics = tasks.metrics().values()
    heldout = {m: best.heldout[m] for m in metrics} if data.heldout else None
    record = RunRecord(name=name, arm=arm, dev={m: best.dev[m] for m in metrics}, heldout=heldout,
                       best_epoch=best.epoch, history=[e.to_dict() for e in trained.history],
                       config={**config, "precision": runtime.precision},
                       train_sizes={task: len(t) for task, t in data.train.items()},
                       dev_sizes={task: len(t) for task, t in data.dev.items()},
                       parameters=count_parameters(model), variant_movement=variant_movement(model) or None)
    if checkpoint_dir is not None:
        save_finished(notebook, settings, record, trained, keep_outputs)
    return ArmRun(record, model, trained)


def run_comparison(cfg: MultitaskComparisonConfig, data: TaskData, runtime: Runtime, *, notebook: str,
                   tuned: dict[str, dict[str, Any]] | None = None,
                   runs_under: str | None = None) -> Comparison:
    """Every arm the notebook's settings ask for (`minbert.arms.comparison_arms`, with the Optuna
    studies' `tuned` settings) once per seed of `cfg.run_seeds()`, on the same data, measured against
    the notebook's reference arm. Runs are named `<label>-seed<seed>`, their checkpoints kept under
    `runs_under` (default: the notebook)."""
    arms = comparison_arms(notebook, cfg, tuned)
    gold = {task: np.asarray(split.labels, dtype=float) for task, split in data.dev.items()}
    comparison = Comparison(reference_arm(notebook, cfg), gold)
    if cfg.mode == "bi-encoder":  # the untrained checkpoint scores a pair apart: the bi-encoder's own floor
        layers = {} if cfg.num_layers is None else {"num_hidden_layers": cfg.num_layers}
        scores = zero_shot(BertModel.from_pretrained(cfg.checkpoint, **layers), data.dev, cfg.eval_batch_size,
                           runtime)
        if scores:
            comparison.floors[ZERO_SHOT] = scores
    runs = [(label, arm, {**(updates or {}), "seed": seed}, f"{label}-seed{seed}")
            for seed in cfg.run_seeds() for label, (arm, updates) in arms.items()]
    if cfg.parallel_runs > 1:  # trained in worker processes, each leaving its finished-run file
        train_together(cfg, [(arm, name, updates) for _, arm, updates, name in runs], data, runtime,
                       runs_under or notebook, cfg.parallel_runs)
    taken = {"resume": True} if cfg.parallel_runs > 1 else {}  # the workers' files, not trained again
    for label, arm, updates, name in runs:
        run = run_arm(cfg, arm, data, runtime, notebook=runs_under or notebook, name=name,
                      updates={**updates, **taken}, need_model=False)
        comparison.add(label, run.record, run.trained.dev_predictions)
    return comparison


def _follow_parent(parent: int) -> None:
    """A worker's start: end when the process that started it ends (a GPU job killed at its cap), rather
    than train on, unseen, in the next job's time."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _train_one(job: tuple) -> str:
    """A worker process's run (top level, so that a spawned process can be handed it)."""
    cfg, arm, name, updates, data, runtime, notebook, threads = job
    torch.set_num_threads(threads)
    run_arm(cfg, arm, data, runtime, notebook=notebook, name=name, updates=updates, need_model=False)
    return name


def train_together(cfg: MultitaskSettings, runs: list[tuple[str, str, dict[str, Any]]], data: TaskData,
                   runtime: Runtime, notebook: str, processes: int) -> list[str]:
    """Train the runs (arm, name, updates) `processes` at a time, each in a fresh process: on one GPU the
    small runs of a comparison overlap instead of each leaving most of it idle; on a CPU each process
    takes its share of the cores. Each run leaves its finished-run file (`minbert.finished`), which is
    what the caller reads; a run that fails raises here, as it would alone. Spawned, not forked: CUDA
    cannot be used in a forked process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, torch.get_num_threads() // processes)
    jobs = [(cfg, arm, name, updates, data, runtime, notebook, threads) for arm, name, updates in runs]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_follow_parent, initargs=(os.getpid(),)) as pool:
        return list(pool.map(_train_one, jobs))


MODEL_KNOBS = ("mode", "attention", "pooling", "head_hidden", "dropout", "shared_similarity")


def load_kept_model(cfg: MultitaskSettings, record: RunRecord, notebook: str, data: TaskData | None = None,
                    runtime: Runtime | None = None) -> MultitaskBert:
    """A finished run's kept weights (its best epoch) from runs/<notebook>/<profile>/<name>/best.pt,
    in a model built as the run's record says, on the runtime's device. Where they are missing (the run
    was taken from its finished-run file on another machine) and `data` is given, the run is trained
    again as its record says (the same weights on a CPU; on a GPU, up to its kernels' nondeterminism)."""
    runtime = runtime or Runtime()
    path = paths.runs_dir() / notebook / cfg.profile / record.name / "best.pt"
    if not path.is_file() and data is not None:
        knobs = {k: v for k, v in record.config.items() if k in MultitaskSettings.model_fields}
        return run_arm(cfg, record.arm, data, runtime, notebook=notebook, name=record.name,
                       updates={**knobs, "resume": False}).model
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no kept weights of run {record.name!r}; run the notebook again")
    settings = arm_settings(cfg, record.arm, {k: record.config[k] for k in MODEL_KNOBS})
    return _with_weights(settings, path, runtime.device)


def _with_weights(settings: MultitaskSettings, path, device: torch.device) -> MultitaskBert:
    """The model the settings describe, with the weights saved at `path` (a run's best.pt), on `device`
    (read on the host first: a checkpoint loaded straight onto a GPU would hold a second copy there)."""
    model = build_model(settings)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    return model.to(device)


def save_run_predictions(model: MultitaskBert, data: TaskData, name: str, notebook: str,
                         cfg: MultitaskSettings, runtime: Runtime) -> dict[str, list]:
    """Dev and test-student predictions of every task as CSV (id, label) under
    reports/predictions/<notebook>.<profile>/; returns the dev predictions per task."""
    return save_predictions(model, {"dev": data.dev, "test": data.test},
                            predictions_dir(notebook, cfg.profile), name, cfg.eval_batch_size, runtime)
