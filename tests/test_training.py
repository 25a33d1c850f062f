"""The training loop: it learns, keeps the best epoch, and stops clearly on a NaN loss."""

from __future__ import annotations

import pytest
import torch

from minbert.bert import BertModel
from minbert.evaluation import predict_logits
from minbert.models import SentenceClassifier, pool
from minbert.notebook_settings import Part1Config
from minbert.part1 import train_classifier
from minbert.training import TrainingError


def toy_task(n=96, seed=0):
    """Sentences whose class is given by one marker token: learnable in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    tokens, labels = [], []
    for _ in range(n):
        label = int(torch.randint(0, 2, (1,), generator=g))
        body = torch.randint(20, 1000, (int(torch.randint(3, 10, (1,), generator=g)),), generator=g).tolist()
        tokens.append([2, 10 + label, *body, 3])
        labels.append(label)
    return tokens, labels


# The standard recipe at its one default (minbert.config): the trainer has no defaults of its own for it.
RECIPE = {k: Part1Config.model_fields[k].default for k in ("lr_schedule", "warmup_ratio", "max_grad_norm")}


def make_model(tiny_checkpoint, freeze=False):
    torch.manual_seed(0)
    return SentenceClassifier(BertModel.from_pretrained(tiny_checkpoint), 2, dropout=0.0,
                              pooling="cls", freeze_bert=freeze)


def test_finetuning_learns_a_token_marker_task(tiny_checkpoint):
    tokens, labels = toy_task()
    model = make_model(tiny_checkpoint)
    history = train_classifier(model, tokens, labels, tokens[:48], labels[:48], epochs=6, lr=1e-3,
                               batch_size=16, seed=0, **RECIPE)
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[0]["lr"] > history[3]["lr"] > history[-1]["lr"] == 0.0  # the standard recipe decays to 0
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(h["dev_acc"] for h in history) >= 0.9
    # the model keeps the best epoch's weights
    logits = predict_logits(model, tokens[:48], 32)
    accuracy = (logits.argmax(-1) == torch.tensor(labels[:48])).float().mean().item()
    assert accuracy == pytest.approx(max(h["dev_acc"] for h in history))


def test_pretrain_mode_leaves_bert_unchanged(tiny_checkpoint):
    tokens, labels = toy_task(48)
    model = make_model(tiny_checkpoint, freeze=True)
    before = {k: v.clone() for k, v in model.bert.state_dict().items()}
    head_before = model.head.weight.clone()
    train_classifier(model, tokens, labels, tokens, labels, epochs=2, lr=1e-2, batch_size=16, **RECIPE)
    for name, value in model.bert.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not torch.equal(model.head.weight, head_before)


def test_nan_loss_stops_with_a_clear_message(tiny_checkpoint):
    tokens, labels = toy_task(32)
    model = make_model(tiny_checkpoint)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"loss became nan at sst, epoch 1, batch 0"):
        train_classifier(model, tokens, labels, tokens, labels, epochs=1, lr=1e-3, batch_size=16,
                         desc="sst", **RECIPE)


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    pooled = pool({"last_hidden_state": hidden, "pooler_output": None}, mask, "mean")
    assert pooled.tolist() == [[2.0, 3.0]]
