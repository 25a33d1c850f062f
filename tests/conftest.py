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
