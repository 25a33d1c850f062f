"""The study's experiments: ONE declarative table of its arms, and what a notebook runs.

An arm is a named set of updates to the multitask knobs (`config.MultitaskSettings`)
with the study's row that tried the same idea. A new arm built from existing knobs is
one entry in `ARMS`; config validation reads the table. `run_arm` trains one arm from
the pretrained checkpoint and returns its typed record; `final_model` is notebook 06's
whole training step.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from minbert import paths, tasks
from minbert.attention import variant_movement
from minbert.bert import BertModel, count_parameters, load_tokenizer
from minbert.comparison import Comparison, Difference, paired_difference
from minbert.config import ComparisonConfig, FinalConfig, MultitaskSettings, Part1Config, consecutive_seeds
from minbert.data import TaskData, load_tasks
from minbert.ensemble import Ensemble, average_outputs, choose_members, scores, task_outputs
from minbert.evaluation import predict_logits, save_predictions, write_predictions
from minbert.models import MultitaskBert, SentenceClassifier
from minbert.pretrained_view import Blended, PretrainedView, blend_outputs, choose_weights
from minbert.records import RunRecord, predictions_dir
from minbert.runtime import Runtime
from minbert.training import best_epoch, train_classifier, train_multitask


@dataclass(frozen=True)
class Arm:
    """One arm of the study: what it does, its knob updates, and the study's row for it (theirs)."""

    name: str
    summary: str
    settings: dict[str, Any] = field(default_factory=dict)
    study_row: str | None = None


ARMS: dict[str, Arm] = {arm.name: arm for arm in (
    Arm("baseline", "each epoch: all STS batches, then SST, then QQP (the study's order)",
        {"task_order": ["sts", "sst", "qqp"]}, "sBERT-Baseline_2"),
    Arm("qqp-first", "the same, QQP first", {"task_order": ["qqp", "sts", "sst"]}, "sBERT-ReorderedTraining"),
    Arm("round-robin", "equal-size chunks of the three tasks, interleaved batch by batch",
        {"schedule": "round-robin", "task_order": ["sts", "qqp", "sst"]}, "sBERT-RoundRobinTraining"),
    Arm("combined", "one batch of each task per step, losses summed",
        {"schedule": "combined", "task_order": ["sst", "qqp", "sts"]}, "sBERT-Combined Loss"),
    Arm("pcgrad", "as combined, with PCGrad gradient surgery on the three task gradients",
        {"schedule": "pcgrad", "task_order": ["sst", "qqp", "sts"]}),  # their PCGrad run died with NaN logits
    Arm("qqp-separate", "the first epoch on QQP alone, then QQP's share cut to the other tasks' size",
        {"task_order": ["sts", "sst", "qqp"], "qqp_only_epochs": 1}),
    Arm("class-weights", "class-weighted cross-entropy for the imbalanced SST and QQP",
        {"task_order": ["sts", "sst", "qqp"], "class_weights": True}),
    Arm("freeze", "the last epoch with BERT frozen, only the heads training", {"freeze_epochs": 1}),
    Arm("proportional", "tasks in proportion to their size, annealed toward equal shares, steps interleaved",
        {"schedule": "proportional", "task_order": ["qqp", "sts", "sst"]}),
    Arm("shared-similarity", "one linear layer shared by QQP and STS before they compare",
        {"task_order": ["sts", "sst", "qqp"], "shared_similarity": True}, "sBERT-Shared Similarity"),
)}


def arm_settings(cfg: MultitaskSettings, arm: str, *updates: dict[str, Any] | None) -> MultitaskSettings:
    """The run knobs of the notebook's settings with the arm's updates, then any further updates,
    validated (as plain `MultitaskSettings`: the notebook's own fields, such as its list of arms,
    are not the run's)."""
    knobs = MultitaskSettings.model_validate(cfg.model_dump(include=set(MultitaskSettings.model_fields)))
    return knobs.with_updates(ARMS[arm].settings, *updates)


# ----------------------------------------------------------------------------- multitask

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


def run_arm(cfg: MultitaskSettings, arm: str, data: TaskData, runtime: Runtime, *, notebook: str,
            name: str | None = None, updates: dict[str, Any] | None = None, checkpoints: bool = True,
            on_epoch: Callable[[dict], None] | None = None,
            dev_predictions: dict[str, np.ndarray] | None = None,
            dev_outputs: dict[str, torch.Tensor] | None = None,
            snapshots: dict[int, dict[str, torch.Tensor]] | None = None) -> tuple[RunRecord, MultitaskBert]:
    """Train one arm from the pretrained checkpoint; its record and model (best epoch).

    `updates` change knobs over the arm's (an attention variant, a tuned optimizer, a run seed...);
    `name` (default: the arm) tells apart runs of one arm with other settings. Checkpoints
    go to runs/<notebook>/<profile>/<name>/, TensorBoard logs to runs/tensorboard/; without
    `checkpoints` (tuning trials) nothing is written. `on_epoch` sees each epoch's record; a
    `dev_predictions` dict receives the kept epoch's dev predictions, a `dev_outputs` dict its raw dev
    outputs, a `snapshots` dict every epoch's weights (CPU copies, keyed by epoch).
    """
    name = name or arm
    settings = arm_settings(cfg, arm, updates)
    model = build_model(settings)
    checkpoint_dir = paths.runs_dir() / notebook / settings.profile / name if checkpoints else None
    if checkpoint_dir is not None and not settings.resume and checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    history = train_multitask(model, data.train, data.dev, settings, heldout=data.heldout or None, name=name,
                              runtime=runtime,
                              checkpoint_dir=checkpoint_dir, resume=settings.resume and checkpoints,
                              on_epoch=on_epoch, dev_predictions=dev_predictions, dev_outputs=dev_outputs,
                              snapshots=snapshots,
                              log_dir=paths.runs_dir() / "tensorboard" / notebook / settings.profile / name)
    best = best_epoch(history)  # the epoch whose weights the trainer kept
    knobs = set(MultitaskSettings.model_fields) - {"profile", "device", "strict_data", "resume"}
    config = settings.model_dump(include=knobs)
    metrics = tasks.metrics().values()
    heldout = {m: best[f"heldout_{m}"] for m in metrics} if data.heldout else None
    record = RunRecord(name=name, arm=arm, dev={m: best[m] for m in metrics}, heldout=heldout,
                       best_epoch=best["epoch"], history=history,
                       config={**config, "precision": runtime.precision},
                       train_sizes={task: len(t) for task, t in data.train.items()},
                       dev_sizes={task: len(t) for task, t in data.dev.items()},
                       parameters=count_parameters(model), variant_movement=variant_movement(model) or None)
    return record, model


def run_comparison(cfg: ComparisonConfig, arms: dict[str, tuple[str, dict[str, Any] | None]], data: TaskData,
                   runtime: Runtime, *, notebook: str, reference: str) -> Comparison:
    """Every arm once per seed of `cfg.run_seeds()`, on the same data; `arms` maps a label to its
    study arm and knob updates. Runs are named `<label>-seed<seed>`; `reference` is the label the
    others are measured against."""
    if reference not in arms:
        raise ValueError(f"the reference {reference!r} is not one of the arms compared: {list(arms)}")
    gold = {task: np.asarray(split.labels, dtype=float) for task, split in data.dev.items()}
    comparison = Comparison(reference, gold)
    for seed in cfg.run_seeds():
        for label, (arm, updates) in arms.items():
            predicted: dict[str, np.ndarray] = {}
            record, _ = run_arm(cfg, arm, data, runtime, notebook=notebook, name=f"{label}-seed{seed}",
                                updates={**(updates or {}), "seed": seed}, dev_predictions=predicted)
            comparison.add(label, record, predicted)
    return comparison


MODEL_KNOBS = ("mode", "attention", "pooling", "head_hidden", "dropout", "shared_similarity")


def load_kept_model(cfg: MultitaskSettings, record: RunRecord, notebook: str) -> MultitaskBert:
    """A finished run's kept weights (its best epoch) from runs/<notebook>/<profile>/<name>/best.pt,
    in a model built as the run's record says."""
    path = paths.runs_dir() / notebook / cfg.profile / record.name / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no kept weights of run {record.name!r}; run the notebook again")
    model = build_model(arm_settings(cfg, record.arm, {k: record.config[k] for k in MODEL_KNOBS}))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    return model


def save_run_predictions(model: MultitaskBert, data: TaskData, name: str, notebook: str,
                         cfg: MultitaskSettings, runtime: Runtime) -> dict[str, list]:
    """Dev and test-student predictions of every task as CSV (id, label) under
    reports/predictions/<notebook>.<profile>/; returns the dev predictions per task."""
    return save_predictions(model, {"dev": data.dev, "test": data.test},
                            predictions_dir(notebook, cfg.profile), name, cfg.eval_batch_size, runtime)


# ----------------------------------------------------------------------------- 06: the final model

# What the final model aims for with the embedded 22M MiniLM: above the study's BERT-base on SST and STS.
FINAL_AIMS = {"sst_acc": 0.52, "qqp_acc": 0.86, "sts_pearson": 0.88}


@dataclass(frozen=True)
class Lever:
    """One choice of the final recipe, and what the ablation runs instead (knob updates over the recipe)."""

    name: str
    summary: str
    without: dict[str, Any]


# The final recipe's levers: notebook 06's ablation runs the recipe and each of these alternatives
# on one smaller budget, several seeds, paired intervals against the recipe. (The ensemble and the
# epoch count are measured on the final run itself: its members and its per-epoch held-out scores.)
LEVERS: dict[str, Lever] = {lever.name: lever for lever in (
    Lever("constant lr without clipping", "the recipe's warmup, linear decay and clipping to norm 1, "
          "against a constant learning rate without clipping",
          {"lr_schedule": "constant", "max_grad_norm": None}),
    Lever("layer-wise lr decay", "one learning rate for every layer, against each layer at 0.9 times the "
          "rate of the one above it", {"layer_lr_decay": 0.9}),
    Lever("heads at the encoder's lr", "the heads' own learning rate, against the encoder's",
          {"head_lr": None}),
    Lever("sequential tasks", "tasks in proportion to their size, interleaved, against the study's "
          "sequential blocks (QQP, STS, SST)",
          {"schedule": "sequential", "task_order": ["qqp", "sts", "sst"]}),
    Lever("CLS pooling", "the recipe's sentence vector, against BERT's pooler ([CLS]) alone",
          {"pooling": "cls"}),
    Lever("mean pooling", "the recipe's sentence vector, against the token mean alone (what MiniLM was "
          "trained with)", {"pooling": "mean"}),
    Lever("CLS and mean pooling", "the recipe's sentence vector, against the pooler and the token mean "
          "side by side", {"pooling": "cls+mean"}),
    Lever("with R-Drop", "no consistency term, against R-Drop: the symmetric divergence between two "
          "dropout passes (SMART at zero perturbation), weight 1, on every task",
          {"smart": {t: {"epsilon": 0.0, "noise_var": 0.0, "steps": 0, "weight": 1.0}
                     for t in tasks.MULTITASK}}),
)}


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
    totals = {key: sum(h.get(key, 0) for m in used for h in m.history)
              for key in ("seconds", "steps", "examples")}
    entry = {"epoch": 0, **totals, "members": chosen,
             **{f"heldout_{k}": v for k, v in heldout.items()}, "heldout_mean": tasks.mean_score(heldout),
             **dev}
    return RunRecord(name="final", arm=cfg.arm, dev=dev, heldout=heldout, best_epoch=0, history=[entry],
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
        dev_outputs: dict[str, torch.Tensor] = {}
        saved: dict[int, dict[str, torch.Tensor]] = {}
        record, model = run_arm(cfg, cfg.arm, data, runtime, notebook=notebook, name=name,
                                updates={"seed": seed}, dev_outputs=dev_outputs,
                                snapshots=saved if cfg.ensemble_epochs > 1 else None)
        members.append(record)
        models.append(model)
        member_dev.append(dev_outputs)
        snapshots.append(saved)
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
    """The final recipe against each of `cfg.levers` (one alternative each, `LEVERS`), on the ablation
    budget (`ablation_epochs`, `ablation_train_limits`, dev cut to `ablation_dev_limits`), every arm at
    each of `cfg.run_seeds()`; the same held-out rows as the final run select each run's epoch."""
    small = cfg.with_updates({"epochs": cfg.ablation_epochs, "train_limits": cfg.ablation_train_limits,
                              "dev_limits": cfg.ablation_dev_limits, "patience": None})
    data = load_multitask(small, tokenizer)
    arms = {"recipe": (cfg.arm, None), **{name: (cfg.arm, LEVERS[name].without) for name in cfg.levers}}
    return run_comparison(small, arms, data, runtime, notebook=f"{notebook}-ablation", reference="recipe")


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
                            name=f"curve-{size}-seed{seed}", updates={"seed": seed})[0]
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
                    name=f"layers-{layers}-seed{seed}", updates={"num_layers": layers, "seed": seed})[0]
            for layers in cfg.size_layers for seed in cfg.curve_run_seeds()]


def same_budget(runs: list[RunRecord], like: RunRecord) -> list[RunRecord]:
    """The runs trained on the same train rows per task as `like` (the curve's runs beside a model-size
    run, whatever their seed)."""
    return [run for run in runs if run.train_sizes == like.train_sizes]


# ----------------------------------------------------------------------------- 01: Part 1

def load_sentence_task(task: str, cfg: Part1Config, tokenizer) -> TaskData:
    """One single-sentence task's splits as the config says (dev and test cut to `dev_limit`)."""
    heldout = {task: cfg.heldout_size} if cfg.heldout_size else None
    return load_tasks(tokenizer, cfg.max_length, names=(task,), train_limits={task: cfg.train_limit},
                      dev_limits={task: cfg.dev_limit}, test_limit=cfg.dev_limit, seed=cfg.seed,
                      strict=cfg.strict_data, heldout_sizes=heldout)


def run_sst_mode(cfg: Part1Config, mode: str, data: TaskData, runtime: Runtime,
                 seed: int | None = None) -> tuple[RunRecord, SentenceClassifier]:
    """Train one Part 1 classifier (`pretrain` or `finetune`) with a run seed (default: the config's);
    its record (`<mode>-seed<seed>`: dev accuracy of the best epoch, per-epoch history) and the
    trained model (the kept epoch's weights)."""
    seed = cfg.seed if seed is None else seed
    torch.manual_seed(seed)  # the head's start
    bert = BertModel.from_pretrained(cfg.checkpoint, hidden_dropout_prob=cfg.dropout)
    model = SentenceClassifier(bert, num_classes=tasks.get("sst").num_classes, dropout=cfg.dropout,
                               pooling=cfg.pooling, freeze_bert=mode == "pretrain")
    epochs = cfg.pretrain_epochs if mode == "pretrain" else cfg.finetune_epochs
    lr = cfg.pretrain_lr if mode == "pretrain" else cfg.finetune_lr
    train, dev, held = data.train["sst"], data.dev["sst"], data.heldout.get("sst")
    history = train_classifier(model, train.a, train.labels, dev.a, dev.labels, epochs=epochs, lr=lr,
                               heldout=(held.a, held.labels) if held is not None else None,
                               batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, seed=seed,
                               runtime=runtime, eval_batch_size=cfg.eval_batch_size, desc=mode,
                               lr_schedule=cfg.lr_schedule, warmup_ratio=cfg.warmup_ratio,
                               max_grad_norm=cfg.max_grad_norm)
    best = max(history, key=lambda h: h.get("heldout_acc", h["dev_acc"]))  # the epoch the trainer kept
    config = {"mode": mode, "seed": seed, "epochs": epochs, "lr": lr, "batch_size": cfg.batch_size,
              "pooling": cfg.pooling,
              "dropout": cfg.dropout, "weight_decay": cfg.weight_decay, "optimizer": "minbert.optim.AdamW",
              "lr_schedule": cfg.lr_schedule, "warmup_ratio": cfg.warmup_ratio,
              "max_grad_norm": cfg.max_grad_norm,
              "precision": runtime.precision,
              "trainable_parameters": count_parameters(model, trainable_only=True)}
    heldout = {"sst_acc": best["heldout_acc"]} if held is not None else None
    record = RunRecord(f"{mode}-seed{seed}", {"sst_acc": best["dev_acc"]}, best["epoch"], history, config,
                       heldout=heldout, group=mode, dev_sizes={"sst": len(dev)},
                       train_sizes={"sst": len(train)})
    return record, model


def sst_dev_predictions(model: SentenceClassifier, data: TaskData, cfg: Part1Config,
                        runtime: Runtime) -> dict[str, np.ndarray]:
    """A Part 1 model's SST dev predictions in input order (what a paired comparison resamples)."""
    logits = predict_logits(model, data.dev["sst"].a, cfg.eval_batch_size, runtime)
    return {"sst": np.asarray(tasks.get("sst").predicted_labels(logits))}


def save_sst_predictions(model: SentenceClassifier, data: TaskData, mode: str, notebook: str,
                         cfg: Part1Config, runtime: Runtime) -> dict[str, list[int]]:
    """Dev and test-student predictions of a Part 1 model as CSV (id, sentiment) under
    reports/predictions/<notebook>.<profile>/; returns the dev and test labels."""
    task = tasks.get("sst")
    predicted = {}
    for split_name in ("dev", "test"):
        tensors = data.tensors[split_name]["sst"]
        labels = task.predicted_labels(predict_logits(model, tensors.a, cfg.eval_batch_size, runtime))
        write_predictions(predictions_dir(notebook, cfg.profile) / f"{mode}-sst-{split_name}.csv",
                          tensors.ids, labels, task.label_column)
        predicted[split_name] = labels
    return predicted

