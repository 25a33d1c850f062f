"""The GPU run's second step (scripts/gpu/run.sh, after check.py): one short epoch of every training path on
this machine's device, so a path that breaks there (a tensor on the wrong device, a dtype the GPU
rejects) costs a minute of a lease, not the lease. Every schedule (PCGrad among them), both optimizers
and one optimizer per task, every attention variant, every SMART form (paper, MT-DNN, relative, naive,
through the clean pass), the QQP-only and frozen phases, class weights, the cross-encoder, the other
precision; a checkpointed run killed and resumed; a kept run's weights reloaded into predictions and
attention maps; Part 1's trainer; runs trained in worker processes; an Optuna trial; the SMART probe; the
pretrained view, an ensemble and a blend; prediction files; and the peer (transformers' own fine-tune) on
all three tasks. Each on a few rows of real sentences with a one-layer cut of the checkpoint: what is
checked is that it runs and stays finite, not what it learns. The tests run the same script on the CPU,
and on a stand-in device (tests/standin_device.py) that fails where a GPU would.

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
from minbert.data import Example, TaskData, TaskSplit, tensors_for
from minbert.evaluation import dev_metrics
from minbert.notebook_settings import PeerConfig
from minbert.paths import environment
from minbert.runtime import Runtime
from minbert.schedules import SCHEDULES

LAYERS = 1
SENTENCES = ("a gripping , beautifully acted film .", "the plot makes no sense at all .",
             "a dull , lifeless and badly acted film .", "an honest , moving story of two brothers .",
             "it is neither funny nor sad , just long .", "the best thing about it is the music .",
             "How do I learn Python quickly ?", "What is the fastest way to learn Python ?",
             "A man is playing a guitar .", "A woman is slicing an onion .")
EVERY_TASK = ("sst", "qqp", "sts")
# The paths that are not one training run's settings, in the order they run.
JOBS = ("other precision", "checkpoints and resume", "kept weights", "part 1", "runs in worker processes",
        "optuna trial", "evaluation", "smart probe", "pretrained view", "ensemble and blend",
        "prediction files", *(f"peer {task}" for task in EVERY_TASK))


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
    """Every path that is a training run's settings (over a one-epoch run on the few rows)."""
    found = [(f"schedule {s}", {"schedule": s}) for s in SCHEDULES]
    found += [("sophia", {"optimizer": "sophia", "hessian_interval": 1}),
              ("one optimizer per task", {"task_optimizers": True, "schedule": "round-robin"}),
              ("sophia per task", {"optimizer": "sophia", "task_optimizers": True, "schedule": "round-robin",
                                   "hessian_interval": 1})]
    found += [(f"attention {v}", {"attention": v, "variant_lr": 1e-3}) for v in VARIANTS]
    found += [(f"smart {form}", {"smart": {t: {"form": form, "steps": 1} for t in EVERY_TASK}})
              for form in ("paper", "mtdnn")]
    found += [(f"smart {name}", {"smart": {t: {"steps": 1, knob: True} for t in EVERY_TASK}})
              for name, knob in (("relative", "relative"), ("naive-regression", "naive_regression"),
                                 ("through-clean", "through_clean"))]
    found += [("qqp-only and frozen epochs", {"epochs": 3, "qqp_only_epochs": 1, "freeze_epochs": 1}),
              ("class weights", {"class_weights": True}),
              ("cross-encoder", {"mode": "cross-encoder", "schedule": "combined"})]
    return found


def names() -> list[str]:
    """Every path's name, as the script reports it."""
    return [name for name, _ in paths()] + list(JOBS)


def _finite(values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def main(checkpoint: str | None = None, runtime: Runtime | None = None, skip: tuple[str, ...] = ()) -> int:
    """Run every path (bar `skip`) on `runtime` (default: the machine's device and precision); 0 when
    all ran, 1 naming those that failed. Its runs, predictions and study go to a temporary folder."""
    import tempfile

    runtime = runtime or Runtime.resolve("auto", "auto", seed=0)
    checkpoint = checkpoint or str(default_checkpoint())
    with tempfile.TemporaryDirectory(prefix="minbert-smoke-") as scratch, \
            environment(MINBERT_RUNS_DIR=f"{scratch}/runs", MINBERT_REPORTS_DIR=f"{scratch}/reports"):
        return _run_paths(checkpoint, runtime, skip)


def _run_paths(checkpoint: str, runtime: Runtime, skip: tuple[str, ...]) -> int:
    import torch

    from minbert import analysis
    from minbert import paths as where
    from minbert.ensemble import Ensemble
    from minbert.evaluation import save_predictions
    from minbert.experiments import build_model, load_kept_model, run_arm, train_together
    from minbert.models import SentenceClassifier
    from minbert.part1 import train_classifier
    from minbert.peer import fine_tune
    from minbert.pretrained_view import Blended, PretrainedView
    from minbert.training import train_multitask
    from minbert.tuning import adamw_space, multitask_objective, open_study, run_trials

    tokenizer = load_tokenizer(checkpoint)
    raw = splits()
    data = {mode: {t: tensors_for(s, tokenizer, 32, cross_encoder=mode == "cross-encoder")
                   for t, s in raw.items()} for mode in ("bi-encoder", "cross-encoder")}
    task_data = TaskData(splits={split: raw for split in ("train", "dev", "heldout", "test")},
                         tensors={split: data["bi-encoder"] for split in ("train", "dev", "heldout", "test")},
                         summary={})
    base = MultitaskSettings(profile="smoke", epochs=1, batch_size=4, eval_batch_size=8, lr=1e-4,
                             checkpoint=checkpoint, num_layers=LAYERS)
    print(f"smoke on {runtime.device} ({runtime.precision}), {LAYERS}-layer cut of {checkpoint}")
    failed: list[str] = []

    def attempt(name: str, run: Callable[[], str]) -> None:
        if name in skip:
            print(f"skipped {name}")
            return
        started = time.perf_counter()
        try:
            said = run()
        except Exception as exc:  # noqa: BLE001 - every failure is a finding, named with where it arose
            where_ = traceback.extract_tb(exc.__traceback__)[-1]
            failed.append(name)
            print(f"FAILED {name}: {type(exc).__name__}: {exc} ({where_.filename}:{where_.lineno})")
            return
        print(f"ok {name} ({time.perf_counter() - started:.1f} s): {said}")

    def trained(settings: MultitaskSettings, on: Runtime = runtime, **options):
        tensors = data[settings.mode]
        return train_multitask(build_model(settings), tensors, tensors, settings, heldout=tensors, runtime=on,
                               **options)

    def scored(history) -> str:
        last = history[-1]
        losses = [v for v in last.train_loss.values() if not math.isnan(v)]
        dev = [e.dev_mean for e in history if e.dev_mean is not None]  # scored once, at the kept epoch
        if not losses or not dev or last.heldout_mean is None \
                or not _finite([*losses, last.heldout_mean, *dev]):
            raise FloatingPointError(f"not finite or not scored: {[e.to_dict() for e in history]}")
        return f"{last.steps} steps, held-out mean {last.heldout_mean:.3f}"

    for name, updates in paths():
        attempt(name, lambda u=updates: scored(trained(base.with_updates(u)).history))

    def other_precision() -> str:
        if runtime.device.type == "meta":
            raise RuntimeError("no autocast on the stand-in device")
        other = torch.float32 if runtime.dtype != torch.float32 else torch.bfloat16
        return f"{other}: " + scored(trained(base, Runtime(runtime.device, other)).history)

    def resume() -> str:
        settings = base.with_updates({"epochs": 2})
        folder = where.runs_dir() / "smoke-resume"
        trained(settings, checkpoint_dir=folder, stop_after_epoch=1)  # killed after its first epoch
        again = trained(settings, checkpoint_dir=folder, resume=True)
        if [e.epoch for e in again.history] != [1, 2]:
            raise AssertionError(f"resumed epochs {[e.epoch for e in again.history]}")
        return "resumed at epoch 2: " + scored(again.history)

    def kept_weights() -> str:
        run = run_arm(base, "baseline", task_data, runtime, notebook="smoke")
        model = load_kept_model(base, run.record, "smoke", runtime=runtime)
        out = where.reports_dir() / "smoke-predictions"
        predicted = save_predictions(model, {"dev": task_data.dev}, out, "kept", 8, runtime)
        _, attention = analysis.sentence_attention(model, tokenizer, SENTENCES[0], runtime)
        return f"{len(predicted)} tasks predicted, attention map {attention.shape}"

    def part1() -> str:
        torch.manual_seed(0)
        model = SentenceClassifier(BertModel.from_pretrained(checkpoint, num_hidden_layers=LAYERS), 5)
        sst = data["bi-encoder"]["sst"]
        history = train_classifier(model, sst.a, sst.labels, sst.a, sst.labels, epochs=1, lr=1e-4,
                                   batch_size=2, runtime=runtime, eval_batch_size=8, lr_schedule="linear",
                                   warmup_ratio=0.1, max_grad_norm=1.0, heldout=(sst.a, sst.labels))
        if not _finite([history[-1]["train_loss"], history[-1]["heldout_acc"]]):
            raise FloatingPointError(f"not finite: {history}")
        return f"train loss {history[-1]['train_loss']:.3f}"

    def workers() -> str:
        runs = [("baseline", f"worker-{i}", {"seed": i}) for i in range(2)]
        done = train_together(base, runs, task_data, runtime, "smoke", processes=2)
        return f"{len(done)} runs in 2 processes"

    def optuna_trial() -> str:
        study = open_study("smoke", storage=f"sqlite:///{where.runs_dir() / 'smoke-study.db'}", fresh=True)
        run_trials(study, multitask_objective(base, "baseline", task_data, adamw_space, "smoke", runtime), 1)
        return f"best value {study.best_value:.3f}"

    def evaluate() -> str:
        scores = dev_metrics(build_model(base), data["bi-encoder"], 8, runtime)
        return ", ".join(f"{k} {v:.3f}" for k, v in scores.items())

    def probe() -> str:
        from minbert.smart import SmartSettings
        from minbert.smart_probe import smart_scale_probe

        rows = smart_scale_probe(build_model(base), data["bi-encoder"], [0.0, 0.03],
                                 SmartSettings(relative=True, norm="l2"), runtime, batch_size=4)
        if not _finite(v for row in rows for v in row.values() if isinstance(v, float)):
            raise FloatingPointError(f"not finite: {rows}")
        return f"{len(rows)} rows"

    def view() -> str:
        bert = BertModel.from_pretrained(checkpoint, num_hidden_layers=LAYERS)
        fitted = PretrainedView.fit(bert, data["bi-encoder"], 8, runtime)
        scores = dev_metrics(fitted, data["bi-encoder"], 8, runtime)
        return ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if not k.endswith("loss"))

    def ensemble() -> str:
        members = [build_model(base.with_updates({"seed": s})) for s in (1, 2)]
        bert = BertModel.from_pretrained(checkpoint, num_hidden_layers=LAYERS)
        fitted = PretrainedView.fit(bert, data["bi-encoder"], 8, runtime)
        blended = Blended(Ensemble(members), fitted, {"sts": 0.5})
        scores = dev_metrics(blended, data["bi-encoder"], 8, runtime)
        return ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if not k.endswith("loss"))

    def prediction_files() -> str:
        out = where.reports_dir() / "smoke-predictions"
        save_predictions(build_model(base), {"dev": task_data.dev, "test": task_data.test}, out, "model", 8,
                         runtime)
        return f"{len(list(out.glob('model-*.csv')))} files"

    def peer(task: str) -> str:
        recipe = PeerConfig(epochs=1, batch_size=4, eval_batch_size=8, max_length=32)
        run = fine_tune(task, raw[task], raw[task], raw[task], checkpoint, recipe, runtime, seed=0)
        if not _finite(run.record.dev.values()):
            raise FloatingPointError(f"not finite: {run.record.dev}")
        return f"dev {run.record.dev}"

    jobs = {"other precision": other_precision, "checkpoints and resume": resume,
            "kept weights": kept_weights, "part 1": part1, "runs in worker processes": workers,
            "optuna trial": optuna_trial, "evaluation": evaluate, "smart probe": probe,
            "pretrained view": view, "ensemble and blend": ensemble,
            "prediction files": prediction_files,
            **{f"peer {task}": (lambda t=task: peer(t)) for task in EVERY_TASK}}
    for name in JOBS:
        attempt(name, jobs[name])
    ran = len(names()) - len([n for n in skip if n in names()])
    if failed:
        print(f"{len(failed)} of {ran} paths failed on {runtime.device}: {', '.join(failed)}")
        return 1
    print(f"all {ran} paths ran on {runtime.device}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
