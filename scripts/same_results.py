"""Whether a change to the trainer left its results as they were: train one small run of each training
path (schedules, both optimizers, SMART, the cross-encoder, the attention variants) and write what each
left (every epoch's record but its seconds, the dev outputs, the sum of the weights); then compare two
such files. Run it in the tree before the change and in the tree after, on one machine:

    PYTHONPATH=<tree>/lib .venv/bin/python scripts/same_results.py write before.json
    .venv/bin/python scripts/same_results.py write after.json
    .venv/bin/python scripts/same_results.py compare before.json after.json

On a CPU, with one thread, a change that computes the same operations gives identical files. It uses
the embedded checkpoint's first layer and 40 rows per task: about two minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

PATHS = {
    "baseline": {},
    "pcgrad": {"schedule": "pcgrad"},
    "combined": {"schedule": "combined"},
    "sophia": {"optimizer": "sophia", "hessian_interval": 2, "hessian_bias_correction": True},
    "sophia-per-task": {"optimizer": "sophia", "hessian_interval": 2, "task_optimizers": True},
    "smart": {"smart": {"sst": {}, "sts": {"epsilon": 0.03, "step_size": 0.03, "relative": True}}},
    "cross-encoder": {"mode": "cross-encoder", "smart": {"qqp": {}}},
    "attention-variants": {"attention": "center+linear+sparsemax"},
}
SMALL = {"num_layers": 1, "train_limits": {"sst": 40, "qqp": 40, "sts": 40},
         "dev_limits": {"sst": 24, "qqp": 24, "sts": 24}, "heldout_sizes": {"sst": 16, "qqp": 16, "sts": 16},
         "batch_size": 8, "epochs": 2, "lr": 1e-4, "seed": 3}


def write(path: str) -> None:
    from minbert.bert import load_tokenizer
    from minbert.config import MultitaskSettings
    from minbert.experiments import build_model, load_multitask
    from minbert.training import train_multitask

    torch.set_num_threads(1)  # one thread: the same order of float operations on every run
    left, tokenizer = {}, None
    for name, knobs in PATHS.items():
        settings = MultitaskSettings(**{**SMALL, **knobs})
        tokenizer = tokenizer or load_tokenizer(settings.checkpoint)
        data = load_multitask(settings, tokenizer)
        model = build_model(settings)
        trained = train_multitask(model, data.train, data.dev, settings, heldout=data.heldout, name=name)
        history = [{k: v for k, v in e.to_dict().items() if k != "seconds"} for e in trained.history]
        left[name] = {"history": history,
                      "dev_outputs": {t: v.double().tolist() for t, v in trained.dev_outputs.items()},
                      "weights_sum": float(sum(p.double().sum() for p in model.parameters()))}
        print(f"{name}: {history[-1]}", flush=True)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(left, out)


def compare(before: str, after: str) -> int:
    with open(before, encoding="utf-8") as a, open(after, encoding="utf-8") as b:
        old, new = json.load(a), json.load(b)
    differ = 0
    for name in old:
        if old[name] == new.get(name):
            print(f"{name}: identical")
            continue
        differ += 1
        print(f"{name}: DIFFERENT")
        epochs = zip(old[name]["history"], new.get(name, {}).get("history", []), strict=False)
        for epoch_old, epoch_new in epochs:
            for key, value in epoch_old.items():
                if epoch_new.get(key) != value:
                    print(f"  epoch {epoch_old['epoch']} {key}: {value} -> {epoch_new.get(key)}")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("write").add_argument("path")
    both = commands.add_parser("compare")
    both.add_argument("before")
    both.add_argument("after")
    args = parser.parse_args(argv)
    if args.command == "write":
        write(args.path)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
