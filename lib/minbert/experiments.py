"""Experiments as the notebooks run them: a validated config in, results records out.

Kept here, not in the notebooks, so that a notebook stays narrative plus calls
and the same experiment can be run from a test or a script.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from minbert import paths
from minbert.bert import BertModel, count_parameters
from minbert.config import FinalConfig, MultitaskConfig, Part1Config
from minbert.data import TASKS as TASK_SPECS
from minbert.data import TaskSplit, encode, load_split, resolve_file
from minbert.evaluation import write_predictions
from minbert.models import MultitaskBert, SentenceClassifier
from minbert.multitask import (
    MultitaskRun,
    TaskTensors,
    labels_from_outputs,
    predict,
    tensors_for,
    train_multitask,
)
from minbert.precision import resolve_precision
from minbert.training import predict_logits, train_classifier

SST_LABELS = ["negative", "somewhat negative", "neutral", "somewhat positive", "positive"]


@dataclass
class SentenceTaskData:
    """The three splits of a one-sentence task and their token ids."""

    train: TaskSplit
    dev: TaskSplit
    test: TaskSplit
    tokens: dict[str, list[list[int]]]

    def summary(self) -> dict:
        return {"train": self.train.summary(), "dev": self.dev.summary(),
                "test": self.test.summary()}


def load_sentence_task(task: str, cfg: Part1Config, tokenizer) -> SentenceTaskData:
    """Parse, subsample (per the config's limits, seeded) and tokenise a task's splits."""
    splits = {
        "train": load_split(task, "train", strict=cfg.strict_data).subset(cfg.train_limit, cfg.seed),
        "dev": load_split(task, "dev", strict=cfg.strict_data).subset(cfg.dev_limit, cfg.seed),
        "test": load_split(task, "test", strict=cfg.strict_data).subset(cfg.dev_limit, cfg.seed),
    }
    tokens = {name: encode(tokenizer, split, cfg.max_length) for name, split in splits.items()}
    return SentenceTaskData(tokens=tokens, **splits)


def run_sst_mode(cfg: Part1Config, mode: str, data: SentenceTaskData,
                 device: torch.device) -> tuple[dict, SentenceClassifier]:
    """Train one Part 1 classifier (`pretrain` or `finetune`); return its results record
    (dev accuracy of the best epoch, per-epoch history) and the trained model."""
    bert = BertModel.from_pretrained(cfg.checkpoint, hidden_dropout_prob=cfg.dropout)
    model = SentenceClassifier(bert, num_classes=5, dropout=cfg.dropout, pooling=cfg.pooling,
                               freeze_bert=mode == "pretrain")
    dtype = resolve_precision(cfg.precision, device)
    epochs = cfg.pretrain_epochs if mode == "pretrain" else cfg.finetune_epochs
    lr = cfg.pretrain_lr if mode == "pretrain" else cfg.finetune_lr
    history = train_classifier(
        model, data.tokens["train"], [e.label for e in data.train.examples],
        data.tokens["dev"], [e.label for e in data.dev.examples], epochs=epochs, lr=lr,
        batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, seed=cfg.seed, device=device,
        eval_batch_size=cfg.eval_batch_size, desc=mode, dtype=dtype)
    best = max(history, key=lambda h: h["dev_acc"])
    record = {
        "name": mode,
        "config": {"mode": mode, "epochs": epochs, "lr": lr, "batch_size": cfg.batch_size,
                   "pooling": cfg.pooling, "dropout": cfg.dropout,
                   "weight_decay": cfg.weight_decay, "optimizer": "minbert.optim.AdamW",
                   "precision": str(dtype).removeprefix("torch."),
                   "trainable_parameters": count_parameters(model, trainable_only=True)},
        "dev": {"sst_acc": best["dev_acc"]},
        "best_epoch": best["epoch"],
        "history": history,
    }
    return record, model


def predict_and_save(model: SentenceClassifier, data: SentenceTaskData, mode: str, notebook: str,
                     cfg: Part1Config, device: torch.device) -> dict[str, list[int]]:
    """Dev and test-student predictions of a trained model, written as CSV files
    (id, sentiment) under reports/predictions/<notebook>/; returns the dev and test labels."""
    out_dir = paths.reports_dir() / "predictions" / notebook
    predicted = {}
    for split_name in ("dev", "test"):
        split = getattr(data, split_name)
        logits = predict_logits(model, data.tokens[split_name], cfg.eval_batch_size, device,
                                dtype=resolve_precision(cfg.precision, device))
        labels = logits.argmax(-1).tolist()
        write_predictions(out_dir / f"{mode}-sst-{split_name}.csv",
                          [e.id for e in split.examples], labels, "sentiment")
        predicted[split_name] = labels
    return predicted



# ----------------------------------------------------------------------------- 02: multitask sBERT

MULTITASK = ("sst", "qqp", "sts")


@dataclass
class MultitaskData:
    """Train, dev and (where the file exists) test-student token ids of the three tasks."""

    train: dict[str, TaskTensors]
    dev: dict[str, TaskTensors]
    test: dict[str, TaskTensors]
    summary: dict
    dev_splits: dict[str, TaskSplit] = field(default_factory=dict)  # the dev rows, for error analysis

    @property
    def dev_sizes(self) -> dict[str, int]:
        """Dev rows per task: what a score's margin of error depends on."""
        return {task: splits["dev"]["size"] for task, splits in self.summary.items()}


def load_multitask(cfg: MultitaskConfig, tokenizer, cross_encoder: bool = False) -> MultitaskData:
    """Parse, subsample (seeded, per the config's limits) and tokenise SST, QQP and STS; pairs
    as one sequence each with `cross_encoder`."""
    limits = {"sst": cfg.sst_train_limit, "qqp": cfg.qqp_train_limit, "sts": cfg.sts_train_limit}
    train, dev, test, summary, dev_splits = {}, {}, {}, {}, {}
    for task in MULTITASK:
        splits = {"train": load_split(task, "train", strict=cfg.strict_data).subset(limits[task], cfg.seed),
                  "dev": load_split(task, "dev", strict=cfg.strict_data).subset(cfg.dev_limit, cfg.seed)}
        if resolve_file(task, "test").is_file():
            splits["test"] = load_split(task, "test", strict=cfg.strict_data)
        summary[task] = {name: split.summary() for name, split in splits.items()}
        dev_splits[task] = splits["dev"]
        if "test" not in splits:
            summary[task]["test"] = {"source": TASK_SPECS[task].files["test"], "size": 0,
                                     "skipped": 0, "note": "file not available"}
        train[task] = tensors_for(splits["train"], tokenizer, cfg.max_length, cross_encoder)
        dev[task] = tensors_for(splits["dev"], tokenizer, cfg.max_length, cross_encoder)
        if "test" in splits:
            test[task] = tensors_for(splits["test"], tokenizer, cfg.max_length, cross_encoder)
    return MultitaskData(train, dev, test, summary, dev_splits)


def strategy_run(cfg: MultitaskConfig, name: str) -> tuple[MultitaskRun, dict]:
    """The study's strategies as run settings plus model options."""
    base = dict(name=name, strategy="sequential", order=("sts", "sst", "qqp"), epochs=cfg.epochs,
                lr=cfg.lr, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, seed=cfg.seed)
    model_options = {}
    if name == "baseline":
        base["epochs"] = cfg.baseline_epochs
    elif name == "qqp-first":
        base["order"] = ("qqp", "sts", "sst")
    elif name == "round-robin":
        base.update(strategy="round-robin", order=("sts", "qqp", "sst"))
    elif name in ("combined", "pcgrad"):
        weights = {"sst": cfg.loss_weight_sst, "qqp": cfg.loss_weight_qqp, "sts": cfg.loss_weight_sts}
        base.update(strategy=name, order=("sst", "qqp", "sts"), loss_weights=weights)
    elif name == "qqp-separate":
        base.update(qqp_only_epochs=cfg.qqp_only_epochs, epochs=cfg.epochs + cfg.qqp_only_epochs)
    elif name == "class-weights":
        base["class_weights"] = True
    elif name == "freeze":
        base.update(freeze_last_epochs=cfg.freeze_last_epochs, epochs=cfg.epochs + cfg.freeze_last_epochs)
    elif name == "shared-similarity":
        model_options["shared_similarity"] = True
    else:
        raise ValueError(f"unknown strategy {name!r}")
    return MultitaskRun(**base), model_options


def run_strategy(cfg: MultitaskConfig, name: str, data: MultitaskData, notebook: str,
                 device: torch.device, run_name: str | None = None, attention: str = "standard",
                 run_options: dict | None = None, checkpoints: bool = True, mode: str = "bi-encoder",
                 on_epoch: Callable[[dict], None] | None = None) -> tuple[dict, MultitaskBert]:
    """Train one strategy from the pretrained checkpoint; its results record and model (best epoch).

    `attention` picks the attention variant, `mode` bi- or cross-encoder (the data must be
    tokenised to match); `run_options` replace fields of the
    strategy's MultitaskRun (optimizer, rho, ...). Checkpoints go to
    runs/<notebook>/<profile>/<run name>/, TensorBoard logs to runs/tensorboard/;
    `run_name` (default: the strategy) tells apart runs of one strategy with other settings.
    Without `checkpoints` (tuning trials) nothing is written; `on_epoch` sees each epoch's record.
    """
    run_name = run_name or name
    run, model_options = strategy_run(cfg, name)
    run = replace(run, name=run_name, **(run_options or {}))
    dtype = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    model = MultitaskBert(BertModel.from_pretrained(cfg.checkpoint, attention=attention), pooling=cfg.pooling,
                          head_hidden=cfg.head_hidden,
                          dropout={"sst": cfg.dropout_sst, "qqp": cfg.dropout_qqp, "sts": cfg.dropout_sts},
                          mode=mode, **model_options)
    checkpoint_dir = paths.runs_dir() / notebook / cfg.profile / run_name if checkpoints else None
    if checkpoint_dir is not None and not cfg.resume and checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    history = train_multitask(model, data.train, data.dev, run, device=device, dtype=dtype,
                              eval_batch_size=cfg.eval_batch_size, checkpoint_dir=checkpoint_dir,
                              resume=cfg.resume and checkpoints, on_epoch=on_epoch,
                              log_dir=paths.runs_dir() / "tensorboard" / notebook / cfg.profile / run_name)
    best = max(history, key=lambda h: h["dev_mean"])
    record = {"name": run_name, "strategy": name,
              "train_sizes": {task: len(tensors) for task, tensors in data.train.items()},
              "config": {**asdict(run), **model_options, "mode": mode,
                         "attention": model.bert.config.attention, "pooling": cfg.pooling,
                         "head_hidden": cfg.head_hidden,
                         "precision": str(dtype).removeprefix("torch.")},
              "parameters": count_parameters(model),
              "dev": {"sst_acc": best["sst_acc"], "qqp_acc": best["qqp_acc"],
                      "sts_pearson": best["sts_pearson"]},
              "best_epoch": best["epoch"], "history": history}
    return record, model


def final_run_options(cfg: FinalConfig) -> dict:
    """The final model's run settings from its config: task order, optimizer, SMART per task."""
    return {"order": tuple(cfg.task_order), "optimizer": cfg.optimizer, "rho": cfg.sophia_rho,
            "hessian_interval": cfg.hessian_interval,
            "smart": {task: dict(cfg.smart_settings.get(task, {})) for task in cfg.smart_tasks}}


PREDICTION_COLUMNS = {"sst": "sentiment", "qqp": "is_duplicate", "sts": "similarity"}


def save_multitask_predictions(model: MultitaskBert, data: MultitaskData, name: str, notebook: str,
                               cfg: MultitaskConfig, device: torch.device) -> dict[str, list]:
    """Dev and test-student predictions of every task as CSV (id, label) under
    reports/predictions/<notebook>/; returns the dev predictions per task."""
    out_dir = paths.reports_dir() / "predictions" / notebook
    dtype = resolve_precision(cfg.precision, device)
    dev_predictions = {}
    for split_name, split in (("dev", data.dev), ("test", data.test)):
        for task, tensors in split.items():
            labels = labels_from_outputs(task, predict(model, tensors, cfg.eval_batch_size, device, dtype))
            write_predictions(out_dir / f"{name}-{task}-{split_name}.csv", tensors.ids, labels,
                              PREDICTION_COLUMNS[task])
            if split_name == "dev":
                dev_predictions[task] = labels
    return dev_predictions


def sentence_attention(model: MultitaskBert, tokenizer, sentence: str, device: torch.device,
                       layer: int = -1, head: int = 0) -> tuple[list[str], np.ndarray]:
    """One sentence's tokens and the attention weights of one layer and head, (query, key)."""
    ids = tokenizer(sentence)["input_ids"]
    model.eval()
    maps = model.bert.attention_maps(torch.tensor([ids], device=device))
    return tokenizer.convert_ids_to_tokens(ids), maps[layer][0, head].float().cpu().numpy()
