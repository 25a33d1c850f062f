"""The GPU run's second step (scripts/gpu/run.sh, after check.py): one short epoch of every training path on
this machine's device, so a path that breaks there (a tensor on the wrong device, a dtype the GPU
rejects) costs a minute of a lease, not the lease. Every schedule (PCGrad among them), both optimizers
and one optimizer per task, every attention variant, both SMART forms, the QQP-only and frozen phases,
class weights, the cross-encoder, an evaluation, and one step of the peer (transformers' own
fine-tune). Each on a few rows of real sentences with a one-layer cut of the checkpoint: what is checked
is that it runs and stays finite, not what it learns. The tests run the same script on the CPU.

    python scripts/gpu/smoke.py [checkpoint folder]   # exits non-zero naming every path that failed

(The tests pass a tiny random checkpoint: on a 2-core CPU the MiniLM's optimizer steps alone take minutes.)
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from collections.abc import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # one line per path, not a progress bar per epoch

from minbert.attention import VARIANTS
from minbert.bert import BertModel, default_checkpoint, load_tokenizer
from minbert.config import MultitaskSettings
from minbert.data import Example, TaskSplit, tensors_for
from minbert.evaluation import dev_metrics
from minbert.models import MultitaskBert
from minbert.notebook_settings import PeerConfig
from minbert.runtime import Runtime
from minbert.schedules import SCHEDULES
from minbert.training import train_multitask

LAYERS = 1
SENTENCES = ("a gripping , beautifully acted film .", "the plot makes no sense at all .",
             "a dull , lifeless and badly acted film .", "an honest , moving story of two brothers .",
             "it is neither funny nor sad , just long .", "the best thing about it is the music .",
             "How do I learn Python quickly ?", "What is the fastest way to learn Python ?",
             "A man is playing a guitar .", "A woman is slicing an onion .")


def splits(rows: int = 5) -> dict[str, TaskSplit]:
    """A few rows per task from `SENTENCES`: every label of SST and QQP, scores across STS's range."""
    pick = [SENTENCES[i % len(SENTENCES)] for i in range(rows + 1)]
    examples = {
        "sst": [Example(f"s{i}", (pick[i],), i % 5) for i in range(rows)],
        "qqp": [Example(f"q{i}", (pick[i], pick[i + 1]), i % 2) for i in range(rows)],
        "sts": [Example(f"t{i}", (pick[i], pick[i + 1]), 5.0 * i / max(rows - 1, 1)) for i in range(rows)],
    }
    return {task: TaskSplit(task, "train", "smoke", rows_, []) for task, rows_ in examples.items()}


def paths() -> list[tuple[str, dict]]:
    """Every path as the settings that take it (over a one-epoch run on the few rows)."""
    every_task = ("sst", "qqp", "sts")
    found = [(f"schedule {s}", {"schedule": s}) for s in SCHEDULES]
    found += [("sophia", {"optimizer": "sophia", "hessian_interval": 1}),
              ("one optimizer per task", {"task_optimizers": True, "schedule": "round-robin"}),
              ("sophia per task", {"optimizer": "sophia", "task_optimizers": True, "schedule": "round-robin",
                                   "hessian_interval": 1})]
    found += [(f"attention {v}", {"attention": v, "variant_lr": 1e-3}) for v in VARIANTS]
    found += [(f"smart {form}", {"smart": {t: {"form": form, "steps": 1} for t in every_task}})
              for form in ("paper", "mtdnn")]
    found += [("qqp-only and frozen epochs", {"epochs": 3, "qqp_only_epochs": 1, "freeze_epochs": 1}),
              ("class weights", {"class_weights": True}),
              ("cross-encoder", {"mode": "cross-encoder", "schedule": "combined"})]
    return found


def main(checkpoint: str | None = None) -> int:
    runtime = Runtime.resolve("auto", "auto", seed=0)
    checkpoint = checkpoint or str(default_checkpoint())
    tokenizer = load_tokenizer(checkpoint)
    raw = splits()
    data = {mode: {t: tensors_for(s, tokenizer, 32, cross_encoder=mode == "cross-encoder")
                   for t, s in raw.items()} for mode in ("bi-encoder", "cross-encoder")}
    print(f"smoke on {runtime.device} ({runtime.precision}), {LAYERS}-layer cut of {checkpoint}")
    failed = []

    def attempt(name: str, run: Callable[[], str]) -> None:
        started = time.perf_counter()
        try:
            said = run()
        except Exception as exc:  # noqa: BLE001 - every failure is a finding, named with where it arose
            where = traceback.extract_tb(exc.__traceback__)[-1]
            failed.append(name)
            print(f"FAILED {name}: {type(exc).__name__}: {exc} ({where.filename}:{where.lineno})")
            return
        print(f"ok {name} ({time.perf_counter() - started:.1f} s): {said}")

    def train(updates: dict) -> Callable[[], str]:
        def run() -> str:
            settings = MultitaskSettings(epochs=1, batch_size=4, eval_batch_size=8,
                                         lr=1e-4).with_updates(updates)
            bert = BertModel.from_pretrained(checkpoint, attention=settings.attention,
                                             num_hidden_layers=LAYERS)
            model = MultitaskBert(bert, mode=settings.mode)
            tensors = data[settings.mode]
            trained = train_multitask(model, tensors, tensors, settings, heldout=tensors, runtime=runtime)
            last = trained.history[-1]
            losses = [v for v in last.train_loss.values() if not math.isnan(v)]
            # dev is scored once, at the best epoch, which need not be the last one
            dev = [e.dev_mean for e in trained.history if e.dev_mean is not None]
            if not losses or not dev or last.heldout_mean is None or not all(
                    math.isfinite(v) for v in [*losses, last.heldout_mean, *dev]):
                history = [e.to_dict() for e in trained.history]
                raise FloatingPointError(f"not finite or not scored: {history}")
            return f"{last.steps} steps, held-out mean {last.heldout_mean:.3f}"
        return run

    for name, updates in paths():
        attempt(name, train(updates))

    def evaluate() -> str:
        bert = BertModel.from_pretrained(checkpoint, num_hidden_layers=LAYERS)
        model = MultitaskBert(bert).to(runtime.device)
        scores = dev_metrics(model, data["bi-encoder"], 8, runtime)
        return ", ".join(f"{k} {v:.3f}" for k, v in scores.items())

    def peer() -> str:
        from minbert.peer import fine_tune

        recipe = PeerConfig(epochs=1, batch_size=4, eval_batch_size=8, max_length=32)
        run = fine_tune("sst", raw["sst"], raw["sst"], raw["sst"], checkpoint, recipe, runtime, seed=0)
        return f"dev {run.record.dev}"

    attempt("evaluation", evaluate)
    attempt("peer", peer)
    if failed:
        print(f"{len(failed)} of {len(paths()) + 2} paths failed on {runtime.device}: {', '.join(failed)}")
        return 1
    print(f"all {len(paths()) + 2} paths ran on {runtime.device}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
