"""Our BertModel against `transformers.BertModel` on the same checkpoint and batch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from minbert.bert import BertModel, load_tokenizer, resolve_checkpoint


@torch.no_grad()
def compare_with_transformers(checkpoint: str | Path | None, sentences: Sequence[str],
                              device: str = "cpu") -> dict:
    """Largest absolute differences of both outputs on one padded batch, in eval mode, in float32 (on a
    GPU with TF32 matrix products off: they would round both sides to 10-bit mantissas).

    Hidden states are compared at real tokens only: padded positions are masked
    out of attention and carry no meaning in either implementation.
    """
    import transformers

    folder = resolve_checkpoint(checkpoint)
    tokenizer = load_tokenizer(folder)
    batch = tokenizer(list(sentences), padding=True, return_tensors="pt").to(device)
    ours = BertModel.from_pretrained(folder).to(device).eval()
    theirs = transformers.BertModel.from_pretrained(str(folder), local_files_only=True,
                                                    dtype=torch.float32).to(device).eval()
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        mine = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        ref = theirs(**batch)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    real = batch["attention_mask"].bool()
    return {
        "checkpoint": str(checkpoint) if checkpoint else "embedded all-MiniLM-L6-v2",
        "batch_shape": list(batch["input_ids"].shape),
        "padded_positions": int((~real).sum()),
        "max_abs_diff_last_hidden_state": float(
            (mine["last_hidden_state"] - ref.last_hidden_state)[real].abs().max()),
        "max_abs_diff_pooler_output": float(
            (mine["pooler_output"] - ref.pooler_output).abs().max()),
    }
