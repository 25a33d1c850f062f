"""Seconds for a comparison's runs one after another against `parallel_runs` of them at once.

    .venv/bin/python benchmarks/parallel_runs.py [--profile cpu] [--rows 300] [--runs 2] [--processes 2]

It runs notebook 02's baseline arm over `--runs` seeds, one epoch on `--rows` train rows per task
(the profile's other knobs), once with the runs one after another (all threads each) and once with
`--processes` runs at once (the threads shared out), and prints both wall times and their ratio.
Measure on the machine at hand: on a CPU it says whether a profile should train its runs together.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import torch

from minbert import paths
from minbert.bert import load_tokenizer
from minbert.experiments import load_multitask, run_comparison
from minbert.params import load_config
from minbert.runtime import Runtime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    rows = {"sst": args.rows, "qqp": args.rows, "sts": args.rows}
    cfg = load_config("02_sbert_baseline", args.profile, {
        "arms": ["baseline"], "seeds": args.runs, "epochs": 1, "train_limits": rows,
        "heldout_sizes": {t: max(16, args.rows // 3) for t in rows}, "dev_limits": {"qqp": 1000}})
    runtime = Runtime.resolve(cfg.device, cfg.precision)
    data = load_multitask(cfg, load_tokenizer(cfg.checkpoint))
    runs_dir = tempfile.mkdtemp(prefix="minbert-parallel-")
    os.environ["MINBERT_RUNS_DIR"] = runs_dir
    try:
        seconds = {}
        for processes in (1, args.processes):
            shutil.rmtree(paths.runs_dir(), ignore_errors=True)
            started = time.perf_counter()
            run_comparison(cfg.with_updates({"parallel_runs": processes}), data, runtime,
                           notebook="02_sbert_baseline", runs_under="benchmark-parallel")
            seconds[processes] = time.perf_counter() - started
            print(f"{args.runs} runs, {processes} at a time: {seconds[processes]:.0f} s", flush=True)
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)
    print(f"{runtime.describe()}, {torch.get_num_threads()} threads: together / alone = "
          f"{seconds[args.processes] / seconds[1]:.2f}")


if __name__ == "__main__":
    main()
