"""Multitask training of `MultitaskBert` on SST, QQP and STS.

Task data as token ids, each task's loss, dev metrics, and a trainer that follows
a schedule (`minbert.schedules`), checkpoints after every epoch (tensors only,
written atomically) and resumes from the last checkpoint to the same result as
a run that was never interrupted.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from minbert.bert import Embedded
from minbert.data import TASKS as TASK_SPECS
from minbert.data import TaskSplit, batch_indices, encode, encode_pairs, pad_batch
from minbert.files import atomic_path
from minbert.models import TASKS, MultitaskBert
from minbert.optim import AdamW, SophiaG
from minbert.pcgrad import pcgrad_backward
from minbert.precision import autocast
from minbert.schedules import STRATEGIES, epoch_plan, qqp_batches_after_phase
from minbert.smart import SmartSettings, smart_loss
from minbert.training import check_finite, outputs_in_order

METRICS = {"sst": "sst_acc", "qqp": "qqp_acc", "sts": "sts_pearson"}
OPTIMIZERS = ("adamw", "sophia")
NUM_CLASSES = {"sst": 5, "qqp": 2}


@dataclass
class TaskTensors:
    """One task split as token ids: sentence a, sentence b for pairs, and the labels. In
    cross-encoder form a pair is one sequence in `a`, its second sentence from `second_starts`."""

    task: str
    ids: list[str]
    a: list[list[int]]
    b: list[list[int]] | None
    labels: list | None
    second_starts: list[int] | None = None

    def __len__(self) -> int:
        return len(self.a)

    def lengths(self) -> list[int]:
        if self.b is None:
            return [len(t) for t in self.a]
        return [max(len(x), len(y)) for x, y in zip(self.a, self.b, strict=True)]

    def batch(self, idx: list[int], device: torch.device) -> dict:
        starts = None if self.second_starts is None else [self.second_starts[i] for i in idx]
        out = {"a": {k: v.to(device) for k, v in pad_batch([self.a[i] for i in idx],
                                                           second_starts=starts).items()}}
        if self.b is not None:
            out["b"] = {k: v.to(device) for k, v in pad_batch([self.b[i] for i in idx]).items()}
        if self.labels is not None:
            dtype = torch.float32 if self.task == "sts" else torch.long
            out["labels"] = torch.tensor([self.labels[i] for i in idx], dtype=dtype, device=device)
        return out


def tensors_for(split: TaskSplit, tokenizer, max_length: int, cross_encoder: bool = False) -> TaskTensors:
    """Token ids of a task split: each sentence of a pair on its own (bi-encoder), or the two
    together as one sequence with token types (cross-encoder)."""
    pair = TASK_SPECS[split.task].is_pair
    labels = None if split.split == "test" else [e.label for e in split.examples]
    ids = [e.id for e in split.examples]
    if pair and cross_encoder:
        joint, starts = encode_pairs(tokenizer, split, max_length)
        return TaskTensors(split.task, ids, joint, None, labels, starts)
    return TaskTensors(split.task, ids, encode(tokenizer, split, max_length),
                       encode(tokenizer, split, max_length, text=1) if pair else None, labels)


@dataclass(frozen=True)
class MultitaskRun:
    """The settings of one multitask training run (one strategy of the study)."""

    name: str
    strategy: str = "sequential"
    order: tuple[str, ...] = ("sts", "sst", "qqp")
    epochs: int = 1
    lr: float = 2e-5
    weight_decay: float = 0.0
    batch_size: int = 32
    loss_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TASKS, 1.0))
    class_weights: bool = False
    qqp_only_epochs: int = 0
    freeze_last_epochs: int = 0
    seed: int = 0
    optimizer: str = "adamw"  # or "sophia"
    rho: float = 0.04  # sophia: clipping scale
    hessian_interval: int = 10  # sophia: refresh the Hessian estimate every k steps
    task_optimizers: bool = False  # one optimizer per task, as the study did
    # per task (with task_optimizers): lr, rho, weight_decay in place of the run's
    task_settings: dict[str, dict[str, float]] = field(default_factory=dict)
    # SMART per task: SmartSettings fields (an empty dict: the defaults); tasks not named go without
    smart: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"run {self.name}: unknown optimizer {self.optimizer!r}; "
                             f"known: {list(OPTIMIZERS)}")
        if self.task_optimizers and self.strategy in ("combined", "pcgrad"):
            raise ValueError(f"run {self.name}: one optimizer per task needs one task per step "
                             f"(sequential or round-robin), not {self.strategy!r}")
        for task, settings in self.task_settings.items():
            unknown = set(settings) - {"lr", "rho", "weight_decay"}
            if task not in TASKS or unknown:
                raise ValueError(f"run {self.name}: task_settings[{task!r}] must be a task of {list(TASKS)} "
                                 f"with keys lr, rho, weight_decay; got {sorted(settings)}")
            if not self.task_optimizers:
                raise ValueError(f"run {self.name}: task_settings need task_optimizers=True")
        for task, settings in self.smart.items():
            if task not in TASKS:
                raise ValueError(f"run {self.name}: smart names unknown task {task!r}; known: {list(TASKS)}")
            try:
                SmartSettings(**settings)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"run {self.name}: smart[{task!r}]: {exc}") from None
        if self.strategy not in STRATEGIES:
            raise ValueError(f"run {self.name}: unknown strategy {self.strategy!r}; "
                             f"known: {list(STRATEGIES)}")
        if sorted(self.order) != sorted(TASKS):
            raise ValueError(f"run {self.name}: order {self.order} must name each of {list(TASKS)} once")
        if self.qqp_only_epochs + self.freeze_last_epochs > self.epochs:
            raise ValueError(f"run {self.name}: qqp_only_epochs + freeze_last_epochs exceed epochs")


def class_weight_tensor(labels: list[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, n / (classes * count): a balanced set gets all ones."""
    counts = torch.bincount(torch.tensor(labels), minlength=num_classes).float()
    return len(labels) / (num_classes * counts.clamp(min=1.0))


def embed_inputs(model: MultitaskBert, batch: dict) -> list[Embedded]:
    """The embedding layer's output for each input of the batch (one sentence, or a pair)."""
    inputs = [batch[s] for s in ("a", "b") if s in batch]
    return [model.bert.embed(x["input_ids"], x["attention_mask"], x.get("token_type_ids")) for x in inputs]


def task_outputs(model: MultitaskBert, task: str, batch: dict) -> torch.Tensor:
    return model.outputs_from_embedded(task, embed_inputs(model, batch))


def task_loss(task: str, outputs: torch.Tensor, labels: torch.Tensor,
              class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy for SST, binary cross-entropy for QQP (both optionally class-weighted),
    MSE on the 0..5 score for STS."""
    outputs = outputs.float()
    if task == "sst":
        return F.cross_entropy(outputs, labels, weight=class_weights)
    if task == "qqp":
        weight = class_weights[labels] if class_weights is not None else None
        return F.binary_cross_entropy_with_logits(outputs, labels.float(), weight=weight)
    return F.mse_loss(outputs, labels)


def sampled_label_loss(task: str, outputs: torch.Tensor) -> torch.Tensor:
    """The task's loss on labels drawn from the model's own predictions, for Sophia's Hessian.

    The gradient g of this mean loss over bs predictions gives bs * g^2, whose
    expectation is the diagonal of the Gauss-Newton matrix of the real loss (the
    Gauss-Newton-Bartlett estimator). Classification: labels sampled from the
    softmax (SST) or sigmoid (QQP). STS regression with MSE: the Gauss-Newton
    matrix of (f - y)^2 is 2 J^T J, and a label y = f + e with e ~ N(0, 1/2) gives
    exactly that in expectation (a Gaussian likelihood in place of the softmax).
    """
    outputs = outputs.float()
    with torch.no_grad():
        if task == "sst":
            labels = torch.multinomial(outputs.softmax(-1), 1).squeeze(1)
        elif task == "qqp":
            labels = torch.bernoulli(torch.sigmoid(outputs)).long()
        else:
            labels = outputs + torch.randn_like(outputs) * math.sqrt(0.5)
    return task_loss(task, outputs, labels)


@torch.no_grad()
def predict(model: MultitaskBert, data: TaskTensors, batch_size: int, device: torch.device,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Raw outputs in input order: SST logits (N, 5), QQP logits (N,), STS scores (N,)."""
    model.eval()

    def outputs(idx: list[int]) -> torch.Tensor:
        with autocast(device, dtype):
            return task_outputs(model, data.task, data.batch(idx, device))

    shape = (len(data), 5) if data.task == "sst" else (len(data),)
    return outputs_in_order(data.lengths(), batch_size, outputs, shape)


def labels_from_outputs(task: str, outputs: torch.Tensor) -> list:
    """Predicted labels as the task files hold them: SST class, QQP 0/1, STS score."""
    if task == "sst":
        return outputs.argmax(-1).tolist()
    if task == "qqp":
        return (outputs > 0).long().tolist()
    return [round(float(s), 4) for s in outputs]


def dev_metrics(model: MultitaskBert, dev: dict[str, TaskTensors], batch_size: int,
                device: torch.device, dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Accuracy for SST and QQP, Pearson correlation for STS, and each task's dev loss."""
    metrics = {}
    for task, data in dev.items():
        outputs = predict(model, data, batch_size, device, dtype)
        gold = torch.tensor(data.labels, dtype=torch.float32 if task == "sts" else torch.long)
        metrics[f"{task}_dev_loss"] = float(task_loss(task, outputs, gold))
        if task == "sts":
            metrics[METRICS[task]] = float(np.corrcoef(outputs.numpy(), gold.numpy())[0, 1])
        else:
            predicted = torch.tensor(labels_from_outputs(task, outputs))
            metrics[METRICS[task]] = float((predicted == gold).float().mean())
    return metrics


def mean_score(metrics: dict[str, float]) -> float:
    return float(np.mean([metrics[m] for m in METRICS.values() if m in metrics]))


def _save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def train_multitask(model: MultitaskBert, train: dict[str, TaskTensors], dev: dict[str, TaskTensors],
                    run: MultitaskRun, *, device: torch.device, dtype: torch.dtype = torch.float32,
                    eval_batch_size: int = 128, checkpoint_dir: Path | None = None, resume: bool = False,
                    log_dir: Path | None = None, stop_after_epoch: int | None = None,
                    on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train following the run's strategy; keep the weights of the best epoch (mean dev score).

    With `checkpoint_dir`, `last.pt` (model, optimizer, random state, history) and
    `best.pt` are written after every epoch; `resume` continues from `last.pt`. TensorBoard
    scalars go to `log_dir`: replaced by a fresh run, continued by a resumed one.
    `stop_after_epoch` ends the run early, as a kill would (for tests). A NaN or
    infinite loss raises TrainingError and leaves the last good checkpoint in place.
    """
    model.to(device)
    optimizers = make_optimizers(model, run)
    weights = {task: class_weight_tensor(train[task].labels, NUM_CLASSES[task]).to(device)
               for task in ("sst", "qqp") if run.class_weights and task in train}
    history: list[dict] = []
    start_epoch = 1
    last, best = (checkpoint_dir / "last.pt", checkpoint_dir / "best.pt") if checkpoint_dir else (None, None)
    if resume and last is not None and last.is_file():
        state = torch.load(last, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        for key, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        torch.set_rng_state(state["rng"])
        history = json.loads(state["history"])
        start_epoch = int(state["epoch"]) + 1
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        if start_epoch == 1 and log_dir.exists():
            shutil.rmtree(log_dir)  # a fresh run's curves must not mix with an earlier run's
        writer = SummaryWriter(str(log_dir))
    try:
        for epoch in range(start_epoch, run.epochs + 1):
            record = _train_epoch(model, optimizers, train, run, epoch, weights, device, dtype)
            record.update(dev_metrics(model, dev, eval_batch_size, device, dtype))
            record["dev_mean"] = mean_score(record)
            history.append(record)
            if writer is not None:
                for key, value in record.items():
                    if key != "epoch":
                        writer.add_scalar(key.replace("_", "/", 1), value, epoch)
                writer.add_scalar("lr", run.lr, epoch)
            if checkpoint_dir is not None:
                if record["dev_mean"] >= max(h["dev_mean"] for h in history):
                    _save_checkpoint(best, {"model": model.state_dict()})
                _save_checkpoint(last, {"epoch": epoch, "model": model.state_dict(),
                                        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                                        "rng": torch.get_rng_state(),
                                        "history": json.dumps(history), "run": json.dumps(asdict(run))})
            if on_epoch:
                on_epoch(record)
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                return history
    finally:
        if writer is not None:
            writer.close()
    if best is not None and best.is_file():
        model.load_state_dict(torch.load(best, map_location=device, weights_only=True)["model"])
    return history


def make_optimizers(model: MultitaskBert, run: MultitaskRun) -> dict[str, AdamW | SophiaG]:
    """The run's optimizer over all weights, keyed "all"; or, with `task_optimizers`, one per task
    (each over all weights, with the task's own lr, rho and weight decay where given)."""
    def build(settings: dict[str, float]) -> AdamW | SophiaG:
        lr, weight_decay = settings.get("lr", run.lr), settings.get("weight_decay", run.weight_decay)
        if run.optimizer == "sophia":
            return SophiaG(model.parameters(), lr=lr, rho=settings.get("rho", run.rho),
                           weight_decay=weight_decay)
        return AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    if run.task_optimizers:
        return {task: build(run.task_settings.get(task, {})) for task in TASKS}
    return {"all": build({})}


SMART_KINDS = {"sst": "multiclass", "qqp": "binary", "sts": "regression"}


def _smart_term(model: MultitaskBert, task: str, embedded: list[Embedded], outputs: torch.Tensor,
                settings: SmartSettings, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """SMART's adversarial divergence for one task batch, perturbing the embedding output."""
    kind = SMART_KINDS[task]
    if task == "sts" and settings.naive_regression:
        kind = "regression-as-classification"

    def forward(deltas: list[torch.Tensor]) -> torch.Tensor:
        with autocast(device, dtype):
            shifted = [e.shifted(d) for e, d in zip(embedded, deltas, strict=True)]
            return model.outputs_from_embedded(task, shifted)

    return smart_loss(forward, [e.hidden for e in embedded], outputs, kind, settings)


def _refresh_hessian(model: MultitaskBert, optimizer: SophiaG, step_batches: list[tuple[str, dict]],
                     device: torch.device, dtype: torch.dtype) -> None:
    """Sophia's every-k-steps Hessian refresh on this step's batches, with sampled labels."""
    optimizer.zero_grad(set_to_none=True)
    losses = []
    for task, batch in step_batches:
        with autocast(device, dtype):
            outputs = task_outputs(model, task, batch)
        losses.append(sampled_label_loss(task, outputs))
    losses = [loss for loss in losses if loss.requires_grad]
    if losses:
        sum(losses).backward()
        optimizer.update_hessian()
    optimizer.zero_grad(set_to_none=True)


def _train_epoch(model: MultitaskBert, optimizers: dict, train: dict[str, TaskTensors], run: MultitaskRun,
                 epoch: int, weights: dict, device: torch.device, dtype: torch.dtype) -> dict:
    started = time.perf_counter()
    frozen = epoch > run.epochs - run.freeze_last_epochs
    for p in model.bert.parameters():
        p.requires_grad = not frozen
    model.train()
    batches = {task: list(batch_indices(data.lengths(), run.batch_size, shuffle=True,
                                        seed=run.seed * 100_003 + epoch * 101 + i))
               for i, (task, data) in enumerate(sorted(train.items()))}
    counts = {task: len(b) for task, b in batches.items()}
    qqp_only = epoch <= run.qqp_only_epochs
    if run.qqp_only_epochs and not qqp_only:
        counts["qqp"] = qqp_batches_after_phase(counts)
    plan = epoch_plan(run.strategy, counts, run.order, qqp_only=qqp_only)
    position = dict.fromkeys(train, 0)
    sums, seen = dict.fromkeys(train, 0.0), dict.fromkeys(train, 0)
    smart = {task: SmartSettings(**settings) for task, settings in run.smart.items()}
    adv_sums = dict.fromkeys(smart, 0.0)
    params = [p for p in model.parameters() if p.requires_grad]
    steps_taken = dict.fromkeys(optimizers, 0)
    for step, tasks in enumerate(tqdm(plan, desc=f"{run.name} epoch {epoch}", leave=False, unit="step")):
        losses, step_batches = [], []
        for task in tasks:
            idx = batches[task][position[task]]
            position[task] += 1
            batch = train[task].batch(idx, device)
            step_batches.append((task, batch))
            with autocast(device, dtype):
                embedded = embed_inputs(model, batch)
                outputs = model.outputs_from_embedded(task, embedded)
            loss = task_loss(task, outputs, batch["labels"], weights.get(task))
            where = f"{run.name}, epoch {epoch}, step {step}, task {task}"
            check_finite(loss, where)
            sums[task] += loss.item() * len(idx)
            seen[task] += len(idx)
            if task in smart:
                adversarial = _smart_term(model, task, embedded, outputs, smart[task], device, dtype)
                check_finite(adversarial, f"{where} (SMART term)")
                adv_sums[task] += adversarial.item() * len(idx)
                loss = loss + smart[task].weight * adversarial
            losses.append(loss * run.loss_weights[task] if len(tasks) > 1 else loss)
        # With BERT frozen, a head-less task (STS without a similarity layer) has nothing to train.
        losses = [loss for loss in losses if loss.requires_grad]
        if not losses:
            continue
        key = tasks[0] if run.task_optimizers else "all"
        optimizer = optimizers[key]
        optimizer.zero_grad(set_to_none=True)
        if run.strategy == "pcgrad" and len(losses) > 1:
            pcgrad_backward(losses, params)
        else:
            sum(losses).backward()
        if isinstance(optimizer, SophiaG):
            optimizer.step(bs=len(step_batches[0][1]["labels"]))
            if steps_taken[key] % run.hessian_interval == run.hessian_interval - 1:
                _refresh_hessian(model, optimizer, step_batches, device, dtype)
        else:
            optimizer.step()
        steps_taken[key] += 1
    record = {"epoch": epoch, "seconds": 0.0, "bert_frozen": frozen, "qqp_only": qqp_only}
    for task in train:
        record[f"{task}_train_loss"] = sums[task] / seen[task] if seen[task] else math.nan
        if task in smart:
            record[f"{task}_smart_loss"] = adv_sums[task] / seen[task] if seen[task] else math.nan
    record["seconds"] = time.perf_counter() - started
    return record
