"""Experiments as the notebooks run them: a validated config in, results records out.

Kept here, not in the notebooks, so that a notebook stays narrative plus calls
and the same experiment can be run from a test or a script.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minbert import paths
from minbert.bert import BertModel, count_parameters
from minbert.config import Part1Config
from minbert.data import TaskSplit, encode, load_split
from minbert.evaluation import write_predictions
from minbert.models import SentenceClassifier
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

