"""Part 1 (notebook 01): SST-5 with one classifier on BERT, frozen (`pretrain`) or trained (`finetune`).

Its trainer follows the same standard recipe as the multitask one (`minbert.training`):
seeded, linear warmup and decay, gradient-norm clipping, NaN guard, the epoch kept chosen
on held-out rows carved from train (on dev only where none are given).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from minbert import tasks
from minbert.bert import BertModel, count_parameters
from minbert.data import TaskData, batch_indices, load_tasks, on_device, pad_batch
from minbert.epochs import selected_on
from minbert.evaluation import (
    predict_logits,
    predictions_from_outputs,
    sentence_embeddings,
    write_predictions,
)
from minbert.finished import load_run, save_run
from minbert.models import SentenceClassifier
from minbert.notebook_settings import Part1Config
from minbert.optim import AdamW
from minbert.records import RunRecord, predictions_dir
from minbert.runtime import CPU, Runtime, keep_freed_memory, seed_everything, to_device
from minbert.training import FiniteWatch, clip_gradients, lr_scheduler


def train_classifier(model: SentenceClassifier, train_tokens: Sequence[Sequence[int]],
                     train_labels: Sequence[int], dev_tokens: Sequence[Sequence[int]],
                     dev_labels: Sequence[int], *, epochs: int, lr: float, batch_size: int,
                     weight_decay: float = 0.0, seed: int = 0, runtime: Runtime = CPU,
                     eval_batch_size: int = 128, bucket: bool = True, desc: str = "train",
                     lr_schedule: str, warmup_ratio: float, max_grad_norm: float | None,
                     heldout: tuple[Sequence[Sequence[int]], Sequence[int]] | None = None,
                     on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train with cross-entropy and our AdamW (the lr following `lr_schedule`, gradients clipped to
    `max_grad_norm`); keep the weights of the best epoch: by accuracy on the `heldout` (tokens, labels)
    carved from train where given, else on dev.

    With BERT frozen (`model.freeze_bert`), the sentence embeddings are computed
    once, without dropout, and the head trains on them: the same model as running
    frozen BERT every step, minus BERT's dropout noise, at a fraction of the cost.
    Returns one record per epoch (train loss, dev loss and accuracy, seconds).
    """
    device = runtime.device
    seed_everything(seed)
    keep_freed_memory()
    model.to(device)
    train_y = torch.as_tensor(list(train_labels), dtype=torch.long)
    dev_y = torch.as_tensor(list(dev_labels), dtype=torch.long)
    train_features = dev_features = heldout_features = None
    if model.freeze_bert:
        train_features = sentence_embeddings(model, train_tokens, eval_batch_size, runtime)
        dev_features = sentence_embeddings(model, dev_tokens, eval_batch_size, runtime)
        if heldout is not None:
            heldout_features = sentence_embeddings(model, heldout[0], eval_batch_size, runtime)
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                      weight_decay=weight_decay)
    lengths = [len(t) for t in train_tokens]
    steps = epochs * math.ceil(len(lengths) / batch_size)
    scheduler = lr_scheduler(optimizer, lr_schedule, steps, warmup_ratio)
    history: list[dict] = []
    best_acc, best_state = -math.inf, None
    for epoch in tqdm(range(1, epochs + 1), desc=desc, unit="epoch"):
        started = time.perf_counter()
        model.train()
        total, count = torch.zeros((), dtype=torch.float64, device=device), 0  # summed on the device
        watch = FiniteWatch(device)  # read every `runtime.read_every` steps: a GPU step waits for nothing
        batches = list(batch_indices(lengths, batch_size, shuffle=True, seed=seed + epoch,
                                     bucket=bucket))
        for step, idx in enumerate(tqdm(batches, desc=f"epoch {epoch}", leave=False, unit="batch")):
            if step % runtime.read_every == 0:
                watch.check()
            with runtime.autocast():
                if train_features is not None:
                    logits = model.classify(to_device(train_features[idx], device))
                else:
                    batch = on_device(pad_batch([train_tokens[i] for i in idx]), device)
                    logits = model(batch["input_ids"], batch["attention_mask"], batch["packing"])
            loss = F.cross_entropy(logits.float(), to_device(train_y[idx], device))
            watch.watch(loss, f"{desc}, epoch {epoch}, batch {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(optimizer, max_grad_norm)
            optimizer.step()
            scheduler.step()
            total += loss.detach().double() * len(idx)
            count += len(idx)
        watch.check()
        dev_logits = predict_logits(model, dev_tokens, eval_batch_size, runtime, dev_features)
        dev_acc = float((dev_logits.argmax(-1) == dev_y).float().mean())
        record = {"epoch": epoch, "train_loss": float(total) / count,
                  "dev_loss": float(F.cross_entropy(dev_logits, dev_y)), "dev_acc": dev_acc,
                  "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started,
                  "steps": len(batches), "examples": count}
        if heldout is not None:
            held_logits = predict_logits(model, heldout[0], eval_batch_size, runtime, heldout_features)
            held_y = torch.as_tensor(list(heldout[1]), dtype=torch.long)
            record.update(heldout_loss=float(F.cross_entropy(held_logits, held_y)),
                          heldout_acc=float((held_logits.argmax(-1) == held_y).float().mean()))
        selected = selected_on(record.get("heldout_acc"), dev_acc)
        history.append(record)
        if on_epoch:
            on_epoch(record)
        if selected > best_acc:
            best_acc, best_state = selected, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def load_sentence_task(task: str, cfg: Part1Config, tokenizer) -> TaskData:
    """One single-sentence task's splits as the config says (dev and test cut to `dev_limit`)."""
    heldout = {task: cfg.heldout_size} if cfg.heldout_size else None
    return load_tasks(tokenizer, cfg.max_length, names=(task,), train_limits={task: cfg.train_limit},
                      dev_limits={task: cfg.dev_limit}, test_limit=cfg.dev_limit, seed=cfg.seed,
                      strict=cfg.strict_data, heldout_sizes=heldout)


@dataclass
class Part1Run:
    """One Part 1 run: its record, its SST predictions on dev and test (what the comparison resamples and
    the prediction files hold; class labels, int64) and its model, or None where the run was taken from
    its finished-run file (`minbert.finished`, which keeps the labels in a byte each)."""

    record: RunRecord
    labels: dict[str, np.ndarray]
    model: SentenceClassifier | None = None

    def predictions(self, split: str) -> np.ndarray:
        return self.labels[split].astype(np.int64)


def run_sst_mode(cfg: Part1Config, mode: str, data: TaskData, runtime: Runtime, seed: int | None = None,
                 notebook: str | None = None) -> Part1Run:
    """Train one Part 1 classifier (`pretrain` or `finetune`) with a run seed (default: the config's):
    its record (`<mode>-seed<seed>`: dev accuracy of the best epoch, per-epoch history), the kept
    epoch's dev and test predictions, and the model. With a `notebook`, the run leaves its finished-run file,
    and with `cfg.resume` one trained with the same settings and code is taken from it instead."""
    seed = cfg.seed if seed is None else seed
    name = f"{mode}-seed{seed}"
    settings = {**cfg.model_dump(mode="json", exclude={"device", "resume", "seeds", "modes"}),
                "mode": mode, "run_seed": seed}
    if notebook is not None and cfg.resume:
        found = load_run(notebook, cfg.profile, name, settings)
        if found is not None:
            return Part1Run(found[0], found[1]["labels"])
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
    best = max(history, key=lambda h: selected_on(h.get("heldout_acc"), h["dev_acc"]))  # the epoch kept
    config = {"mode": mode, "seed": seed, "epochs": epochs, "lr": lr, "batch_size": cfg.batch_size,
              "pooling": cfg.pooling,
              "dropout": cfg.dropout, "weight_decay": cfg.weight_decay, "optimizer": "minbert.optim.AdamW",
              "lr_schedule": cfg.lr_schedule, "warmup_ratio": cfg.warmup_ratio,
              "max_grad_norm": cfg.max_grad_norm,
              "precision": runtime.precision,
              "trainable_parameters": count_parameters(model, trainable_only=True)}
    heldout = {"sst_acc": best["heldout_acc"]} if held is not None else None
    record = RunRecord(name, {"sst_acc": best["dev_acc"]}, best["epoch"], history, config,
                       heldout=heldout, group=mode, dev_sizes={"sst": len(dev)},
                       train_sizes={"sst": len(train)})
    labels = {split: predictions_from_outputs("sst", predict_logits(model, data.tensors[split]["sst"].a,
                                                                    cfg.eval_batch_size, runtime))
              for split in ("dev", "test")}
    if notebook is not None:
        save_run(notebook, cfg.profile, name, settings, record,
                 {"labels": {split: values.astype(np.int8) for split, values in labels.items()}})
    return Part1Run(record, labels, model)


def save_sst_predictions(run: Part1Run, data: TaskData, notebook: str, profile: str) -> dict[str, list[int]]:
    """Dev and test-student predictions of a Part 1 run as CSV (id, sentiment) under
    reports/predictions/<notebook>.<profile>/, named after the run; returns the dev and test labels."""
    task = tasks.get("sst")
    predicted = {}
    for split_name in ("dev", "test"):
        labels = run.predictions(split_name).tolist()
        write_predictions(predictions_dir(notebook, profile) / f"{run.record.name}-sst-{split_name}.csv",
                          data.tensors[split_name]["sst"].ids, labels, task.label_column)
        predicted[split_name] = labels
    return predicted
