"""What a multitask run costs on this machine, measured with the trainer itself: the seconds of one epoch of
the reference recipe per training example of each task (bi-encoder and cross-encoder), and the seconds
per row of scoring (held-out and dev), from which a profile's budget is sized (`params/cpu/`).

    .venv/bin/python benchmarks/cpu_budget.py [--rows 192] [--modes bi-encoder cross-encoder]

Prints one line per mode: s/example for SST, QQP and STS training, s/row of evaluation, then what one
run of the `params/cpu` sizes costs by this measure.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")

from minbert.bert import load_tokenizer  # noqa: E402
from minbert.config import arm_settings  # noqa: E402
from minbert.evaluation import dev_metrics  # noqa: E402
from minbert.experiments import build_model, load_multitask  # noqa: E402
from minbert.params import load_config  # noqa: E402
from minbert.runtime import Runtime  # noqa: E402
from minbert.training import train_multitask  # noqa: E402

TASKS = ("sst", "qqp", "sts")


def measure(mode: str, rows: int, batch_size: int) -> dict[str, float]:
    """Seconds per training example per task (one epoch of each task alone, sequential schedule) and per
    scored row, on `rows` rows of each task."""
    notebook = "02_sbert_baseline" if mode == "bi-encoder" else "04_smart"
    limits = dict.fromkeys(TASKS, rows)
    cfg = load_config(notebook, "cpu", {"train_limits": limits, "dev_limits": limits, "mode": mode,
                                          "heldout_sizes": dict.fromkeys(TASKS, 64),
                                          "batch_size": batch_size})
    runtime = Runtime.resolve(cfg.device, cfg.precision, cfg.seed)
    data = load_multitask(cfg, load_tokenizer(cfg.checkpoint))
    found = {}
    for task in TASKS:
        settings = arm_settings(cfg, "baseline", {"epochs": 1, "smart": {}})  # the run's knobs, not the arms
        model = build_model(settings)
        trained = train_multitask(model, {task: data.train[task]}, {task: data.dev[task]}, settings,
                                  runtime=runtime)
        found[f"{task} train s/example"] = trained.history[0].seconds / rows  # the epoch alone, no scoring
    started = time.perf_counter()
    dev_metrics(model, data.dev, cfg.eval_batch_size, runtime)
    found["eval s/row"] = (time.perf_counter() - started) / sum(len(d) for d in data.dev.values())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--modes", nargs="+", default=["bi-encoder", "cross-encoder"])
    args = parser.parse_args()
    for mode in args.modes:
        found = measure(mode, args.rows, args.batch_size)
        print(f"{mode} (batch {args.batch_size}, {args.rows} rows per task): "
              + ", ".join(f"{k} {v:.4f}" for k, v in found.items()), flush=True)


if __name__ == "__main__":
    main()
