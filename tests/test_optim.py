"""Our AdamW against torch.optim.AdamW and against the update written out by hand."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from minbert.optim import AdamW


def regression_problem(dtype=torch.float32):
    torch.manual_seed(0)
    x = torch.randn(256, 10, dtype=dtype)
    y = x @ torch.randn(10, 1, dtype=dtype) + 0.1 * torch.randn(256, 1, dtype=dtype)
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(dtype)
    return x, y, model


def param_groups(model):
    return [{"params": model[0].parameters(), "weight_decay": 0.1},
            {"params": model[2].parameters(), "lr": 3e-3}]


def train(model, optimizer, x, y, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_thousand_steps_match_torch_adamw(dtype):
    x, y, ours = regression_problem(dtype)
    theirs = copy.deepcopy(ours)
    train(ours, AdamW(param_groups(ours), lr=1e-2, betas=(0.9, 0.98), eps=1e-7, weight_decay=0.01),
          x, y, 1000)
    train(theirs, torch.optim.AdamW(param_groups(theirs), lr=1e-2, betas=(0.9, 0.98), eps=1e-7,
                                    weight_decay=0.01), x, y, 1000)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    final = torch.nn.functional.mse_loss(ours(x), y).item()
    assert final < 0.05  # it did learn the regression


def test_single_step_by_hand_with_and_without_bias_correction():
    for correct_bias in (True, False):
        p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
        p.grad = torch.tensor([0.5, 0.25, -1.0], dtype=torch.float64)
        lr, b1, b2, eps, wd = 0.1, 0.9, 0.99, 1e-8, 0.5
        AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, correct_bias=correct_bias).step()
        expected = []
        for w, g in zip([1.0, -2.0, 3.0], [0.5, 0.25, -1.0], strict=True):
            w = w * (1 - lr * wd)
            m, v = (1 - b1) * g, (1 - b2) * g * g
            if correct_bias:
                w -= lr / (1 - b1) * m / (math.sqrt(v) / math.sqrt(1 - b2) + eps)
            else:
                w -= lr * m / (math.sqrt(v) + eps)
            expected.append(w)
        torch.testing.assert_close(p.detach(), torch.tensor(expected, dtype=torch.float64))


def test_state_dict_round_trip_continues_identically():
    x, y, model = regression_problem()
    optimizer = AdamW(param_groups(model), lr=1e-2, weight_decay=0.01)
    train(model, optimizer, x, y, 20)
    saved_model, saved_state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    train(model, optimizer, x, y, 30)

    _, _, restored = regression_problem()
    restored.load_state_dict(saved_model)
    restored_opt = AdamW(param_groups(restored), lr=1.0)  # hyper-parameters come from the state dict
    restored_opt.load_state_dict(saved_state)
    assert restored_opt.param_groups[1]["lr"] == 3e-3
    train(restored, restored_opt, x, y, 30)
    for a, b in zip(model.parameters(), restored.parameters(), strict=True):
        assert torch.equal(a, b)


def test_parameters_without_gradients_are_left_alone():
    frozen = torch.nn.Parameter(torch.ones(3))
    live = torch.nn.Parameter(torch.ones(3))
    live.grad = torch.ones(3)
    AdamW([frozen, live], lr=0.1, weight_decay=0.1).step()
    assert torch.equal(frozen.detach(), torch.ones(3))
    assert not torch.equal(live.detach(), torch.ones(3))


@pytest.mark.parametrize("kwargs", [{"lr": -1.0}, {"betas": (1.0, 0.9)}, {"eps": -1e-8},
                                    {"weight_decay": -0.1}])
def test_invalid_hyper_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match="invalid"):
        AdamW([torch.nn.Parameter(torch.ones(1))], **kwargs)


def test_parameters_that_join_later_keep_their_own_step_count():
    """A weight unfrozen after some steps starts its bias correction at step 1, as in torch."""
    x, y, ours = regression_problem()
    theirs = copy.deepcopy(ours)
    optimizers = (AdamW(ours.parameters(), lr=1e-2, weight_decay=0.01),
                  torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.01))
    for model in (ours, theirs):
        model[0].weight.requires_grad_(False)
    for model, optimizer in zip((ours, theirs), optimizers, strict=True):
        train(model, optimizer, x, y, 10)
        model[0].weight.requires_grad_(True)
        train(model, optimizer, x, y, 10)
    assert optimizers[0].state[ours[0].weight]["step"] == 10
    assert optimizers[0].state[ours[0].bias]["step"] == 20
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
