"""Dropout's one-pass C loop (`minbert.dropout`) against the same mask as tensor operations
(`reference_dropout`: torch.where, then the scale), on this machine:

1. dropout alone, forward and backward, at the shapes of one training step of the multitask trainer
   (13 token tensors of 1,300 x 384 and 6 attention maps of 32 x 12 x 40 x 40), and the random draws
   alone (the same in both: torch's generator);
2. our training step on real SST batches padded per batch (the throughput benchmark's `sst-batch`),
   with the loop and with tensor operations in alternating rounds in one process, so that the
   machine's drift (10-15% from minute to minute on a shared host) falls on both alike.

    .venv/bin/python benchmarks/dropout.py [--rounds 8] [--steps 16]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from throughput import Candidate, make_batch, median_seconds

import minbert.dropout as dropout_module
from minbert.bert import load_tokenizer
from minbert.data import encode, load_split
from minbert.runtime import keep_freed_memory

SHAPES = [(1300, 384)] * 13 + [(32, 12, 40, 40)] * 6


def median_ms(fn) -> float:
    """The median of 25 timed calls after 5 untimed ones, in milliseconds (`throughput.median_seconds`)."""
    return 1e3 * median_seconds(fn, 5, 25, torch.device("cpu"))


def dropout_alone() -> None:
    xs = [torch.randn(s, requires_grad=True) for s in SHAPES]
    grads = [torch.randn(s) for s in SHAPES]

    def through(apply):
        def run():
            for x, g in zip(xs, grads, strict=True):
                x.grad = None
                apply(x).backward(g)
        return run

    def draws():
        for x in xs:
            dropout_module._draws(x.numel())

    elements = sum(x.numel() for x in xs)
    print(f"== Dropout alone: one step's shapes, {elements / 1e6:.1f}M elements, forward and backward ==")
    loop = median_ms(through(lambda x: dropout_module.dropout(x, 0.1)))
    operations = median_ms(through(lambda x: dropout_module.reference_dropout(x, 0.1)))
    print(f"C loop {loop:.1f} ms, tensor operations {operations:.1f} ms, of which the random draws (both) "
          f"{median_ms(draws):.1f} ms")


def training_step(rounds: int, steps: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sentences = encode(load_tokenizer(), load_split("sst", "train"), 128)
    batches = [make_batch("sst-batch", 32, 64, sentences, seed=s) for s in range(8)]
    device = torch.device("cpu")
    model = Candidate("ours", device)
    loop = dropout_module.eligible

    def one_round() -> float:
        times = []
        for i in range(steps):
            start = time.perf_counter()
            model.train_step(batches[i % len(batches)], device, torch.float32)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    for batch in batches[:3]:
        model.train_step(batch, device, torch.float32)
    seconds: dict[str, list[float]] = {"C loop": [], "tensor operations": []}
    try:
        for _ in range(rounds):
            for name in seconds:
                dropout_module.eligible = loop if name == "C loop" else (lambda *a, **k: False)
                seconds[name].append(one_round())
    finally:
        dropout_module.eligible = loop
    print(f"\n== Our training step, real SST batches padded per batch (batch 32, float32), {rounds} "
          f"alternating rounds of {steps} steps ==")
    for name, values in seconds.items():
        middle = statistics.median(values)
        print(f"{name}: median {1e3 * middle:.0f} ms a step ({32 / middle:.1f} samples/s); rounds "
              f"{', '.join(f'{1e3 * v:.0f}' for v in values)} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16, help="training steps a round")
    args = parser.parse_args()
    keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          f"C loop built: {dropout_module._kernel() is not None}\n")
    dropout_alone()
    training_step(args.rounds, args.steps)


if __name__ == "__main__":
    main()
