"""Shared fixtures: the fetched data, and a small random BERT checkpoint saved by transformers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from minbert import paths
from minbert.data import fetch_data


def pytest_configure(config) -> None:
    """Under pytest-xdist, each worker gets its share of the cores (torch here, and through
    OMP_NUM_THREADS the notebook kernels and subprocesses it starts): two workers each running
    two threads on two cores would spend their time preempting each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


# The long tests (1 to 3 minutes each at 1c0335e), longest first; every other test takes seconds.
LONG_TESTS = ("test_smart_smoke_run", "test_sophia_smoke_run", "test_final_model_smoke_run",
              "test_sbert_smoke_run", "test_two_runs_at_once", "test_part1_smoke_run",
              "test_attention_smoke_run", "test_a_fourth_task_trains", "test_the_gpu_smoke_script",
              "test_every_path_of_the_gpu_smoke_script_runs_on_the_stand_in")


def pytest_collection_modifyitems(config, items) -> None:
    """Under pytest-xdist, deal the long tests out before the short ones fill in. Worksteal hands each
    worker an equal block of the list in order and lets an idle worker steal from another's end; left in
    file order the long tests bunch in one or two blocks and the suite waits for them. So each block
    starts with its share of them (dealt longest first, back and forth) and short tests fill the blocks
    to equal length."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    rank = {name: k for k, name in enumerate(LONG_TESTS)}
    long = sorted((i for i in items if i.name.startswith(LONG_TESTS)),
                  key=lambda i: rank[next(n for n in LONG_TESTS if i.name.startswith(n))])
    short = [i for i in items if not i.name.startswith(LONG_TESTS)]
    blocks: list[list] = [[] for _ in range(workers)]
    for k, item in enumerate(long):
        turn, place = divmod(k, workers)
        blocks[place if turn % 2 == 0 else workers - 1 - place].append(item)
    sizes = [len(items) // workers + (1 if w < len(items) % workers else 0) for w in range(workers)]
    for block, size in zip(blocks, sizes, strict=True):
        while len(block) < size and short:
            block.append(short.pop(0))
    items[:] = [item for block in blocks for item in block] + short


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(995)]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The project's data folder, fetched (from the mirror) if needed."""
    fetch_data()
    return paths.data_dir()


def save_tiny_checkpoint(folder: Path, safetensors: bool = True) -> Path:
    """A random BERT of another shape (3 layers, hidden 64, 4 heads, vocab 1000)."""
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=3,
                                     num_attention_heads=4, intermediate_size=128,
                                     max_position_embeddings=64)
    model = transformers.BertModel(config)
    model.save_pretrained(folder, safe_serialization=safetensors)
    (folder / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"))
