"""PCGrad on hand-made gradients and on a small multi-loss model."""

from __future__ import annotations

import pytest
import torch

from minbert.pcgrad import pcgrad_backward, project_conflicting


def test_conflicting_pair_is_projected_onto_the_normal_plane():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    p1, p2 = project_conflicting([g1, g2])
    # by hand: g1 - (g1.g2)/|g2|^2 g2 = [1,0] + 0.5 [-1,1] = [0.5, 0.5]
    #          g2 - (g2.g1)/|g1|^2 g1 = [-1,1] + 1 [1,0] = [0, 1]
    torch.testing.assert_close(p1, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(p2, torch.tensor([0.0, 1.0]))
    assert torch.dot(p1, g2) >= -1e-7 and torch.dot(p2, g1) >= -1e-7


def test_agreeing_gradients_are_left_alone():
    grads = [torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.5, 0.1, 3.0])]
    for before, after in zip(grads, project_conflicting(grads), strict=True):
        assert torch.equal(before, after)


def test_two_tasks_never_conflict_after_projection():
    torch.manual_seed(0)
    conflicts = 0
    for _ in range(200):
        grads = [torch.randn(6), torch.randn(6)]
        conflicts += float(torch.dot(*grads)) < 0
        p1, p2 = project_conflicting(grads)
        assert torch.dot(p1, grads[1]) >= -1e-5 and torch.dot(p2, grads[0]) >= -1e-5
    assert conflicts > 50  # the property was exercised, not vacuous


def test_three_tasks_stay_finite_and_seeded():
    grads = [torch.randn(6, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    a = project_conflicting(grads, torch.Generator().manual_seed(1))
    b = project_conflicting(grads, torch.Generator().manual_seed(1))
    for x, y in zip(a, b, strict=True):
        assert torch.isfinite(x).all() and torch.equal(x, y)


def test_zero_gradient_causes_no_nan():
    projected = project_conflicting([torch.zeros(3), torch.tensor([1.0, -1.0, 2.0])])
    assert all(torch.isfinite(p).all() for p in projected)
    assert torch.equal(projected[0], torch.zeros(3))


def test_pcgrad_backward_writes_the_summed_projection_to_grad():
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    loss_a = torch.dot(w, torch.tensor([1.0, 0.0]))     # gradient [1, 0]
    loss_b = torch.dot(w, torch.tensor([-1.0, 1.0]))    # gradient [-1, 1]: conflicts
    stats = pcgrad_backward([loss_a, loss_b], [w])
    torch.testing.assert_close(w.grad, torch.tensor([0.5, 0.5]) + torch.tensor([0.0, 1.0]))
    assert int(stats["conflicting_pairs"]) == 1 and stats["pairs"] == 1
    with pytest.raises(ValueError, match="unknown reduction"):
        pcgrad_backward([loss_a], [w], reduction="max")


def test_without_conflict_pcgrad_equals_plain_backward_of_the_sum():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x = torch.randn(8, 4)
    losses = lambda: [model(x)[:, 0].pow(2).mean(), model(x)[:, 1].pow(2).mean()]  # noqa: E731
    sum(losses()).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    stats = pcgrad_backward(losses(), list(model.parameters()))
    assert int(stats["conflicting_pairs"]) == 0  # the two outputs use disjoint weights
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e)


def test_gram_form_equals_projecting_the_vectors_one_by_one():
    """An independent, literal PCGrad (vector by vector, same random order) as reference."""
    torch.manual_seed(4)
    grads = [torch.randn(50, dtype=torch.float64) for _ in range(4)]
    ours = project_conflicting(grads, torch.Generator().manual_seed(9))
    generator = torch.Generator().manual_seed(9)
    for i, g in enumerate(grads):
        p = g.clone()
        others = [j for j in range(4) if j != i]
        for k in torch.randperm(3, generator=generator).tolist():
            other = grads[others[k]]
            if torch.dot(p, other) < 0:
                p = p - torch.dot(p, other) / torch.dot(other, other) * other
        torch.testing.assert_close(ours[i], p)


def test_pcgrad_frees_the_graph_with_its_last_task_and_writes_one_gradient_buffer():
    """The graph is kept only between the tasks' passes (the last one frees it, as a plain backward does),
    and the weights' gradients are views of one combined vector, not copies beside it."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x = torch.randn(8, 4)
    out = model(x)
    losses = [out[:, 0].pow(2).mean(), out[:, 1].pow(2).mean()]
    pcgrad_backward(losses, list(model.parameters()))
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        losses[0].backward()
    weight, bias = model.weight.grad, model.bias.grad
    assert weight.untyped_storage().data_ptr() == bias.untyped_storage().data_ptr()
