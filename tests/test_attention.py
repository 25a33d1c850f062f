"""Attention variants against standard attention, and sparsemax against its definition."""

from __future__ import annotations

import pytest
import torch

from minbert.attention import STUDY_VARIANTS, VARIANTS, canonical_variant, sparsemax
from minbert.bert import BertModel
from tests.test_bert import padded_batch


def test_sparsemax_hand_computed_values():
    # z = (1, 0.5, -1): support {1, 0.5}, threshold (1.5 - 1) / 2 = 0.25 -> (0.75, 0.25, 0)
    assert torch.allclose(sparsemax(torch.tensor([1.0, 0.5, -1.0])), torch.tensor([0.75, 0.25, 0.0]))
    # far apart: all weight on the maximum (a one-hot, where softmax never gives a zero)
    assert torch.equal(sparsemax(torch.tensor([3.0, 0.0, -2.0])), torch.tensor([1.0, 0.0, 0.0]))
    # equal scores: uniform
    assert torch.allclose(sparsemax(torch.zeros(4)), torch.full((4,), 0.25))
    # close scores: all in the support, threshold (0.2 + 0.1 + 0 - 1) / 3
    tau = (0.3 - 1) / 3
    assert torch.allclose(sparsemax(torch.tensor([0.2, 0.1, 0.0])),
                          torch.tensor([0.2 - tau, 0.1 - tau, -tau]))


def test_sparsemax_is_the_projection_onto_the_simplex():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 7, generator=g, dtype=torch.float64) * 2
    p = sparsemax(z)
    assert torch.allclose(p.sum(-1), torch.ones(200, dtype=torch.float64))
    assert (p >= 0).all() and (p == 0).any()
    # KKT conditions: p_i = z_i - tau on the support, z_i <= tau off it, one tau per row
    support = p > 0
    gap = z - p
    tau_high = gap.masked_fill(~support, -torch.inf).amax(-1)
    tau_low = gap.masked_fill(~support, torch.inf).amin(-1)
    assert torch.allclose(tau_high, tau_low)
    assert (z.masked_fill(support, -torch.inf).amax(-1) <= tau_high + 1e-12).all()


def test_sparsemax_along_another_axis_and_in_bfloat16():
    z = torch.randn(3, 5, 4)
    assert torch.allclose(sparsemax(z, dim=1), sparsemax(z.transpose(1, 2)).transpose(1, 2))
    low = sparsemax(z.bfloat16())
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), sparsemax(z), atol=1e-2)


def test_sparsemax_masked_positions_get_zero_and_do_not_change_the_rest():
    z = torch.tensor([[0.3, 0.1, 5.0, -0.2]])
    masked = sparsemax(z.masked_fill(torch.tensor([[False, False, True, False]]), float("-inf")))
    assert masked[0, 2] == 0
    assert torch.allclose(masked[0, [0, 1, 3]], sparsemax(z[0, [0, 1, 3]]))


def test_sparsemax_gradient_passes_gradcheck():
    z = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sparsemax, (z,))
    masked = torch.tensor([0.4, -0.1, float("-inf"), 0.2], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad((sparsemax(masked) * torch.arange(4.0, dtype=torch.float64)).sum(), masked)
    assert grad[2] == 0 and torch.isfinite(grad).all()


def test_variant_names():
    assert len(STUDY_VARIANTS) == 8
    assert canonical_variant("sparsemax+center") == "center+sparsemax"
    assert all(canonical_variant(v) == v for v in VARIANTS)
    for bad in ("softmax", "linear+linear-nobias", "center+center", "standard+center"):
        with pytest.raises(ValueError, match="unknown attention variant"):
            canonical_variant(bad)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if "sparsemax" not in v and v != "standard"])
def test_variants_start_as_standard_attention(tiny_checkpoint, variant):
    standard = BertModel.from_pretrained(tiny_checkpoint).eval()
    model = BertModel.from_pretrained(tiny_checkpoint, attention=variant).eval()
    extra = {k for k in model.state_dict() if k not in standard.state_dict()}
    assert extra, variant  # the variant has parameters of its own, absent from the checkpoint
    batch = padded_batch(model.config.vocab_size)
    with torch.no_grad():
        ours, reference = model(**batch), standard(**batch)
    real = batch["attention_mask"].bool()
    assert torch.allclose(ours["last_hidden_state"][real], reference["last_hidden_state"][real], atol=1e-5)


def test_sparsemax_variants_attend_sparsely_and_train(tiny_checkpoint):
    model = BertModel.from_pretrained(tiny_checkpoint, attention="center+linear+sparsemax")
    batch = padded_batch(model.config.vocab_size)
    maps = model.eval().attention_maps(batch["input_ids"], batch["attention_mask"])
    real_keys = batch["attention_mask"].bool()[:, None, None, :]
    for probs in maps:
        assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5)
        assert (probs.masked_select(~real_keys.expand_as(probs)) == 0).all()
    model.train()
    out = model(**batch)["last_hidden_state"]
    out[batch["attention_mask"].bool()].square().mean().backward()
    layer = model.encoder.layer[0].attention.self
    for grad in (layer.query_mix.grad, layer.key_mix.grad, layer.center.grad, layer.qkv.weight.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_softmax_attention_maps_match_transformers(tiny_checkpoint):
    import transformers

    theirs = transformers.BertModel.from_pretrained(tiny_checkpoint, attn_implementation="eager").eval()
    ours = BertModel.from_pretrained(tiny_checkpoint).eval()
    batch = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        expected = theirs(**batch, output_attentions=True).attentions
    got = ours.attention_maps(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    real_rows = batch["attention_mask"].bool()[:, None, :, None]
    for mine, reference in zip(got, expected, strict=True):
        assert torch.allclose(mine * real_rows, reference * real_rows, atol=1e-5)


def test_variant_weights_round_trip_through_a_state_dict(tiny_checkpoint):
    model = BertModel.from_pretrained(tiny_checkpoint, attention="center+linear-nobias")
    with torch.no_grad():
        model.encoder.layer[1].attention.self.center.add_(0.5)
    copy = BertModel.from_pretrained(tiny_checkpoint, attention="center+linear-nobias")
    copy.load_checked(model.state_dict(), source="test")
    centers = [m.encoder.layer[1].attention.self.center for m in (copy, model)]
    assert torch.equal(*centers)


def test_linear_and_center_scores_follow_their_formulas():
    from minbert.attention import Packing, SelfAttention

    torch.manual_seed(0)
    layer = SelfAttention(hidden_size=8, num_heads=2, dropout=0.0, variant="center+linear").eval()
    with torch.no_grad():
        layer.query_mix.copy_(torch.tensor([[0.5, 2.0, 0.1], [1.5, -1.0, 0.0]]))
        layer.key_mix.copy_(torch.tensor([[0.3, 0.7, -0.2], [0.0, 1.0, 0.4]]))
        layer.center.add_(0.1 * torch.randn(2, 4, 4))
    hidden = torch.randn(1, 5, 8)
    packing = Packing.from_mask(torch.ones(1, 5))
    probs = layer.probabilities(hidden.view(5, 8), packing)
    q, k, _ = layer.qkv(hidden).view(1, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    for h in range(2):
        a, b, w = layer.query_mix[h], layer.key_mix[h], layer.center[h]
        q_mixed = a[0] * q[0, h] + a[1] * k[0, h] + a[2]
        k_mixed = b[0] * q[0, h] + b[1] * k[0, h] + b[2]
        expected = torch.softmax(q_mixed @ w @ k_mixed.T / 2.0, dim=-1)
        assert torch.allclose(probs[0, h], expected, atol=1e-6)


def test_sparsemax_model_is_the_same_in_training_without_dropout(tiny_checkpoint):
    model = BertModel.from_pretrained(tiny_checkpoint, attention="center+linear+sparsemax",
                                      attention_probs_dropout_prob=0.0,
                                      hidden_dropout_prob=0.0)
    batch = padded_batch(model.config.vocab_size)
    real = batch["attention_mask"].bool()
    trained = model.train()(**batch)["last_hidden_state"][real]
    evaluated = model.eval()(**batch)["last_hidden_state"][real]
    assert torch.allclose(trained, evaluated, atol=1e-5)
