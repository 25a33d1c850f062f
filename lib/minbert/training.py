"""The multitask trainer, and the recipe's pieces Part 1's trainer shares (`minbert.part1`).

It is seeded, follows the standard recipe (linear warmup and decay of the learning rate,
gradient-norm clipping), guards against NaN losses and keeps the weights of the epoch that
scores best on the held-out rows carved from train (on dev only where none are given).
It follows its settings' schedule (`minbert.schedules`),
optimiser (AdamW or SophiaG, one for all weights or one per task), SMART per task
and PCGrad; it checkpoints after every epoch (tensors only, written atomically)
and resumes from the last checkpoint to the same result as a run never
interrupted; TensorBoard gets each epoch's scalars.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from minbert import tasks
from minbert.config import LR_SCHEDULES, MultitaskSettings
from minbert.data import TaskTensors, batch_indices
from minbert.epochs import Epoch, best_epoch
from minbert.evaluation import dev_metrics
from minbert.files import atomic_path, remove_partials
from minbert.models import MultitaskBert
from minbert.optim import AdamW, SophiaG
from minbert.pcgrad import pcgrad_backward
from minbert.runtime import CPU, Runtime, keep_freed_memory, rng_state, set_rng_state
from minbert.schedules import annealed_exponent, batch_sizes, epoch_plan
from minbert.smart import SmartSettings
from minbert.smart_probe import smart_terms

# Regions of a training step, named for `torch.profiler` (`benchmarks/step_profile.py` groups a step's
# time by them); a region costs nothing measurable when no profiler is on.
REGIONS = ("data", "forward", "smart", "backward", "clip", "optimizer", "evaluate")


def region(name: str) -> torch.profiler.record_function:
    return torch.profiler.record_function(f"minbert::{name}")


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN or infinite loss, for instance)."""


def lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int,
                 warmup_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate over a run: `linear` is transformers' linear warmup then linear decay to 0
    over `total_steps` optimizer steps (the standard fine-tuning recipe); `constant` keeps it."""
    from transformers import get_constant_schedule, get_linear_schedule_with_warmup

    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; known: {list(LR_SCHEDULES)}")
    if schedule == "constant":
        return get_constant_schedule(optimizer)
    return get_linear_schedule_with_warmup(optimizer, round(warmup_ratio * total_steps), max(total_steps, 1))


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float | None) -> None:
    """Clip the gradients of the optimizer's parameters to a total norm of `max_norm` (None: no clipping)."""
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]
                                        if p.grad is not None], max_norm)


# SMART's dropout-only control (what the term is at zero perturbation) costs one more forward pass; it is
# logged, not trained on, so it is measured on each of a task's first CONTROL_ALL SMART steps of an epoch
# and on every CONTROL_EVERY-th one after: a short epoch measures every step, a long one a sample of an
# eighth (the epoch's mean over the batches measured).
CONTROL_ALL, CONTROL_EVERY = 32, 8


def _stop(value: float, where: str):
    raise TrainingError(f"loss became {value} at {where}; stopping (lower the learning "
                        "rate, or check the inputs of that batch)")


class FiniteWatch:
    """The first non-finite loss of a stretch of steps, noted on the device and read on the host only
    when `check` is called (every `Runtime.read_every` steps): a GPU step then waits for nothing. The
    error names the step and task where it went wrong, as a check at every step would."""

    def __init__(self, device: torch.device) -> None:
        self._first = torch.full((), -1, dtype=torch.long, device=device)  # index into _places; -1: none
        self._value = torch.zeros((), device=device)
        self._places: list[str] = []

    def watch(self, loss: torch.Tensor, where: str) -> None:
        index = len(self._places)
        self._places.append(where)
        new = ~torch.isfinite(loss.detach()) & (self._first < 0)
        self._first = torch.where(new, index, self._first)
        self._value = torch.where(new, loss.detach().float(), self._value)

    def check(self) -> None:
        """Raise TrainingError for the first non-finite loss watched since the last check."""
        if self._places:
            first = int(self._first)  # the one host read of the stretch
            if first >= 0:
                _stop(float(self._value), self._places[first])
            self._places.clear()


def class_weight_tensor(labels: list[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, n / (classes * count): a balanced set gets all ones."""
    counts = torch.bincount(torch.tensor(labels), minlength=num_classes).float()
    return len(labels) / (num_classes * counts.clamp(min=1.0))


def layer_depth(name: str, num_layers: int) -> int | None:
    """Where a BERT weight sits for layer-wise learning-rate decay: 0 the embeddings, i + 1 encoder layer i,
    `num_layers` the pooler; None for what is not BERT's (the heads)."""
    if name.startswith("bert.embeddings."):
        return 0
    if name.startswith("bert.encoder.layer."):
        return int(name.split(".")[3]) + 1
    if name.startswith("bert."):
        return num_layers
    return None


def parameter_groups(model: MultitaskBert, lr: float, variant_lr: float | None = None,
                     layer_lr_decay: float = 1.0, head_lr: float | None = None) -> list[dict]:
    """The model's weights as optimizer groups, one per learning rate: the top BERT layer (and the pooler)
    at `lr`, each layer below at `layer_lr_decay` times the one above it (the embeddings lowest), the
    heads at `head_lr` (default `lr`), and the attention variants' own parameters at `variant_lr` where
    it is set. With the defaults, one group at `lr`."""
    from minbert.attention import is_variant_parameter

    num_layers = model.bert.config.num_hidden_layers
    by_lr: dict[float, list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        depth = layer_depth(name, num_layers)
        if variant_lr is not None and is_variant_parameter(name):
            rate = variant_lr
        elif depth is None:
            rate = lr if head_lr is None else head_lr
        else:
            rate = lr * layer_lr_decay ** (num_layers - depth)
        by_lr.setdefault(rate, []).append(parameter)
    groups = [{"params": params, "lr": rate} for rate, params in by_lr.items()]
    return sorted(groups, key=lambda g: g["lr"] != lr)  # the top layer's first: what an epoch records


def make_optimizers(model: MultitaskBert, settings: MultitaskSettings) -> dict[str, AdamW | SophiaG]:
    """The run's optimizer over all weights, keyed "all"; or, with `task_optimizers`, one per task
    (each over all weights, with the task's own lr, rho and weight decay where given). The attention
    variants' parameters train at `variant_lr` where it is set."""
    def build(own: dict[str, float]) -> AdamW | SophiaG:
        lr, weight_decay = own.get("lr", settings.lr), own.get("weight_decay", settings.weight_decay)
        groups = parameter_groups(model, lr, settings.variant_lr, settings.layer_lr_decay, settings.head_lr)
        if settings.optimizer == "sophia":
            return SophiaG(groups, lr=lr, rho=own.get("rho", settings.rho), weight_decay=weight_decay,
                           bias_correction=settings.hessian_bias_correction)
        return AdamW(groups, lr=lr, weight_decay=weight_decay)

    if settings.task_optimizers:
        return {task: build(settings.task_settings.get(task, {})) for task in tasks.MULTITASK}
    return {"all": build({})}


# Settings a resumed run may change: whether it resumes, and on which device it computes.
RESUME_MAY_CHANGE = frozenset({"resume", "device"})


def settings_changes(saved: dict, settings: MultitaskSettings) -> dict[str, tuple]:
    """The multitask knobs whose value differs from the saved settings: key -> (saved, now)."""
    now = settings.model_dump(mode="json")
    return {key: (saved.get(key), now[key]) for key in MultitaskSettings.model_fields
            if key not in RESUME_MAY_CHANGE and saved.get(key) != now[key]}


def _qqp_phase(train: dict[str, TaskTensors], settings: MultitaskSettings, epoch: int) -> tuple[bool, bool]:
    """Whether the epoch is the separate QQP phase, and whether it comes after that phase."""
    phase = bool(settings.qqp_only_epochs) and "qqp" in train
    return phase and epoch <= settings.qqp_only_epochs, phase and epoch > settings.qqp_only_epochs


def _epoch_plan(train: dict[str, TaskTensors], settings: MultitaskSettings,
                epoch: int) -> list[tuple[str, ...]]:
    """The steps of one epoch (the same number for every schedule: see `minbert.schedules`)."""
    counts = {task: math.ceil(len(data) / settings.batch_size) for task, data in train.items()}
    order = [t for t in settings.task_order if t in train]
    qqp_only, after = _qqp_phase(train, settings, epoch)
    return epoch_plan(settings.schedule, counts, order, qqp_only=qqp_only, qqp_cap=after,
                      exponent=annealed_exponent(epoch, settings.epochs))


def optimizer_steps(train: dict[str, TaskTensors], settings: MultitaskSettings) -> dict[str, int]:
    """How many steps each optimizer takes over the whole run (what the lr schedule spans)."""
    steps: dict[str, int] = {}
    for epoch in range(1, settings.epochs + 1):
        for step_tasks in _epoch_plan(train, settings, epoch):
            key = step_tasks[0] if settings.task_optimizers else "all"
            steps[key] = steps.get(key, 0) + 1
    return steps


def _batch_stream(data: TaskTensors, size: int, seed: int) -> Iterator[list[int]]:
    """A task's training batches without end, every one of `size` rows (a pass's last rows are topped up
    from the next pass), so that every step of every schedule sees the same number of examples: a
    fresh seeded shuffle per pass, rows of similar length next to each other (`batch_indices`)."""
    waiting: list[int] = []
    for rounds in itertools.count():
        for batch in batch_indices(data.lengths(), size, shuffle=True, seed=seed + rounds * 1_000_003):
            waiting.extend(batch)
            while len(waiting) >= size:
                yield waiting[:size]
                waiting = waiting[size:]


def _check_resumable(path: Path, state: dict, settings: MultitaskSettings) -> None:
    """A resumed run continues the saved one: the same knobs, or it is refused with the differences named."""
    if "settings" not in state:
        raise TrainingError(f"{path}: this checkpoint does not record its settings (an older version); "
                            "start the run afresh (resume: false)")
    changes = settings_changes(json.loads(state["settings"]), settings)
    if changes:
        listed = "; ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())
        raise TrainingError(f"{path}: cannot resume with other settings than the run it continues "
                            f"({listed}); resume with the saved settings, or start afresh (resume: false)")


def _save_checkpoint(path: Path, payload: dict) -> None:
    """Write a checkpoint whole or not at all; a failed write (a full disk) is one clear error and
    leaves the previous checkpoint in place."""
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise TrainingError(f"{path}: the checkpoint could not be written ({reason}); is the disk full? "
                            "The previous checkpoint is kept") from None


@dataclass
class Trained:
    """What a multitask run leaves besides its model (which holds the kept epoch's weights): one record
    per epoch; the kept weights' dev outputs and predictions per task, computed once at the end (what
    an ensemble averages and a paired comparison resamples); with `keep_snapshots`, a CPU copy of the
    weights at the end of every epoch this call trained, keyed by epoch (a resumed run's earlier
    epochs are not in it)."""

    history: list[Epoch]
    dev_outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    dev_predictions: dict[str, np.ndarray] = field(default_factory=dict)
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


def train_multitask(model: MultitaskBert, train: dict[str, TaskTensors], dev: dict[str, TaskTensors],
                    settings: MultitaskSettings, *, heldout: dict[str, TaskTensors] | None = None,
                    name: str = "run", runtime: Runtime = CPU,
                    checkpoint_dir: Path | None = None, resume: bool = False, log_dir: Path | None = None,
                    stop_after_epoch: int | None = None, keep_snapshots: bool = False,
                    on_epoch: Callable[[Epoch], None] | None = None,
                    epoch_checkpoints: bool = True) -> Trained:
    """Train as the settings say; keep the weights of the best epoch: the best mean score on the
    `heldout` rows (carved from train) where given, else on dev (then dev is both selected on and
    reported). With held-out rows, each epoch is scored on them alone and dev is evaluated once, for
    the kept weights: its scores join that epoch's record, so dev can only be reported, never chosen on.

    With `checkpoint_dir`, `last.pt` (model, optimizer, random state, history) and
    `best.pt` are written after every epoch (without `epoch_checkpoints`, `best.pt` alone: where a
    kill loses the machine with its files, as a GPU lease's end does, `last.pt` could never be resumed
    from, and it is three times the model); `resume` continues from `last.pt`. A finished run's
    `last.pt` keeps only its history and settings (a resume of it trains nothing). TensorBoard
    scalars go to `log_dir`: replaced by a fresh run, continued by a resumed one.
    `stop_after_epoch` ends the run early, as a kill would (for tests); `settings.patience` ends it
    when that many epochs have passed without a better selection score. A NaN or
    infinite loss raises TrainingError and leaves the last good checkpoint in place. `on_epoch` sees
    each epoch's record as it ends (a tuning trial's pruner). Returns the run's `Trained`.
    """
    device = runtime.device
    keep_freed_memory()
    model.to(device)
    optimizers = make_optimizers(model, settings)
    steps = optimizer_steps(train, settings)
    schedulers = {key: lr_scheduler(optimizer, settings.lr_schedule, steps.get(key, 0), settings.warmup_ratio)
                  for key, optimizer in optimizers.items()}
    weights = {task: class_weight_tensor(train[task].labels, tasks.get(task).num_classes).to(device)
               for task in train if settings.class_weights and tasks.get(task).kind != "regression"}
    history: list[Epoch] = []
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    kept_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights, without a checkpoint_dir
    start_epoch = 1
    last, best = (checkpoint_dir / "last.pt", checkpoint_dir / "best.pt") if checkpoint_dir else (None, None)
    if checkpoint_dir is not None:
        remove_partials(checkpoint_dir)  # a checkpoint write a kill interrupted
    if resume and last is not None and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)  # the random state must stay here
        _check_resumable(last, state, settings)
        if not state.get("finished"):  # a finished run keeps only its history: nothing is left to train
            model.load_state_dict(state["model"])
            for key, optimizer in optimizers.items():
                optimizer.load_state_dict(state["optimizers"][key])
                schedulers[key].load_state_dict(state["schedulers"][key])
            set_rng_state(state["rng"], device)
        history = [Epoch.from_dict(h) for h in json.loads(state["history"])]
        start_epoch = int(state["epoch"]) + 1
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        if start_epoch == 1 and log_dir.exists():
            shutil.rmtree(log_dir)  # a fresh run's curves must not mix with an earlier run's
        writer = SummaryWriter(str(log_dir))
    try:
        for epoch in range(start_epoch, settings.epochs + 1):
            record = _train_epoch(model, optimizers, schedulers, train, settings, name, epoch, weights,
                                  runtime)
            with region("evaluate"):
                if heldout:
                    record.set_heldout(dev_metrics(model, heldout, settings.eval_batch_size, runtime))
                else:
                    record.set_dev(dev_metrics(model, dev, settings.eval_batch_size, runtime))
            history.append(record)
            kept = best_epoch(history) is record
            if (kept and checkpoint_dir is None) or keep_snapshots:
                weights_now = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                if kept and checkpoint_dir is None:
                    kept_state = weights_now
                if keep_snapshots:
                    snapshots[epoch] = weights_now
            if writer is not None:
                for key, value in record.to_dict().items():
                    if key != "epoch":
                        writer.add_scalar(key.replace("_", "/", 1), value, epoch)

            if checkpoint_dir is not None and kept:
                _save_checkpoint(best, {"model": model.state_dict()})
            if checkpoint_dir is not None and epoch_checkpoints:
                _save_checkpoint(last, {"epoch": epoch, "model": model.state_dict(),
                                        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                                        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                                        "rng": rng_state(device), "history": _history_json(history),
                                        "settings": settings.model_dump_json()})
            if on_epoch:
                on_epoch(record)
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                return Trained(history, snapshots=snapshots)
            if settings.patience is not None and epoch - best_epoch(history).epoch >= settings.patience:
                break  # early stopping: the epochs left (frozen ones too) are skipped
    finally:
        if writer is not None:
            writer.close()
    if last is not None and start_epoch <= settings.epochs:
        # Finished: the optimizer state (twice the model's size) is of no more use; the kept
        # weights are in best.pt, and a resume of a finished run needs only its history.
        _save_checkpoint(last, {"epoch": settings.epochs, "finished": True, "history": _history_json(history),
                                "settings": settings.model_dump_json()})
    if best is not None and best.is_file():
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["model"])
    elif kept_state is not None:
        model.load_state_dict(kept_state)
    found = Trained(history, snapshots=snapshots)
    with region("evaluate"):
        scores = dev_metrics(model, dev, settings.eval_batch_size, runtime, found.dev_predictions,
                             found.dev_outputs)
    if heldout:  # dev, once, for the kept weights: reported, never chosen on
        best_epoch(history).set_dev(scores)
    return found


def _history_json(history: list[Epoch]) -> str:
    return json.dumps([e.to_dict() for e in history])


def _refresh_hessian(model: MultitaskBert, optimizer: SophiaG, step_batches: list[tuple[str, dict]],
                     runtime: Runtime) -> None:
    """Sophia's every-k-steps Hessian refresh on this step's batches, with sampled labels."""
    optimizer.zero_grad(set_to_none=True)
    losses = []
    for task, batch in step_batches:
        with runtime.autocast():
            outputs = model.task_outputs(task, batch)
        losses.append(tasks.get(task).sampled_label_loss(outputs))
    losses = [loss for loss in losses if loss.requires_grad]
    if losses:
        sum(losses).backward()
        optimizer.update_hessian()
    optimizer.zero_grad(set_to_none=True)


def _mean_of_known(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return sum(known) / len(known) if known else math.nan


def _summed(value: torch.Tensor, rows: int) -> torch.Tensor:
    """A batch's mean loss times its rows, for an epoch's mean, kept on the device (a host read would
    wait for the step); in float64, as Python's floats summed them."""
    return value.detach().double() * rows


def _to_host(sums: dict[str, torch.Tensor | float]) -> dict[str, float]:
    return {task: float(total) for task, total in sums.items()}


def _train_epoch(model: MultitaskBert, optimizers: dict, schedulers: dict, train: dict[str, TaskTensors],
                 settings: MultitaskSettings, name: str, epoch: int, weights: dict,
                 runtime: Runtime) -> Epoch:
    started = time.perf_counter()
    device = runtime.device
    frozen = epoch > settings.epochs - settings.freeze_epochs
    for p in model.bert.parameters():
        p.requires_grad = not frozen
    model.train()
    sizes = batch_sizes(settings.schedule, settings.batch_size, sorted(train))
    streams = {task: _batch_stream(data, sizes[task], settings.seed * 100_003 + epoch * 101 + i)
               for i, (task, data) in enumerate(sorted(train.items()))}
    qqp_only, _ = _qqp_phase(train, settings, epoch)
    plan = _epoch_plan(train, settings, epoch)
    sums, seen = dict.fromkeys(train, 0.0), dict.fromkeys(train, 0)
    smart = {task: SmartSettings(**own) for task, own in settings.smart.items()}
    adv_sums, control_sums = dict.fromkeys(smart, 0.0), dict.fromkeys(smart, 0.0)
    smart_steps, control_seen = dict.fromkeys(smart, 0), dict.fromkeys(smart, 0)
    params = [p for p in model.parameters() if p.requires_grad]
    steps_taken = dict.fromkeys(optimizers, 0)
    watch = FiniteWatch(device)
    for step, step_tasks in enumerate(tqdm(plan, desc=f"{name} epoch {epoch}", leave=False, unit="step")):
        if step % runtime.read_every == 0:
            watch.check()
        losses, step_batches = [], []
        for task in step_tasks:
            with region("data"):
                idx = next(streams[task])
                batch = train[task].batch(idx, device)
            step_batches.append((task, batch))
            with region("forward"), runtime.autocast():
                embedded = model.embed_inputs(batch)
                outputs = model.outputs_from_embedded(task, embedded)
            with region("forward"):
                loss = tasks.get(task).loss(outputs, batch["labels"], weights.get(task))
            where = f"{name}, epoch {epoch}, step {step}, task {task}"
            watch.watch(loss, where)
            sums[task] = sums[task] + _summed(loss, len(idx))
            seen[task] += len(idx)
            if task in smart:
                measure = smart_steps[task] < CONTROL_ALL or smart_steps[task] % CONTROL_EVERY == 0
                smart_steps[task] += 1
                with region("smart"):
                    adversarial, control = smart_terms(model, task, embedded, outputs, smart[task], runtime,
                                                       control=measure)
                watch.watch(adversarial, f"{where} (SMART term)")
                adv_sums[task] = adv_sums[task] + _summed(adversarial, len(idx))
                if control is not None:
                    control_sums[task] = control_sums[task] + _summed(control, len(idx))
                    control_seen[task] += len(idx)
                loss = loss + smart[task].weight * adversarial
            losses.append(loss * settings.loss_weights[task] if len(step_tasks) > 1 else loss)
        # With BERT frozen, a head-less task (STS without a similarity layer) has nothing to train.
        losses = [loss for loss in losses if loss.requires_grad]
        if not losses:
            continue
        key = step_tasks[0] if settings.task_optimizers else "all"
        optimizer = optimizers[key]
        optimizer.zero_grad(set_to_none=True)
        with region("backward"):
            if settings.schedule == "pcgrad" and len(losses) > 1:
                pcgrad_backward(losses, params)
            else:
                sum(losses).backward()
        with region("clip"):
            clip_gradients(optimizer, settings.max_grad_norm)
        with region("optimizer"):
            if isinstance(optimizer, SophiaG):
                optimizer.step(bs=sum(len(b["labels"]) for _, b in step_batches))
                if steps_taken[key] % settings.hessian_interval == settings.hessian_interval - 1:
                    _refresh_hessian(model, optimizer, step_batches, runtime)
            else:
                optimizer.step()
        schedulers[key].step()
        steps_taken[key] += 1
    watch.check()
    sums, adv_sums, control_sums = (_to_host(v) for v in (sums, adv_sums, control_sums))
    first = next(iter(optimizers.values()))
    record = Epoch(epoch, bert_frozen=frozen, qqp_only=qqp_only, lr=first.param_groups[0]["lr"],
                   steps=len(plan), examples=sum(seen.values()))
    sophias = [o for o in optimizers.values() if isinstance(o, SophiaG)]
    if sophias:  # which regime Sophia ran in: clipped sign steps, or Newton-like ones
        estimated = [o.clipped_share(reset=False, estimated_only=True) for o in sophias]
        record.sophia = {"clipped_share": _mean_of_known([o.clipped_share() for o in sophias]),
                         "clipped_share_estimated": _mean_of_known(estimated),
                         "hessian_mean": _mean_of_known([o.hessian_mean() for o in sophias]),
                         "rho_half": _mean_of_known([o.rho_unclipping(0.5) for o in sophias])}
    for task in train:
        record.train_loss[task] = sums[task] / seen[task] if seen[task] else math.nan
        record.task_steps[task] = sum(task in step for step in plan)  # its share of the budget
        if task in smart:
            record.smart_loss[task] = adv_sums[task] / seen[task] if seen[task] else math.nan
            record.smart_control[task] = (control_sums[task] / control_seen[task] if control_seen[task]
                                          else math.nan)
    record.seconds = time.perf_counter() - started
    return record
