"""Task models: the multitask bi-encoder's heads, ranges and options."""

from __future__ import annotations

import pytest
import torch

from minbert.bert import BertModel
from minbert.models import MultitaskBert
from tests.test_bert import padded_batch


@pytest.fixture
def pair(tiny_checkpoint):
    """Two padded batches as `TaskTensors.batch` gives them: sentences a and b."""
    a, b = padded_batch(1000, seed=1), padded_batch(1000, seed=2)
    return {"a": {k: a[k] for k in ("input_ids", "attention_mask")},
            "b": {k: b[k] for k in ("input_ids", "attention_mask")}}


def make(tiny_checkpoint, **kwargs):
    torch.manual_seed(0)
    return MultitaskBert(BertModel.from_pretrained(tiny_checkpoint), **kwargs).eval()


def test_output_shapes_and_sts_range(tiny_checkpoint, pair):
    model = make(tiny_checkpoint)
    assert model.task_outputs("sst", {"a": pair["a"]}).shape == (4, 5)
    assert model.task_outputs("qqp", pair).shape == (4,)
    scores = model.task_outputs("sts", pair)
    assert scores.shape == (4,) and bool(((scores >= 0) & (scores <= 5)).all())


def test_identical_sentences_score_five_and_sts_is_symmetric(tiny_checkpoint, pair):
    model = make(tiny_checkpoint, shared_similarity=True)
    same, swapped = {"a": pair["a"], "b": pair["a"]}, {"a": pair["b"], "b": pair["a"]}
    torch.testing.assert_close(model.task_outputs("sts", same), torch.full((4,), 5.0))
    torch.testing.assert_close(model.task_outputs("sts", pair), model.task_outputs("sts", swapped))


def test_options_build_the_described_heads(tiny_checkpoint):
    model = make(tiny_checkpoint, head_hidden=32, dropout={"sst": 0.1, "qqp": 0.2, "sts": 0.3},
                 shared_similarity=True)
    assert [type(m).__name__ for m in model.sst_head] == ["Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert model.qqp_head[1].in_features == 3 * 64 and model.qqp_head[0].p == 0.2
    assert model.sts_dropout.p == 0.3 and model.similarity is not None
    with pytest.raises(ValueError, match="one rate for each"):
        make(tiny_checkpoint, dropout={"sst": 0.1})


def test_every_task_trains_the_shared_bert(tiny_checkpoint, pair):
    model = make(tiny_checkpoint).train()
    for loss in (model.task_outputs("sst", {"a": pair["a"]}).sum(), model.task_outputs("qqp", pair).sum(),
                 model.task_outputs("sts", pair).sum()):
        model.zero_grad()
        loss.backward()
        grad = model.bert.encoder.layer[0].attention.self.qkv.weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_cross_encoder_reads_the_pair_as_one_sequence(tiny_checkpoint):
    import transformers

    from minbert.bert import load_tokenizer
    from minbert.data import Example, TaskSplit, pad_batch, tensors_for

    tokenizer = load_tokenizer(tiny_checkpoint)
    texts = [("w1 w2 w3", "w4 w5"), ("w6", "w7 w8 w9 w10 w11 w12"), ("w13 w14", "w13 w14")]
    split = TaskSplit("sts", "dev", "test", [Example(f"e{i}", t, 2.5) for i, t in enumerate(texts)], [])
    tensors = tensors_for(split, tokenizer, max_length=8, cross_encoder=True)
    assert tensors.b is None
    reference = tokenizer([a for a, _ in texts], [b for _, b in texts], truncation="longest_first",
                          max_length=8, padding=True, return_tensors="pt")
    batch = pad_batch(tensors.a, second_starts=tensors.second_starts)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(batch[key], reference[key]), key
    model = make(tiny_checkpoint, mode="cross-encoder")
    full = tensors.batch([0, 1, 2], torch.device("cpu"))
    (embedded,) = model.embed_inputs(full)
    theirs = transformers.BertModel.from_pretrained(tiny_checkpoint).eval()
    with torch.no_grad():
        hidden = model.bert.encode(embedded)["last_hidden_state"]
        expected = theirs(**{k: reference[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    real = reference["attention_mask"].bool()
    assert torch.allclose(hidden[real], expected.last_hidden_state[real], atol=1e-5)  # token types used
    scores = model.task_outputs("sts", full)
    assert scores.shape == (3,) and ((0 <= scores) & (scores <= 5)).all()
    assert model.task_outputs("qqp", full).shape == (3,)
    with pytest.raises(ValueError, match="bi-encoder mode only"):
        make(tiny_checkpoint, mode="cross-encoder", shared_similarity=True)
    with pytest.raises(ValueError, match="unknown mode"):
        make(tiny_checkpoint, mode="poly-encoder")
