"""Training loops: seeded, with progress bars, a NaN guard and per-epoch history."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from minbert.data import batch_indices, pad_batch
from minbert.models import SentenceClassifier
from minbert.optim import AdamW
from minbert.precision import autocast


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN or infinite loss, for instance)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes a GPU when there is one; `cpu` and `cuda` are taken as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was asked for, but no GPU is available")
    return torch.device(name)


def _batch_to(sequences: Sequence[Sequence[int]], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in pad_batch(sequences).items()}


def outputs_in_order(lengths: Sequence[int], batch_size: int,
                     compute: Callable[[list[int]], torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """Run `compute` on batches of similar length (least padding) and return its outputs,
    as float32 on the CPU, in the original order."""
    out = torch.empty(shape)
    for idx in batch_indices(lengths, batch_size, shuffle=False):
        out[idx] = compute(idx).float().cpu()
    return out


@torch.no_grad()
def sentence_embeddings(model: SentenceClassifier, tokens: Sequence[Sequence[int]],
                        batch_size: int, device: torch.device,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Embeddings of every sentence in input order (model in eval mode, no dropout)."""
    model.eval()

    def embed(idx: list[int]) -> torch.Tensor:
        batch = _batch_to([tokens[i] for i in idx], device)
        with autocast(device, dtype):
            return model.embed(batch["input_ids"], batch["attention_mask"])

    return outputs_in_order([len(t) for t in tokens], batch_size, embed,
                            (len(tokens), model.bert.config.hidden_size))


@torch.no_grad()
def predict_logits(model: SentenceClassifier, tokens: Sequence[Sequence[int]], batch_size: int,
                   device: torch.device, features: torch.Tensor | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Class logits in input order; from cached `features` when BERT is frozen."""
    model.eval()
    if features is not None:
        return model.classify(features.to(device)).float().cpu()

    def logits(idx: list[int]) -> torch.Tensor:
        batch = _batch_to([tokens[i] for i in idx], device)
        with autocast(device, dtype):
            return model(batch["input_ids"], batch["attention_mask"])

    return outputs_in_order([len(t) for t in tokens], batch_size, logits,
                            (len(tokens), model.head.out_features))


def check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(f"loss became {loss.item()} at {where}; stopping (lower the learning "
                            "rate, or check the inputs of that batch)")


def train_classifier(model: SentenceClassifier, train_tokens: Sequence[Sequence[int]],
                     train_labels: Sequence[int], dev_tokens: Sequence[Sequence[int]],
                     dev_labels: Sequence[int], *, epochs: int, lr: float, batch_size: int,
                     weight_decay: float = 0.0, seed: int = 0, device: torch.device | None = None,
                     eval_batch_size: int = 128, bucket: bool = True, desc: str = "train",
                     dtype: torch.dtype = torch.float32,
                     on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train with cross-entropy and our AdamW; keep the weights of the best dev epoch.

    With BERT frozen (`model.freeze_bert`), the sentence embeddings are computed
    once, without dropout, and the head trains on them: the same model as running
    frozen BERT every step, minus BERT's dropout noise, at a fraction of the cost.
    `dtype` bfloat16 runs the forward pass under autocast (see `minbert.precision`).
    Returns one record per epoch (train loss, dev loss and accuracy, seconds).
    """
    device = device or torch.device("cpu")
    seed_everything(seed)
    model.to(device)
    train_y = torch.as_tensor(list(train_labels), dtype=torch.long)
    dev_y = torch.as_tensor(list(dev_labels), dtype=torch.long)
    train_features = dev_features = None
    if model.freeze_bert:
        train_features = sentence_embeddings(model, train_tokens, eval_batch_size, device, dtype)
        dev_features = sentence_embeddings(model, dev_tokens, eval_batch_size, device, dtype)
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                      weight_decay=weight_decay)
    lengths = [len(t) for t in train_tokens]
    history: list[dict] = []
    best_acc, best_state = -math.inf, None
    for epoch in tqdm(range(1, epochs + 1), desc=desc, unit="epoch"):
        started = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        batches = list(batch_indices(lengths, batch_size, shuffle=True, seed=seed + epoch,
                                     bucket=bucket))
        for step, idx in enumerate(tqdm(batches, desc=f"epoch {epoch}", leave=False, unit="batch")):
            with autocast(device, dtype):
                if train_features is not None:
                    logits = model.classify(train_features[idx].to(device))
                else:
                    batch = _batch_to([train_tokens[i] for i in idx], device)
                    logits = model(batch["input_ids"], batch["attention_mask"])
            loss = F.cross_entropy(logits.float(), train_y[idx].to(device))
            check_finite(loss, f"{desc}, epoch {epoch}, batch {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            count += len(idx)
        dev_logits = predict_logits(model, dev_tokens, eval_batch_size, device, dev_features, dtype)
        dev_acc = float((dev_logits.argmax(-1) == dev_y).float().mean())
        record = {"epoch": epoch, "train_loss": total / count,
                  "dev_loss": float(F.cross_entropy(dev_logits, dev_y)), "dev_acc": dev_acc,
                  "seconds": time.perf_counter() - started}
        history.append(record)
        if on_epoch:
            on_epoch(record)
        if dev_acc > best_acc:
            best_acc, best_state = dev_acc, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
