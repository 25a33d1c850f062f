"""Where our multitask trainer's time goes: its real step (the baseline arm's SST, QQP and STS batches,
AdamW, the linear schedule, clipping, the NaN watch) and its scoring, under `torch.profiler`, grouped:

- matrix products (forward and backward, attention's included) with their achieved GFLOP/s, beside
  the same shapes' plain product alone (`throughput.matmul_peak`);
- elementwise and other ops of the forward and backward (dropout, LayerNorm, GELU, softmax, casts,
  copies, index_select/index_copy of the packing);
- Python and dispatch: time inside the forward and backward regions that no op accounts for;
- the optimizer step, gradient clipping, data and collation (the batch built and padded);
- evaluation (held-out and dev scoring), in rows/s, and the trainer's scoring of each dev task
  (`evaluation.predict`) against the bare encoder's forward on the same batches, in real tokens/s;
- the rest of the loop (tqdm, the schedule, the step's own Python).

The regions are `minbert.training.REGIONS`. The profiler adds a few microseconds an op, so the table
also gives the unprofiled epoch's samples/s of the same run.

    .venv/bin/python benchmarks/step_profile.py [--batch 32] [--steps 24] [--precision auto] [--ops 12]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator

os.environ.setdefault("TQDM_DISABLE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from throughput import flops_per_token, matmul_peak, median_seconds  # noqa: E402

from minbert import training  # noqa: E402
from minbert.bert import load_tokenizer  # noqa: E402
from minbert.config import MultitaskSettings  # noqa: E402
from minbert.data import TaskTensors, batch_indices  # noqa: E402
from minbert.evaluation import predict  # noqa: E402
from minbert.experiments import build_model, load_multitask  # noqa: E402
from minbert.models import MultitaskBert  # noqa: E402
from minbert.runtime import Runtime, cpu_has_bfloat16, resolve_precision  # noqa: E402
from minbert.training import REGIONS, train_multitask  # noqa: E402

MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation",
              "aten::_scaled_dot_product_flash_attention_for_cpu",
              "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
              "aten::mkldnn_linear", "aten::_mkldnn_linear_backward"}
GROUPS = {"data": "data and collation", "clip": "gradient clipping", "optimizer": "optimizer step",
          "smart": "SMART terms", "evaluate": "evaluation"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=24, help="training steps per task of the profiled epoch")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--dev-rows", type=int, default=512, help="dev rows per task scored at the end")
    parser.add_argument("--ops", type=int, default=12, help="how many of the slowest ops to list")
    parser.add_argument("--only-optimizers", action="store_true", help="only the optimizer table")
    return parser.parse_args()


def region_of(event) -> str | None:
    """The `minbert::` region an op ran in (its nearest labelled ancestor), or None."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("minbert::"):
            return parent.name.removeprefix("minbert::")
        parent = parent.cpu_parent
    return None


def group_of(event, region: str | None) -> str:
    if region in GROUPS:
        return GROUPS[region]
    if region is None:
        return "rest of the loop"
    return "matrix products" if event.name in MATMUL_OPS else "elementwise and other ops"


def profile_table(prof, wall: float, steps: int, peak: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Milliseconds a step per group (and per op of the forward and backward), from self times."""
    seconds: dict[str, float] = defaultdict(float)
    flops: dict[str, float] = defaultdict(float)
    per_op: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    labelled = 0.0
    for event in prof.events():
        if event.name.startswith("minbert::"):
            region = event.name.removeprefix("minbert::")
            if region_of(event) is None:  # an outermost region: its whole span is accounted inside it
                labelled += event.cpu_time_total / 1e6
            group = GROUPS.get(region, "Python and dispatch")
            seconds[group] += event.self_cpu_time_total / 1e6
            continue
        region = region_of(event)
        group = group_of(event, region)
        seconds[group] += event.self_cpu_time_total / 1e6
        flops[group] += event.flops or 0
        if region in ("forward", "backward"):
            per_op[event.name] += event.self_cpu_time_total / 1e6
            counts[event.name] += 1
    seconds["rest of the loop"] += max(wall - labelled, 0.0)
    rows = [{"group": g, "ms a step": 1e3 * s / steps, "share %": 100 * s / wall,
             "GFLOP/s": flops[g] / s / 1e9 if flops[g] else float("nan"),
             "% of matmul peak": 100 * flops[g] / s / peak if flops[g] else float("nan")}
            for g, s in sorted(seconds.items(), key=lambda kv: -kv[1]) if s > 0]
    ops = pd.DataFrame([{"op (forward and backward)": name, "ms a step": 1e3 * s / steps,
                         "calls a step": counts[name] / steps} for name, s in per_op.items()])
    return pd.DataFrame(rows), ops.sort_values("ms a step", ascending=False)


def optimizer_table(repeats: int = 20) -> pd.DataFrame:
    """Milliseconds of one optimizer step over MiniLM's weights (random gradients): ours against torch's
    AdamW, fused (one kernel) and multi-tensor; and the memory floor: the bytes a step must move (AdamW
    reads weight, gradient and two moments and writes three) at the speed of a large in-place sum
    (`a += b`: reads two arrays, writes one, as an optimizer step does)."""
    from minbert.bert import BertModel
    from minbert.optim import AdamW, SophiaG

    params = [p.detach().clone().requires_grad_() for p in BertModel.from_pretrained().parameters()]
    generator = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator) * 1e-3
    numel = sum(p.numel() for p in params)
    candidates = {"ours AdamW": lambda: AdamW(params, lr=1e-4, weight_decay=0.01),
                  "ours SophiaG": lambda: SophiaG(params, lr=1e-4, weight_decay=0.01),
                  "torch AdamW fused": lambda: torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01,
                                                                 fused=True),
                  "torch AdamW foreach": lambda: torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01,
                                                                   foreach=True)}
    a, b = torch.randn(numel), torch.randn(numel)
    cpu = torch.device("cpu")
    bandwidth = 12 * numel / median_seconds(lambda: a.add_(b), 3, repeats, cpu)  # bytes a second
    floor = 7 * 4 * numel / bandwidth
    rows = []
    for name, build in candidates.items():
        optimizer = build()
        seconds = median_seconds(optimizer.step, 3, repeats, cpu)
        rows.append({"optimizer": name, "ms a step": 1e3 * seconds, "x memory floor": seconds / floor})
    table = pd.DataFrame(rows)
    fused = table.loc[table.optimizer == "torch AdamW fused", "ms a step"].item()
    table["x torch fused (target 1.5)"] = table["ms a step"] / fused
    print(f"\n{numel / 1e6:.1f}M weights; memory floor {1e3 * floor:.1f} ms a step "
          f"({7 * 4 * numel / 1e6:.0f} MB at {bandwidth / 1e9:.1f} GB/s, a large in-place sum's speed)")
    return table


def scoring_table(model: MultitaskBert, dev: dict[str, TaskTensors], runtime: Runtime, batch_size: int,
                  peak: float, repeats: int = 5) -> pd.DataFrame:
    """Per dev task, the trainer's scoring (`evaluation.predict`: eval mode, length-sorted batches,
    collation, heads, outputs gathered in order) against the bare encoder's forward alone on the same
    batches, collated beforehand (what the inference benchmark times): real tokens/s each, and the
    scoring's useful GFLOP/s against the matmul peak. Medians of `repeats` alternating rounds."""
    config = model.bert.config
    rows = []
    for name, data in dev.items():
        sentences = data.a if data.b is None else data.a + data.b
        tokens = sum(map(len, sentences))
        order = batch_indices(data.lengths(), batch_size, shuffle=False)
        inputs = [batch[side] for batch in (data.batch(idx, runtime.device) for idx in order)
                  for side in ("a", "b") if side in batch]

        @torch.inference_mode()
        def bare(inputs: list[dict] = inputs) -> None:
            with runtime.autocast():
                for x in inputs:
                    model.bert(x["input_ids"], x["attention_mask"], x.get("token_type_ids"), x["packing"])

        model.eval()
        scoring, encoder = [], []  # alternating rounds, so that the host's drift falls on both alike
        for _ in range(repeats + 1):
            for times, run in ((scoring, lambda data=data: predict(model, data, batch_size, runtime)),
                               (encoder, bare)):
                started = time.perf_counter()
                run()
                times.append(time.perf_counter() - started)
        scoring, encoder = statistics.median(scoring[1:]), statistics.median(encoder[1:])  # the first warms
        useful = flops_per_token(config, round(tokens / len(sentences))) * tokens / scoring
        rows.append({"task": name, "rows": len(data), "real tokens": tokens,
                     "scoring tokens/s": tokens / scoring, "bare forward tokens/s": tokens / encoder,
                     "scoring / bare": encoder / scoring, "scoring % of matmul peak": 100 * useful / peak})
    return pd.DataFrame(rows)


@contextlib.contextmanager
def timed_regions() -> Iterator[dict[str, float]]:
    """Wall seconds spent in each outermost `minbert::` region of the trainer, without the profiler:
    `training.region` is swapped for a timer for the duration."""
    seconds: dict[str, float] = defaultdict(float)
    depth = [0]

    @contextlib.contextmanager
    def timer(name: str) -> Iterator[None]:
        depth[0] += 1
        started = time.perf_counter()
        try:
            yield
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                seconds[name] += time.perf_counter() - started

    original = training.region
    training.region = timer
    try:
        yield seconds
    finally:
        training.region = original


def main() -> None:
    args = parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.float_format", lambda v: f"{v:,.2f}")
    if args.only_optimizers:
        print(optimizer_table().to_string(index=False))
        return
    device = torch.device("cpu")
    dtype = resolve_precision(args.precision, device)
    runtime = Runtime(device, dtype)
    precision = str(dtype).removeprefix("torch.")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CPU bfloat16: {cpu_has_bfloat16()}, precision {precision}, batch {args.batch}")
    rows = args.steps * args.batch
    sizes = {"sst": rows, "qqp": rows, "sts": rows}
    settings = MultitaskSettings(train_limits=sizes, dev_limits=dict.fromkeys(sizes, args.dev_rows),
                                 heldout_sizes=dict.fromkeys(sizes, 16), epochs=1, batch_size=args.batch,
                                 eval_batch_size=128, precision=precision, device="cpu")
    data = load_multitask(settings, load_tokenizer())
    model = build_model(settings)
    config = model.bert.config
    peak = matmul_peak(device, dtype, args.batch * 32, config.hidden_size, config.intermediate_size)

    def run() -> tuple[float, object]:
        fresh = build_model(settings)
        started = time.perf_counter()
        trained = train_multitask(fresh, data.train, data.dev, settings, runtime=runtime)
        return time.perf_counter() - started, trained.history[0]

    run()  # warm-up: kernels, the allocator, the tokenizer's caches
    with timed_regions() as seconds:
        wall, epoch = run()
    dev_rows = sum(len(d) for d in data.dev.values())
    eval_seconds = wall - epoch.seconds
    real = sum(sum(map(len, t.a)) + (sum(map(len, t.b)) if t.b is not None else 0)
               for t in data.train.values())
    tokens = real / sum(len(t) for t in data.train.values())  # real tokens an example
    useful = 3 * flops_per_token(config, round(tokens)) * tokens * epoch.examples / epoch.seconds
    print(f"unprofiled: {epoch.steps} steps, {epoch.examples / epoch.seconds:.1f} samples/s training "
          f"({1e3 * epoch.seconds / epoch.steps:.0f} ms a step, {useful / 1e9:.0f} useful GFLOP/s = "
          f"{100 * useful / peak:.1f}% of the matmul peak {peak / 1e9:.0f} GFLOP/s), "
          f"scoring {dev_rows / eval_seconds:.0f} rows/s")
    table = pd.DataFrame([{"region": name, "ms a step": 1e3 * seconds[name] / epoch.steps,
                           "share of the epoch %": 100 * seconds[name] / epoch.seconds}
                          for name in REGIONS if name in seconds and name != "evaluate"])
    rest = epoch.seconds - sum(seconds[name] for name in REGIONS if name != "evaluate")
    table.loc[len(table)] = ["rest of the loop", 1e3 * rest / epoch.steps, 100 * rest / epoch.seconds]
    print(f"\n== Unprofiled, timed by region: {epoch.steps} steps ==")
    print(table.to_string(index=False))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True,
                                record_shapes=True) as prof:
        wall, epoch = run()
    groups, ops = profile_table(prof, wall, epoch.steps, peak)
    print(f"\n== Profiled: {epoch.steps} steps and the scoring of {dev_rows} dev rows, {wall:.1f} s "
          f"(regions: {', '.join(REGIONS)}) ==")
    print(groups.to_string(index=False))
    print(f"\n== The {args.ops} slowest ops of the forward and backward ==")
    print(ops.head(args.ops).to_string(index=False))
    print(f"\n== Scoring each dev task ({args.dev_rows} rows, batch {settings.eval_batch_size}): the "
          f"trainer's against the bare encoder's forward on the same batches ==")
    print(scoring_table(model, data.dev, runtime, settings.eval_batch_size, peak).to_string(index=False))
    print("\n== One optimizer step over the model's weights ==")
    print(optimizer_table().to_string(index=False))


if __name__ == "__main__":
    main()
