"""Notebook 06's final model: the recipe's runs, their ensembles, the pretrained view blended in,
the ablation of the recipe's levers and the learning and model-size curves.

`final_model` is 06's whole training step: one run of the recipe, or `ensemble_size` runs
whose members are chosen on held-out rows and averaged (the seed ensemble), beside the
checkpoint ensemble where it can add something, with the pretrained view where asked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from minbert import tasks
from minbert.arms import FINAL_AIMS
from minbert.bert import BertModel, count_parameters, load_tokenizer
from minbert.comparison import Comparison, Difference, paired_difference
from minbert.config import arm_settings, consecutive_seeds
from minbert.data import TaskData
from minbert.ensemble import Ensemble, average_outputs, choose_members, scores, task_outputs
from minbert.epochs import Epoch
from minbert.evaluation import save_predictions, write_predictions
from minbert.experiments import build_model, load_multitask, run_arm, run_comparison
from minbert.models import MultitaskBert
from minbert.notebook_settings import FinalConfig
from minbert.pretrained_view import Blended, PretrainedView, blend_outputs, choose_weights
from minbert.records import RunRecord, predictions_dir
from minbert.runtime import Runtime

SEED_ENSEMBLE, CHECKPOINT_ENSEMBLE = "seed ensemble", "checkpoint ensemble"
WITH_VIEW, WITHOUT_VIEW = "with the pretrained view", "without it"  # the blend's paired differences


@dataclass
class FinalModel:
    """Notebook 06's trained model (one run, or an ensemble of several) with what its report needs."""

    record: RunRecord
    model: MultitaskBert | Ensemble | Blended
    data: TaskData
    tokenizer: Any
    dev_outputs: dict[str, torch.Tensor]  # raw outputs on every dev row, computed once
    members: list[RunRecord] = field(default_factory=list)  # every run trained, chosen or not
    chosen: list[str] = field(default_factory=list)  # the final model's members
    selection_trace: list[float] = field(default_factory=list)  # the seed ensemble's held-out mean...
    selected: list[str] = field(default_factory=list)  # ...after each of these runs was added
    # with `ensemble_epochs` > 1: each candidate ensemble's members, held-out and dev scores, the one
    # kept, and the checkpoint ensemble minus the seed ensemble on dev (paired intervals)
    candidates: dict[str, dict] = field(default_factory=dict)
    kept_candidate: str | None = None
    candidates_skipped: str | None = None  # why no checkpoint ensemble was scored, where none could be
    candidate_differences: list[Difference] = field(default_factory=list)
    # with `pretrained_view`: the view's weight per task (chosen on held-out), the held-out and dev scores
    # without and with it, and with it minus without on dev (paired intervals)
    blend: dict = field(default_factory=dict)
    blend_differences: list[Difference] = field(default_factory=list)
    # every run's own dev predictions (as the files hold them), by run name: a single run against the peer
    member_dev_predictions: dict[str, dict[str, list]] = field(default_factory=dict)

    @property
    def dev_predictions(self) -> dict[str, list]:
        """Dev predictions as the files hold them: class index, 0/1, or the score."""
        return {task: tasks.get(task).predicted_labels(out) for task, out in self.dev_outputs.items()}

    @property
    def runs(self) -> list[RunRecord]:
        """Every run trained, then the ensemble's record where the final model is one."""
        return [*self.members, *([self.record] if self.record not in self.members else [])]

    def aims_met(self) -> dict[str, bool]:
        return {metric: bool(self.record.dev[metric] >= aim) for metric, aim in FINAL_AIMS.items()}

    def checks(self) -> dict:
        return {"aims": FINAL_AIMS, "aims_met": self.aims_met(), "ensemble": self.chosen,
                "selection_trace": self.selection_trace, "selected": self.selected,
                "candidates": self.candidates,
                "kept_candidate": self.kept_candidate, "candidates_skipped": self.candidates_skipped,
                "candidate_differences": [d.to_dict() for d in self.candidate_differences],
                "blend": self.blend, "blend_differences": [d.to_dict() for d in self.blend_differences]}


def _ensemble_record(used: list[RunRecord], chosen: list[str], cfg: FinalConfig,
                     heldout: dict[str, float], dev: dict[str, float], blend: dict[str, float] | None = None,
                     view_parameters: int = 0) -> RunRecord:
    """The final model's record when it is more than one run's kept epoch (an ensemble, or a run with the
    pretrained view's `blend` weights): its held-out and dev scores; one history entry summing the
    training of the runs its members come from (`used`); its parameters, the members' and the view's."""
    epochs = [e for m in used for e in m.epochs]
    entry = Epoch(0, seconds=sum(e.seconds for e in epochs), steps=sum(e.steps or 0 for e in epochs),
                  examples=sum(e.examples or 0 for e in epochs), members=chosen, dev=dict(dev),
                  heldout=dict(heldout), heldout_mean=tasks.mean_score(heldout))
    return RunRecord(name="final", arm=cfg.arm, dev=dev, heldout=heldout, best_epoch=0,
                     history=[entry.to_dict()],
                     config={**used[0].config, "ensemble": chosen, **({"blend": blend} if blend else {})},
                     train_sizes=used[0].train_sizes,
                     dev_sizes=used[0].dev_sizes,
                     parameters=sum(m.parameters or 0 for m in used) + view_parameters)


def _write_final_predictions(model: MultitaskBert | Ensemble | Blended, data: TaskData,
                             dev_outputs: dict[str, torch.Tensor], notebook: str, cfg: FinalConfig,
                             runtime: Runtime) -> None:
    """Dev (from the outputs already computed) and test-student prediction files of the final model."""
    out_dir = predictions_dir(notebook, cfg.profile)
    for task, out in dev_outputs.items():
        spec = tasks.get(task)
        write_predictions(out_dir / f"final-{task}-dev.csv", data.dev[task].ids, spec.predicted_labels(out),
                          spec.label_column)
    save_predictions(model, {"test": data.test}, out_dir, "final", cfg.eval_batch_size, runtime)


@dataclass
class _Candidate:
    """One way of assembling the final model: its member models with their held-out and dev outputs."""

    labels: list[str]
    runs: list[str]  # the run each member comes from
    models: list[MultitaskBert]
    heldout: list[dict[str, torch.Tensor]]
    dev: list[dict[str, torch.Tensor]]

    def averaged(self, split: str) -> dict[str, torch.Tensor]:
        outputs = self.heldout if split == "heldout" else self.dev
        return {task: average_outputs(task, [o[task] for o in outputs]) for task in outputs[0]}

    def model(self) -> MultitaskBert | Ensemble:
        return self.models[0] if len(self.models) == 1 else Ensemble(self.models)


def ensemble_window(best_epoch: int, ensemble_epochs: int) -> range:
    """The epochs a checkpoint ensemble takes from one run: its kept epoch and up to
    `ensemble_epochs` - 1 before it (never before epoch 1)."""
    return range(max(1, best_epoch - ensemble_epochs + 1), best_epoch + 1)


def _checkpoint_ensemble(cfg: FinalConfig, runs: list[RunRecord], seeds: list[int], kept: _Candidate,
                         snapshots: list[dict[int, dict[str, torch.Tensor]]], data: TaskData,
                         runtime: Runtime) -> _Candidate:
    """Every run's kept epoch and the `cfg.ensemble_epochs` - 1 epochs before it (those this process
    trained), averaged: a fixed rule, nothing chosen. The kept epochs' outputs are reused from `kept`
    (one entry per run); each earlier epoch is rebuilt from its snapshot and scored once."""
    found = _Candidate([], [], [], [], [])
    for i, (run, seed, saved) in enumerate(zip(runs, seeds, snapshots, strict=True)):
        for epoch in ensemble_window(run.best_epoch, cfg.ensemble_epochs):
            if epoch == run.best_epoch:
                model, held, dev = kept.models[i], kept.heldout[i], kept.dev[i]
            elif epoch in saved:
                model = build_model(arm_settings(cfg, cfg.arm, {"seed": seed}))
                model.load_state_dict(saved[epoch])
                model.to(runtime.device)
                held = task_outputs(model, data.heldout, cfg.eval_batch_size, runtime)
                dev = task_outputs(model, data.dev, cfg.eval_batch_size, runtime)
            else:
                continue
            found.labels.append(f"{run.name} epoch {epoch}")
            found.runs.append(run.name)
            found.models.append(model)
            found.heldout.append(held)
            found.dev.append(dev)
    return found


def no_earlier_epochs(runs: list[RunRecord], snapshots: list[dict[int, dict[str, torch.Tensor]]],
                      ensemble_epochs: int) -> str | None:
    """Why a checkpoint ensemble of `runs` would add nothing to their kept epochs, or None when it would.
    An earlier epoch joins only where this process trained it and kept its weights (`snapshots`): a
    run that kept its first epoch has none before it, and a resumed run has not the weights of the
    epochs it trained before the resume. When no run adds one, the candidate would be the kept epochs
    again, and comparing it with the seed ensemble would measure nothing."""
    reasons, gone = [], False
    for run, saved in zip(runs, snapshots, strict=True):
        wanted = ensemble_window(run.best_epoch, ensemble_epochs)[:-1]
        if any(epoch in saved for epoch in wanted):
            return None
        gone = gone or bool(wanted)
        reasons.append(f"{run.name} kept epoch {run.best_epoch}, " + (
            "its first" if not wanted else
            f"and epoch{'s' if len(wanted) > 1 else ''} {', '.join(map(str, wanted))} "
            "trained before a resume"))
    why = ": a resumed run keeps only its kept epoch's weights" if gone else ""
    return (f"No checkpoint ensemble: no run has an earlier epoch to add to its kept one "
            f"({'; '.join(reasons)}){why}.")


def _paired_on_dev(arm: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], data: TaskData,
                   arm_name: str, reference_name: str) -> list[Difference]:
    """Two ways of assembling the final model on the same dev rows: per task, the paired difference."""
    def labels(outputs: dict[str, torch.Tensor], task: str) -> np.ndarray:
        return np.asarray(tasks.get(task).predicted_labels(outputs[task]), dtype=float)

    return [paired_difference(task, data.dev[task].labels, labels(arm, task), labels(reference, task),
                              arm_name=arm_name, reference_name=reference_name) for task in arm]


def final_model(cfg: FinalConfig, runtime: Runtime, notebook: str = "06_final_bert", *,
                tokenizer=None, data: TaskData | None = None) -> FinalModel:
    """Train the final model and write its prediction files: one run of the arm, or with `ensemble_size`
    runs of it at seeds seed, seed+1, ... whose members are chosen on the held-out rows (greedy forward
    selection) and averaged: the seed ensemble. With `ensemble_epochs` > 1 a second candidate, the
    checkpoint ensemble (`_checkpoint_ensemble`), is scored beside it, and the one with the higher
    held-out mean is the final model (ties to the seed ensemble); it is skipped, and why said, where no
    run has an earlier epoch to add (`no_earlier_epochs`). The tokenizer and data are loaded as
    the config says unless given."""
    tokenizer = tokenizer or load_tokenizer(cfg.checkpoint)
    data = data or load_multitask(cfg, tokenizer)
    if (cfg.ensemble_size > 1 or cfg.ensemble_epochs > 1) and not data.heldout:
        raise ValueError("an ensemble's members are chosen on held-out rows: set heldout_sizes")
    if cfg.pretrained_view and not data.heldout:
        raise ValueError("the pretrained view's weights are chosen on held-out rows: set heldout_sizes")
    seeds = consecutive_seeds(cfg.seed, cfg.ensemble_size)
    members, models, member_dev, snapshots = [], [], [], []
    for seed in seeds:
        name = "final" if cfg.ensemble_size == cfg.ensemble_epochs == 1 else f"final-seed{seed}"
        run = run_arm(cfg, cfg.arm, data, runtime, notebook=notebook, name=name, updates={"seed": seed},
                      keep_snapshots=cfg.ensemble_epochs > 1, keep_outputs=True)
        members.append(run.record)
        models.append(run.model)
        member_dev.append(run.trained.dev_outputs)
        snapshots.append(run.trained.snapshots)
    gold = {task: split.labels for task, split in data.heldout.items()}
    outputs = [task_outputs(m, data.heldout, cfg.eval_batch_size, runtime) for m in models] if gold else []
    if cfg.ensemble_size == 1:
        order, trace = [0], []
    else:
        order, trace = choose_members(outputs, gold)
    seed_ensemble = _Candidate([members[i].name for i in order], [members[i].name for i in order],
                               [models[i] for i in order],
                               [outputs[i] for i in order] if outputs else [], [member_dev[i] for i in order])
    found = FinalModel(members[0], seed_ensemble.model(), data, tokenizer, {}, members, seed_ensemble.labels,
                       trace, seed_ensemble.labels if trace else [])
    found.member_dev_predictions = {
        m.name: {task: tasks.get(task).predicted_labels(out) for task, out in dev.items()}
        for m, dev in zip(members, member_dev, strict=True)}
    kept = seed_ensemble
    dev_gold = {task: split.labels for task, split in data.dev.items()}
    if cfg.ensemble_epochs > 1:
        found.candidates_skipped = no_earlier_epochs(members, snapshots, cfg.ensemble_epochs)
    if cfg.ensemble_epochs > 1 and found.candidates_skipped is None:
        names = [m.name for m in members]
        every_run = _Candidate(names, names, models, outputs, member_dev)
        checkpoints = _checkpoint_ensemble(cfg, members, seeds, every_run, snapshots, data, runtime)
        both = {SEED_ENSEMBLE: seed_ensemble, CHECKPOINT_ENSEMBLE: checkpoints}
        found.candidates = {name: {"members": c.labels, "heldout": scores(c.averaged("heldout"), gold),
                                   "dev": scores(c.averaged("dev"), dev_gold)} for name, c in both.items()}
        held = {name: tasks.mean_score(c["heldout"]) for name, c in found.candidates.items()}
        found.kept_candidate = max(both, key=lambda name: (held[name], name == SEED_ENSEMBLE))
        ours, theirs = checkpoints.averaged("dev"), seed_ensemble.averaged("dev")
        found.candidate_differences = _paired_on_dev(ours, theirs, data, CHECKPOINT_ENSEMBLE, SEED_ENSEMBLE)
        kept = both[found.kept_candidate]
    # the members' dev outputs were computed once, at the end of their runs: the ensemble averages them
    found.dev_outputs = kept.averaged("dev")
    found.model, found.chosen = kept.model(), kept.labels
    heldout_outputs = kept.averaged("heldout") if gold else {}
    weights = None
    if cfg.pretrained_view:
        weights, heldout_outputs = _blend_pretrained_view(found, heldout_outputs, gold, cfg, runtime)
    if len(kept.labels) == 1 and weights is None:  # one run, as it is: its own record
        found.record = next(m for m in members if m.name == kept.runs[0])
    else:
        used = [m for m in members if m.name in kept.runs]
        found.record = _ensemble_record(used, kept.labels, cfg, scores(heldout_outputs, gold),
                                        scores(found.dev_outputs, dev_gold), blend=weights,
                                        view_parameters=found.blend.get("parameters", 0))
    _write_final_predictions(found.model, data, found.dev_outputs, notebook, cfg, runtime)
    return found


def _blend_pretrained_view(found: FinalModel, heldout: dict[str, torch.Tensor], gold: dict[str, list],
                           cfg: FinalConfig, runtime: Runtime
                           ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Blend the pretrained checkpoint's own view (`minbert.pretrained_view`) into `found`: fit on the
    train rows, one weight per task chosen on the held-out rows, scored on dev without and with it.
    Updates the model, its dev outputs, `blend` and `blend_differences`; returns the weights and the
    blended held-out outputs (for the record)."""
    data, started = found.data, time.perf_counter()
    view = PretrainedView.fit(BertModel.from_pretrained(cfg.checkpoint), data.train, cfg.eval_batch_size,
                              runtime)
    view_heldout = task_outputs(view, data.heldout, cfg.eval_batch_size, runtime)
    view_dev = task_outputs(view, data.dev, cfg.eval_batch_size, runtime)
    weights = choose_weights(heldout, view_heldout, gold)
    blended_heldout = {t: blend_outputs(t, heldout[t], view_heldout[t], weights[t]) for t in heldout}
    blended_dev = {t: blend_outputs(t, out, view_dev[t], weights[t]) for t, out in found.dev_outputs.items()}
    dev_gold = {task: split.labels for task, split in data.dev.items()}
    found.blend = {"weights": weights,
                   "heldout": {"without": scores(heldout, gold), "view alone": scores(view_heldout, gold),
                               "with": scores(blended_heldout, gold)},
                   "dev": {"without": scores(found.dev_outputs, dev_gold),
                           "view alone": scores(view_dev, dev_gold), "with": scores(blended_dev, dev_gold)},
                   # fitting the view and scoring it on held-out and dev (the test rows come later)
                   "seconds": time.perf_counter() - started, "parameters": count_parameters(view)}
    found.blend_differences = _paired_on_dev(blended_dev, found.dev_outputs, data, WITH_VIEW, WITHOUT_VIEW)
    found.model = Blended(found.model, view, weights)
    found.dev_outputs = blended_dev
    return weights, blended_heldout



def run_ablation(cfg: FinalConfig, runtime: Runtime, tokenizer,
                 notebook: str = "06_final_bert") -> Comparison:
    """The final recipe against each of `cfg.levers` (one alternative each, `minbert.arms.LEVERS`), on
    the ablation budget (`ablation_epochs`, `ablation_train_limits`, dev cut to `ablation_dev_limits`),
    every arm at each of `cfg.run_seeds()`; the same held-out rows as the final run select each run's
    epoch."""
    small = cfg.with_updates({"epochs": cfg.ablation_epochs, "train_limits": cfg.ablation_train_limits,
                              "dev_limits": cfg.ablation_dev_limits, "patience": None})
    data = load_multitask(small, tokenizer)
    return run_comparison(small, data, runtime, notebook="06_final_bert", runs_under=f"{notebook}-ablation")


def run_learning_curve(cfg: FinalConfig, runtime: Runtime, tokenizer,
                       notebook: str = "06_final_bert") -> list[RunRecord]:
    """The recipe at each of `cfg.curve_run_seeds()` on each of `cfg.curve_sizes` train rows per task (a
    task with fewer keeps all its rows; every seed sees the same rows), with the final run's epochs and
    held-out rows: with the final run's members (all the rows), points of a learning curve in data
    size, read on the held-out rows (the same rows for every point; dev is cut to
    `ablation_dev_limits` for these runs, to save time). Runs are named `curve-<rows>-seed<seed>`."""
    records = []
    for size in cfg.curve_sizes:
        small = _curve_budget(cfg, size)
        data = load_multitask(small, tokenizer)
        records += [run_arm(small, cfg.arm, data, runtime, notebook=f"{notebook}-curve",
                            name=f"curve-{size}-seed{seed}", updates={"seed": seed}).record
                    for seed in cfg.curve_run_seeds()]
    return records


def _curve_budget(cfg: FinalConfig, size: int) -> FinalConfig:
    """The recipe on `size` train rows per task, dev cut to `ablation_dev_limits`, every epoch run."""
    return cfg.with_updates({"train_limits": dict.fromkeys(tasks.MULTITASK, size), "patience": None,
                             "dev_limits": cfg.ablation_dev_limits})


def run_model_sizes(cfg: FinalConfig, runtime: Runtime, tokenizer,
                    notebook: str = "06_final_bert") -> list[RunRecord]:
    """The recipe at each of `cfg.curve_run_seeds()` with each of `cfg.size_layers` encoder layers (the
    checkpoint's first ones), on the learning curve's first budget (`curve_sizes[0]` rows per task) and
    the same held-out and dev rows: with the curve's runs there (every layer), points of a curve in
    model size. Runs are named `layers-<n>-seed<seed>`."""
    small = _curve_budget(cfg, cfg.curve_sizes[0])
    data = load_multitask(small, tokenizer)
    return [run_arm(small, cfg.arm, data, runtime, notebook=f"{notebook}-curve",
                    name=f"layers-{layers}-seed{seed}", updates={"num_layers": layers, "seed": seed}).record
            for layers in cfg.size_layers for seed in cfg.curve_run_seeds()]


def same_budget(runs: list[RunRecord], like: RunRecord) -> list[RunRecord]:
    """The runs trained on the same train rows per task as `like` (the curve's runs beside a model-size
    run, whatever their seed)."""
    return [run for run in runs if run.train_sizes == like.train_sizes]
