"""The peer: `transformers`' own sequence-classification fine-tune of the same weights, one task at a time.

What a reader could do instead of our multitask model, in a few lines of the library everyone
uses: `AutoModelForSequenceClassification` on the same checkpoint (5 labels for SST, 2 for QQP,
1 for STS, regressing the raw 0..5 score with its built-in MSE), pairs given to the tokenizer as
text pairs, `torch.optim.AdamW`, `transformers.get_linear_schedule_with_warmup`, gradients clipped
to norm 1 (the Trainer's defaults), batch 32. It trains on the same rows as notebook 06, selects
its epoch on the same held-out rows carved from train, and is scored once on dev. Our own code
(BertModel, AdamW, the heads) is deliberately not used: the peer is an outside reference.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from minbert import tasks
from minbert.comparison import Difference, paired_difference
from minbert.data import TaskSplit, batch_indices
from minbert.epochs import Epoch
from minbert.evaluation import outputs_in_order
from minbert.finished import load_run, save_run
from minbert.notebook_settings import PeerConfig
from minbert.records import RunRecord
from minbert.runtime import Runtime, to_device
from minbert.training import FiniteWatch

# The peer's recipe: these knobs of `notebook_settings.PeerConfig`, recorded with each of its runs.
RECIPE = ("lr", "epochs", "batch_size", "eval_batch_size", "warmup_ratio", "weight_decay", "max_grad_norm",
          "max_length")


def num_labels(task: str) -> int:
    """Outputs of the peer's head: one per class (QQP too, as `run_glue` does), one score for STS."""
    spec = tasks.get(task)
    return 1 if spec.kind == "regression" else max(spec.num_classes, 2)


def encode_split(tokenizer, split: TaskSplit, max_length: int) -> list[dict[str, list[int]]]:
    """Each row's token ids and token types, pairs as the tokenizer's own text pairs (the longer
    sentence truncated first)."""
    texts = [e.texts for e in split.examples]
    first = [t[0] for t in texts]
    second = [t[1] for t in texts] if texts and len(texts[0]) > 1 else None
    encoded = tokenizer(first, second, truncation=True, max_length=max_length)
    return [dict(zip(encoded.keys(), row, strict=True)) for row in zip(*encoded.values(), strict=True)]


def _lengths(rows: list[dict[str, list[int]]]) -> list[int]:
    return [len(row["input_ids"]) for row in rows]


def _batch(tokenizer, rows: list[dict[str, list[int]]], idx: list[int],
           device: torch.device) -> dict[str, torch.Tensor]:
    padded = tokenizer.pad([rows[i] for i in idx], return_tensors="pt")
    return {k: to_device(v, device) for k, v in padded.items()}


def peer_outputs(model, tokenizer, ids: list[dict[str, list[int]]], batch_size: int,
                 runtime: Runtime) -> np.ndarray:
    """The head's outputs in input order: logits (N, labels), or scores (N,) for one label."""
    model.eval()

    def logits(idx: list[int]) -> torch.Tensor:
        with runtime.autocast():
            return model(**_batch(tokenizer, ids, idx, runtime.device)).logits

    with torch.no_grad():
        shape = (len(ids), model.config.num_labels)
        stacked = outputs_in_order(_lengths(ids), batch_size, logits, shape).numpy()
    return stacked[:, 0] if stacked.shape[1] == 1 else stacked


def predictions_from(task: str, outputs: np.ndarray) -> np.ndarray:
    """Labels as the task files hold them (class index; 0/1), or the raw score for STS."""
    return outputs if tasks.get(task).kind == "regression" else outputs.argmax(-1)


@dataclass
class PeerRun:
    """One task's peer fine-tune: its record and its dev predictions (in the dev file's order)."""

    record: RunRecord
    dev_predictions: np.ndarray
    dev_ids: list[str]
    extra: dict = field(default_factory=dict)


def fine_tune(task: str, train: TaskSplit, heldout: TaskSplit, dev: TaskSplit, checkpoint: str,
              recipe: PeerConfig, runtime: Runtime, seed: int) -> PeerRun:
    """Fine-tune the checkpoint on one task as `transformers` users do; keep the epoch with the best
    held-out score and score dev once with it."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    spec = tasks.get(task)
    random.seed(seed)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    # float32 weights whatever the checkpoint's dtype (transformers keeps a bfloat16 file's): AdamW steps of
    # about 1e-4 would mostly round away in bfloat16 weights
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=num_labels(task),
                                                               dtype=torch.float32)
    model.to(runtime.device)
    encoded = {name: encode_split(tokenizer, split, recipe.max_length)
               for name, split in (("train", train), ("heldout", heldout), ("dev", dev))}
    labels = torch.tensor([e.label for e in train.examples],
                          dtype=torch.float if spec.kind == "regression" else torch.long)
    lengths = _lengths(encoded["train"])
    steps_per_epoch = math.ceil(len(lengths) / recipe.batch_size)
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
    total = steps_per_epoch * recipe.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(recipe.warmup_ratio * total), total)

    def score(split: str, gold: TaskSplit) -> tuple[float, np.ndarray]:
        outputs = peer_outputs(model, tokenizer, encoded[split], recipe.eval_batch_size, runtime)
        predicted = predictions_from(task, outputs)
        return float(spec.score(predicted, [e.label for e in gold.examples])), predicted

    history: list[Epoch] = []
    best_score, kept = -np.inf, None
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        started, batches = time.perf_counter(), 0
        total_loss = torch.zeros((), dtype=torch.float64, device=runtime.device)  # read once an epoch
        watch = FiniteWatch(runtime.device)  # read every `runtime.read_every` steps, as our trainer does
        order = batch_indices(lengths, recipe.batch_size, shuffle=True, seed=seed + epoch)
        for step, idx in enumerate(order):
            if step % runtime.read_every == 0:
                watch.check()
            batch = _batch(tokenizer, encoded["train"], idx, runtime.device)
            with runtime.autocast():
                loss = model(**batch, labels=to_device(labels[idx], runtime.device)).loss
            watch.watch(loss, f"peer {task}, epoch {epoch}, step {step}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total_loss, batches = total_loss + loss.detach().double(), batches + 1
        watch.check()
        seconds = time.perf_counter() - started
        heldout_score, _ = score("heldout", heldout)
        history.append(Epoch(epoch, seconds=seconds, steps=batches, examples=len(lengths),
                             train_loss={task: float(total_loss) / max(batches, 1)},
                             heldout={spec.metric: heldout_score}))
        if heldout_score >= best_score:  # the latest of equals, as our trainer keeps
            best_score, kept = heldout_score, copy.deepcopy(model.state_dict())
    model.load_state_dict(kept)
    best = max(e.epoch for e in history if e.heldout[spec.metric] == best_score)
    started = time.perf_counter()
    dev_score, dev_predicted = score("dev", dev)
    history[best - 1].dev[spec.metric] = dev_score
    history[best - 1].extra["dev_seconds"] = time.perf_counter() - started
    record = RunRecord(name=f"peer-{task}", arm="peer", dev={spec.metric: dev_score},
                       heldout={spec.metric: best_score}, best_epoch=best,
                       history=[e.to_dict() for e in history],
                       config={**{k: getattr(recipe, k) for k in RECIPE}, "seed": seed,
                               "model": type(model).__name__, "precision": runtime.precision},
                       train_sizes={task: len(train)}, dev_sizes={task: len(dev)},
                       parameters=sum(p.numel() for p in model.parameters()))
    return PeerRun(record, dev_predicted, [e.id for e in dev.examples])


def run_peer(cfg: PeerConfig, runtime: Runtime, tokenizer=None) -> tuple[list[PeerRun], dict]:
    """Every task of `cfg.tasks` fine-tuned apart on the rows notebook 06 uses (the same train
    subsample, held-out carve and dev rows, drawn with the same seed); the runs and the data summary."""
    from minbert.bert import load_tokenizer, resolve_checkpoint
    from minbert.data import load_tasks

    checkpoint = str(resolve_checkpoint(cfg.checkpoint))
    data = load_tasks(tokenizer or load_tokenizer(cfg.checkpoint), cfg.max_length, names=tuple(cfg.tasks),
                      train_limits=cfg.train_limits, dev_limits=cfg.dev_limits, seed=cfg.seed,
                      strict=cfg.strict_data, heldout_sizes=cfg.heldout_sizes)
    splits = data.splits
    runs = []
    for task in cfg.tasks:
        settings = {**cfg.model_dump(mode="json", exclude={"device", "resume", "tasks"}), "task": task}
        found = load_run(PEER, cfg.profile, f"peer-{task}", settings) if cfg.resume else None
        if found is not None:  # finished earlier (a lease that ran out), with these settings and code
            dev_ids = [e.id for e in splits["dev"][task].examples]
            runs.append(PeerRun(found[0], found[1]["dev"]["predictions"], dev_ids))
            continue
        run = fine_tune(task, splits["train"][task], splits["heldout"][task], splits["dev"][task], checkpoint,
                        cfg, runtime, cfg.seed)
        save_run(PEER, cfg.profile, run.record.name, settings, run.record, {"dev": {"predictions":
                                                                                  run.dev_predictions}})
        runs.append(run)
    return runs, data.summary


PEER = "peer_transformers"  # its results file: reports/results/peer_transformers.<profile>.json


def record_peer(profile: str, overrides: dict | None = None) -> Path:
    """Run the peer on a profile as a recorded run: a results file with its stamp, and the dev
    predictions of each task under reports/predictions/peer_transformers.<profile>/ (for paired
    comparisons with notebook 06's model); returns the results file."""
    import transformers

    from minbert.evaluation import write_predictions
    from minbert.params import load_config
    from minbert.records import predictions_dir, save_results, start_run

    transformers.logging.set_verbosity_error()  # the head's "newly initialized" notice is expected
    cfg = load_config(PEER, profile, overrides)
    runtime = Runtime.resolve(cfg.device, cfg.precision, cfg.seed)
    stamp = start_run(PEER, cfg, runtime)
    runs, summary = run_peer(cfg, runtime)
    for run in runs:
        task = run.record.name.removeprefix("peer-")
        write_predictions(predictions_dir(PEER, profile) / f"peer-{task}-dev.csv", run.dev_ids,
                          run.dev_predictions.tolist(), tasks.get(task).label_column)
    return save_results(PEER, profile, stamp, summary, [run.record for run in runs])


def load_peer_predictions(profile: str, task: str, ids: list[str]) -> np.ndarray | None:
    """The peer's dev predictions of a task in the order of `ids`, or None where the peer has not run
    on this profile or did not score every one of those rows."""
    import pandas as pd

    from minbert.records import published_predictions_dir

    path = published_predictions_dir(PEER, profile) / f"peer-{task}-dev.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, sep="\t", dtype={"id": str}).set_index("id")
    if not set(ids) <= set(table.index):
        return None
    return table.loc[ids].iloc[:, 0].to_numpy(dtype=float)


def versus_peer(predictions: dict[str, Sequence], ids: dict[str, list[str]], gold: dict[str, Sequence[float]],
                profile: str, name: str = "ours") -> list[Difference]:
    """Our dev predictions against the peer's on the same dev rows, per task: the difference of the
    scores with its paired 95% bootstrap interval over the rows. Tasks the peer has not scored on
    these rows (not run on this profile, or on other rows) are left out."""
    found = []
    for task, ours in predictions.items():
        theirs = load_peer_predictions(profile, task, ids[task])
        if theirs is not None:
            found.append(paired_difference(task, gold[task], np.asarray(ours, dtype=float), theirs,
                                           arm_name=name, reference_name="peer"))
    return found
