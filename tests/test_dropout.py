"""Our CPU dropout: the drop rate, an unbiased scale, gradients, reproducibility, and its C loop against
the same arithmetic as tensor operations."""

from __future__ import annotations

import pytest
import torch

from minbert import attention
from minbert import dropout as dropout_module
from minbert.bert import BertModel
from minbert.dropout import Dropout, dropout, reference_dropout


def test_drop_rate_and_scale_are_right_in_every_lane():
    torch.manual_seed(0)
    n = 2_000_000
    out = dropout(torch.ones(n), 0.1)
    kept = out != 0
    # one 64-bit draw serves four elements: check each of the four 16-bit lanes
    for lane in range(4):
        rate = kept[lane::4].float().mean().item()
        assert abs(rate - 0.9) < 3e-3, (lane, rate)  # binomial std at n/4 is 4e-4
    assert torch.allclose(out[kept], torch.tensor(65536 / (65536 - 6554)))
    assert abs(out.mean().item() - 1.0) < 3e-3  # unbiased: E[out] = x


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    out = dropout(x, 0.3)
    out.sum().backward()
    expected = torch.where(out != 0, torch.tensor(65536 / (65536 - round(0.3 * 65536))), 0.0)
    torch.testing.assert_close(x.grad, expected)


def test_identity_in_eval_and_at_zero_and_reproducible():
    x = torch.randn(10, 10)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    module = Dropout(0.5).eval()
    assert module(x) is x
    torch.manual_seed(3)
    a = dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.5))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)


def _awkward_values(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Normal values with the edge cases of a multiply and a rounding mixed in: signed zeros, infinities,
    subnormals, the largest finite value (which the scale rounds up to infinity) and halfway cases."""
    torch.manual_seed(7)
    x = torch.randn(shape).to(dtype)
    info = torch.finfo(dtype)
    edges = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), info.tiny / 4, -info.tiny, info.max,
                          -info.max, 1.0 + info.eps / 2, 3.0], dtype=dtype)
    flat = x.view(-1)
    copies = edges.repeat(40)[: flat.numel()]
    flat[: len(copies)] = copies
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(7,), (333, 384), (4, 12, 41, 41)])
def test_the_c_loop_is_the_tensor_operations_to_the_bit(dtype, shape):
    """The one-pass loop (`dropout_kernel.c`) and `reference_dropout` (torch.where, then the scale) give
    the same bits forward and backward from the same draws, bfloat16's rounding included."""
    assert dropout_module._kernel() is not None  # built here: the loop is what runs
    x = _awkward_values(shape, dtype).requires_grad_()
    grad = _awkward_values(shape, dtype).flip(-1).contiguous()
    results = []
    for apply in (lambda: dropout(x, 0.1), lambda: reference_dropout(x, 0.1)):
        torch.manual_seed(11)
        out = apply()
        x.grad = None
        out.backward(grad)
        results.append((out.detach(), x.grad))
    (loop_out, loop_grad), (ops_out, ops_grad) = results
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    for ours, theirs in ((loop_out, ops_out), (loop_grad, ops_grad)):
        assert torch.equal(ours.view(bits), theirs.view(bits))
    assert bool((loop_out == 0).any()) and bool(loop_out.isinf().any())  # both kinds of element occur


def test_the_c_loop_is_used_where_it_can_be_and_not_elsewhere():
    x = torch.randn(64, 32, requires_grad=True)
    assert type(dropout(x, 0.2).grad_fn).__name__ == "_MaskedScaleBackward"
    transposed = torch.randn(32, 64, requires_grad=True).t()  # not contiguous: tensor operations
    assert type(dropout(transposed, 0.2).grad_fn).__name__ != "_MaskedScaleBackward"
    torch.manual_seed(2)
    a = dropout(transposed, 0.2)
    torch.manual_seed(2)
    assert torch.equal(a, dropout(transposed.contiguous(), 0.2))  # the same draws and mask either way


def test_written_out_training_attention_equals_sdpa(tiny_checkpoint, monkeypatch):
    """With the probabilities' dropout made the identity, the training path of attention
    (written out, used on the CPU) gives what the eval path (SDPA) gives, padding included."""
    from tests.test_bert import padded_batch

    model = BertModel.from_pretrained(tiny_checkpoint, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.5)
    batch = padded_batch(1000)
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    with torch.no_grad():
        reference = model.eval()(*args)["last_hidden_state"]
        monkeypatch.setattr(attention, "dropout", lambda x, p, training: x)
        written_out = model.train()(*args)["last_hidden_state"]
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(written_out[real], reference[real], atol=1e-5, rtol=1e-5)


def test_without_a_compiler_dropout_warns_once_and_gives_the_same_results(tmp_path, monkeypatch):
    """Where no C compiler works, the loop is not built: one warning names what falls back, and dropout
    runs as tensor operations with the same draws and results."""
    from minbert import cpu_kernels

    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("MINBERT_KERNEL_CACHE", str(tmp_path / "cache"))  # nothing built there yet
    cpu_kernels.library.cache_clear()
    dropout_module._kernel.cache_clear()
    try:
        x = torch.randn(64, 48, requires_grad=True)
        with pytest.warns(UserWarning, match="dropout's one-pass mask is not available in C here"):
            torch.manual_seed(4)
            out = dropout(x, 0.25)
        assert dropout_module._kernel() is None
        assert type(out.grad_fn).__name__ != "_MaskedScaleBackward"
        torch.manual_seed(4)
        assert torch.equal(out, reference_dropout(x, 0.25))
    finally:  # the next test builds (or finds) the loop again
        cpu_kernels.library.cache_clear()
        dropout_module._kernel.cache_clear()
