"""The runtime: device and precision choice, and bfloat16 autocast against float32 on the real checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minbert.bert import BertModel, load_tokenizer
from minbert.runtime import Runtime, RuntimeSetupError, cpu_has_bfloat16, resolve_precision

CPU = torch.device("cpu")


def test_explicit_and_automatic_precision():
    assert resolve_precision("float32", CPU) == torch.float32
    assert resolve_precision("bfloat16", CPU) == torch.bfloat16
    expected = torch.bfloat16 if cpu_has_bfloat16() else torch.float32
    assert resolve_precision("auto", CPU) == expected
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", CPU)


def test_bfloat16_autocast_stays_close_to_float32():
    """bfloat16 keeps 8 significant bits (relative rounding 2**-9, about 0.2%). Autocast runs
    the matrix products in bfloat16 and keeps LayerNorm and the residual stream in float32,
    so errors do not compound freely: on this batch the token states (mean magnitude ~0.3)
    differ by at most ~0.013 from float32. We allow 0.05 (about 4x that, 25 rounding steps
    at magnitude 1) and require mean-pooled sentence embeddings to keep a cosine
    similarity above 0.9995, which is what a classifier on top sees."""
    tokenizer = load_tokenizer()
    batch = tokenizer(["A gorgeous, witty, seductive movie.", "It is not a bad film, merely a dull one.",
                       "Long, boring, and not very funny at all, despite a strong cast and a big budget."],
                      padding=True, return_tensors="pt")
    model = BertModel.from_pretrained().eval()
    with torch.no_grad():
        exact = model(batch["input_ids"], batch["attention_mask"])
        with Runtime(CPU, torch.bfloat16).autocast():
            fast = model(batch["input_ids"], batch["attention_mask"])
    real = batch["attention_mask"].bool()
    diff = (fast["last_hidden_state"].float() - exact["last_hidden_state"])[real].abs()
    assert 0 < diff.max() < 0.05, diff.max()  # autocast did act, and stayed close
    mask = batch["attention_mask"].unsqueeze(-1)
    mean_exact = (exact["last_hidden_state"] * mask).sum(1) / mask.sum(1)
    mean_fast = (fast["last_hidden_state"].float() * mask).sum(1) / mask.sum(1)
    assert F.cosine_similarity(mean_exact, mean_fast).min() > 0.9995


def test_float32_autocast_is_a_no_op():
    with Runtime(CPU, torch.float32).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_runtime_is_resolved_once_by_name_and_seeds_every_generator():
    import random

    runtime = Runtime.resolve("cpu", "float32", seed=3)
    first = (random.random(), torch.rand(1).item())
    Runtime.resolve("cpu", "float32", seed=3)
    assert (random.random(), torch.rand(1).item()) == first
    assert runtime == Runtime(CPU, torch.float32) and runtime.precision == "float32"
    assert runtime.describe().startswith("cpu (")
    flags = Path("/proc/cpuinfo").read_text()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert runtime.describe().endswith(", native bfloat16)" if native else ", no native bfloat16)")
    with pytest.raises(RuntimeSetupError, match="unknown device 'tpu'"):
        Runtime.resolve("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeSetupError, match="no GPU is available"):
            Runtime.resolve("cuda")


def test_freed_memory_is_kept_for_the_next_allocation():
    """After `keep_freed_memory`, a 64 MB block freed and allocated again ten times (as a training step
    does with the word embeddings' gradient) is not faulted in from the system each time once the heap
    has grown to its working size: fewer faults in all than two allocations' pages (without it, ten
    allocations' worth: 160,000 here)."""
    import resource

    from minbert.runtime import keep_freed_memory

    assert keep_freed_memory()  # glibc, as on every machine this project runs on

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    pages = 64 * 2**20 // resource.getpagesize()
    for _ in range(5):  # the heap grows to its working size first, taking memory from the system
        torch.zeros(16 * 2**20).sum()
    before = faults()
    for _ in range(10):
        torch.zeros(16 * 2**20).sum()
    assert faults() - before < 2 * pages
