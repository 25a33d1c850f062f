"""SMART: divergences against their definitions, the epsilon ball, where gradients go, training."""

from __future__ import annotations

import math

import pytest
import torch

from minbert.bert import BertModel
from minbert.config import MultitaskSettings
from minbert.models import MultitaskBert
from minbert.smart import (
    SmartSettings,
    divergence,
    dropout_control,
    embedding_scale,
    normalise,
    perturbation,
    project,
    smart_loss,
    token_norms,
)
from minbert.training import train_multitask
from tests.test_bert import padded_batch
from tests.test_multitask import CPU, toy_tasks


def test_divergences_match_their_definitions():
    clean, perturbed = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.3, 0.1]]), torch.tensor([[0.5, 0.5, -1.0],
                                                                                     [0.0, 0.0, 0.0]])
    p, q = clean.softmax(-1), perturbed.softmax(-1)
    expected = ((p * (p / q).log()).sum(-1) + (q * (q / p).log()).sum(-1)).mean()
    assert torch.allclose(divergence("multiclass", perturbed, clean), expected)
    a, b = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.5])
    pa, pb = torch.sigmoid(a), torch.sigmoid(b)

    def kl(x, y):
        return x * (x / y).log() + (1 - x) * ((1 - x) / (1 - y)).log()

    assert torch.allclose(divergence("binary", b, a), (kl(pa, pb) + kl(pb, pa)).mean())
    assert torch.allclose(divergence("regression", torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.0])),
                          torch.tensor(0.125))
    with pytest.raises(ValueError, match="unknown output kind"):
        divergence("ranking", a, b)


def test_the_naive_regression_divergence_cannot_see_a_shift_of_every_score():
    """Read as one softmax over the batch, scores that all move by the same amount look unchanged:
    why the study's SMART on STS regularised the wrong thing. The squared difference sees it."""
    clean = torch.tensor([1.0, 3.5, 4.0, 0.5])
    shifted = clean + 1.5
    assert divergence("regression-as-classification", shifted, clean).abs() < 1e-6
    assert divergence("regression", shifted, clean) == pytest.approx(2.25)


@pytest.mark.parametrize("norm", ["inf", "l2", "l1"])
def test_projection_and_normalisation_respect_the_norm(norm):
    torch.manual_seed(0)
    x = torch.randn(7, 16) * 3
    order = {"inf": math.inf, "l2": 2, "l1": 1}[norm]
    norms = torch.linalg.vector_norm(project(x, 0.25, norm), ord=order, dim=-1)
    assert (norms <= 0.25 + 1e-6).all()
    assert torch.allclose(torch.linalg.vector_norm(normalise(x, norm), ord=order, dim=-1), torch.ones(7))
    small = x * 1e-3  # already inside: unchanged
    assert torch.allclose(project(small, 1.0, norm), small)


@pytest.fixture(scope="module")
def sst_setup(tiny_checkpoint):
    torch.manual_seed(0)
    model = MultitaskBert(BertModel.from_pretrained(tiny_checkpoint), dropout=0.0).eval()
    ids = padded_batch(model.bert.config.vocab_size)
    batch = {"a": {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]},
             "b": {"input_ids": ids["input_ids"].flip(0), "attention_mask": ids["attention_mask"].flip(0)}}
    return model, batch


def run_smart(model, batch, task, kind, settings, seen=None):
    embedded = model.embed_inputs(batch if task != "sst" else {"a": batch["a"]})
    clean = model.outputs_from_embedded(task, embedded)

    def forward(deltas):
        if seen is not None:
            seen.append([d.detach().clone() for d in deltas])
        shifted = [e.shifted(d) for e, d in zip(embedded, deltas, strict=True)]
        return model.outputs_from_embedded(task, shifted)

    return smart_loss(forward, [e.hidden for e in embedded], clean, kind, settings), clean


@pytest.mark.parametrize("task, kind", [("sst", "multiclass"), ("qqp", "binary"), ("sts", "regression")])
def test_zero_epsilon_gives_a_zero_adversarial_term(sst_setup, task, kind):
    model, batch = sst_setup
    loss, _ = run_smart(model, batch, task, kind, SmartSettings(epsilon=0.0, step_size=1.0, noise_var=1.0))
    assert abs(float(loss.detach())) < 1e-6
    loss, _ = run_smart(model, batch, task, kind, SmartSettings(epsilon=1.0, step_size=1.0, noise_var=0.1))
    assert float(loss.detach()) > 1e-6  # and a real perturbation moves the outputs


@pytest.mark.parametrize("norm", ["inf", "l2", "l1"])
def test_every_perturbation_stays_in_the_ball(sst_setup, norm):
    model, batch = sst_setup
    seen = []
    run_smart(model, batch, "qqp", "binary", SmartSettings(epsilon=0.05, step_size=1.0, noise_var=1.0,
                                                           norm=norm, steps=3), seen)
    assert len(seen) == 4  # three ascent steps and the final pass
    order = {"inf": math.inf, "l2": 2, "l1": 1}[norm]
    for deltas in seen:
        for delta in deltas:
            assert (torch.linalg.vector_norm(delta, ord=order, dim=-1) <= 0.05 + 1e-6).all()
    assert (torch.linalg.vector_norm(seen[-1][0], ord=order, dim=-1) > 0.049).all()  # ascent reaches the edge


def test_gradient_reaches_the_encoder_and_the_clean_pass_only_when_asked(sst_setup):
    model, batch = sst_setup
    for through_clean in (False, True):
        settings = SmartSettings(epsilon=0.1, step_size=0.1, through_clean=through_clean)
        loss, clean = run_smart(model, batch, "sst", "multiclass", settings)
        weight = model.bert.encoder.layer[0].attention.self.qkv.weight
        grad_weight, grad_clean = torch.autograd.grad(loss, [weight, clean], allow_unused=True)
        assert grad_weight is not None and grad_weight.abs().sum() > 0
        assert (grad_clean is not None and grad_clean.abs().sum() > 0) == through_clean
    assert all(p.grad is None for p in model.parameters())  # the ascent steps leave .grad alone


def perturbation_of(model, batch, settings):
    embedded = model.embed_inputs(batch)
    clean = model.outputs_from_embedded("qqp", embedded)

    def forward(deltas):
        shifted = [e.shifted(d) for e, d in zip(embedded, deltas, strict=True)]
        return model.outputs_from_embedded("qqp", shifted)

    inputs = [e.hidden for e in embedded]
    return inputs, perturbation(forward, inputs, clean, "binary", settings)


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_mtdnn_perturbation_has_epsilon_norm_on_every_token(sst_setup, norm):
    """MT-DNN's form rescales noise plus the ascent step to unit norm per token (times epsilon here)."""
    model, batch = sst_setup
    for epsilon in (1.0, 0.3):
        _, deltas = perturbation_of(model, batch, SmartSettings(form="mtdnn", epsilon=epsilon, norm=norm))
        for delta in deltas:
            torch.testing.assert_close(token_norms(delta, norm), torch.full((len(delta), 1), epsilon))


def test_relative_sizes_are_multiples_of_the_embedding_scale(sst_setup):
    model, batch = sst_setup
    settings = SmartSettings(epsilon=0.05, step_size=0.1, noise_var=1e-3, norm="l2", relative=True)
    inputs, deltas = perturbation_of(model, batch, settings)
    scale = float(embedding_scale(inputs, "l2"))
    by_hand = torch.cat([token_norms(x.detach(), "l2").flatten() for x in inputs]).mean()
    assert scale == pytest.approx(float(by_hand)) and scale > 1.0
    for delta in deltas:  # one step of twice epsilon from small noise: every token on the ball's edge
        torch.testing.assert_close(token_norms(delta, "l2"), torch.full((len(delta), 1), 0.05 * scale))


def test_dropout_alone_makes_the_zero_perturbation_term_positive(tiny_checkpoint):
    torch.manual_seed(0)
    model = MultitaskBert(BertModel.from_pretrained(tiny_checkpoint, hidden_dropout_prob=0.3))
    ids = padded_batch(model.bert.config.vocab_size)
    batch = {"a": {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}}
    for training in (True, False):
        model.train(training)
        embedded = model.embed_inputs(batch)
        clean = model.outputs_from_embedded("sst", embedded)
        (only,) = embedded
        control = dropout_control(lambda ds, e=only: model.outputs_from_embedded("sst", [e.shifted(ds[0])]),
                                  [only.hidden], clean, "multiclass")
        assert (float(control) > 1e-6) == training


@pytest.mark.filterwarnings("ignore:skipped malformed row")
def test_on_real_batches_the_term_is_positive_and_grows_with_epsilon(data_dir):
    """The embedded MiniLM on one real batch per task: the adversarial term (eval mode, no dropout)
    grows with a perturbation sized relative to the embeddings, and at the paper's absolute 1e-5
    it is next to nothing."""
    from minbert.bert import load_tokenizer
    from minbert.config import arm_settings
    from minbert.experiments import build_model, load_multitask
    from minbert.params import load_config
    from minbert.smart_probe import smart_scale_probe

    cfg = load_config("04_smart", "smoke")
    data = load_multitask(cfg, load_tokenizer())
    model = build_model(arm_settings(cfg, cfg.arm))
    rows = smart_scale_probe(model, data.train, [0.0, 0.01, 0.03, 0.1],
                             SmartSettings(norm="l2", relative=True), batch_size=16)
    for task in ("sst", "qqp", "sts"):
        terms = [r["eval term"] for r in rows if r["task"] == task]
        assert terms[0] == 0.0 and all(b > a > 0 for a, b in zip(terms[1:], terms[2:], strict=False))
        assert all(r["train control"] > 0 for r in rows if r["task"] == task)  # dropout alone
    paper = smart_scale_probe(model, {"sts": data.train["sts"]}, [1e-5], SmartSettings(), batch_size=16)
    strong = [r["eval term"] for r in rows if r["task"] == "sts"][-1]
    assert paper[0]["eval term"] < 1e-4 * strong


def test_training_with_smart_on_every_task_is_finite(tiny_checkpoint):
    train, dev = toy_tasks(32, 0), toy_tasks(16, 1)
    torch.manual_seed(0)
    model = MultitaskBert(BertModel.from_pretrained(tiny_checkpoint))
    run = MultitaskSettings(epochs=1, lr=1e-3, batch_size=8,
                       smart={"sst": {}, "qqp": {"norm": "l2", "epsilon": 1e-3},
                              "sts": {"steps": 2, "epsilon": 1e-3}})
    record = train_multitask(model, train, dev, run, runtime=CPU).history[0]
    for task in ("sst", "qqp", "sts"):
        assert math.isfinite(record.train_loss[task]) and record.smart_loss[task] >= 0
        assert record.smart_control[task] >= 0  # the dropout-only part, recorded beside it
    assert math.isfinite(record.dev_mean)
    with pytest.raises(ValueError, match="smart"):
        MultitaskSettings(smart={"sst": {"norm": "l3"}})
    with pytest.raises(ValueError, match="smart"):
        MultitaskSettings(smart={"sst": {"radius": 1.0}})
    with pytest.raises(ValueError, match="form"):
        MultitaskSettings(smart={"sst": {"form": "fgsm"}})
