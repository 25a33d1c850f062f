"""Our AdamW against torch.optim.AdamW and against the update written out by hand."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from minbert import cpu_kernels, optim, optim_kernels
from minbert.optim import AdamW, SophiaG


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
    """The multi-tensor update computes torch's operations in torch's order: a thousand steps agree. (In
    float32 on the CPU our default is the one-pass kernel, whose sqrt is rounded correctly where torch's
    is not always; its own tests are below.)"""
    x, y, ours = regression_problem(dtype)
    theirs = copy.deepcopy(ours)
    train(ours, AdamW(param_groups(ours), lr=1e-2, betas=(0.9, 0.98), eps=1e-7, weight_decay=0.01,
                      foreach=True), x, y, 1000)
    train(theirs, torch.optim.AdamW(param_groups(theirs), lr=1e-2, betas=(0.9, 0.98), eps=1e-7,
                                    weight_decay=0.01), x, y, 1000)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    final = torch.nn.functional.mse_loss(ours(x), y).item()
    assert final < 0.05  # it did learn the regression


def _adamw_state(n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=generator), torch.randn(n, generator=generator),
            0.1 * torch.randn(n, generator=generator), 0.01 * torch.rand(n, generator=generator))


def test_the_one_pass_kernel_builds_here_and_is_the_cpu_default():
    assert optim_kernels.available()
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    assert optim.one_pass(None, [p, p.grad])  # what the trainer's AdamW takes on this machine
    assert not optim.one_pass(None, [p.double()])  # float64 goes the multi-tensor way


def test_the_one_pass_adamw_step_is_the_update_rounded_as_torch_rounds_it_but_for_sqrt():
    """One step over 200,003 coordinates, two tensors at different step counts. Against the update
    written out in float64: within float32 rounding everywhere. Against the multi-tensor path (torch's
    kernels): the moments identical, and the weights identical wherever torch's sqrt of the second
    moment is the correctly rounded one (torch's CPU sqrt of a long tensor is not always; the kernel's
    is)."""
    lr, (b1, b2), eps, wd = 1e-2, (0.9, 0.98), 1e-7, 0.1
    starts = [_adamw_state(150_000, seed=1), _adamw_state(50_003, seed=2)]
    steps = [5, 1]
    results = {}
    for foreach in (False, True):
        params = [torch.nn.Parameter(w.clone()) for w, *_ in starts]
        opt = AdamW(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, foreach=foreach)
        for p, (_, g, m, v), t in zip(params, starts, steps, strict=True):
            p.grad = g.clone()
            opt.state[p] = {"step": t, "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
        opt.step()
        results[foreach] = [(p.detach(), opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]) for p in params]
    for (w0, g, m0, v0), t, (w, m, v), (w_torch, m_torch, v_torch) in zip(
            starts, steps, results[False], results[True], strict=True):
        t += 1
        m64 = 0.9 * m0.double() + 0.1 * g.double()
        v64 = b2 * v0.double() + (1 - b2) * g.double() ** 2
        denominator = v64.sqrt() / math.sqrt(1 - b2 ** t) + eps
        w64 = w0.double() * (1 - lr * wd) - lr / (1 - b1 ** t) * m64 / denominator
        torch.testing.assert_close(w.double(), w64, atol=1e-7, rtol=1e-6)
        assert torch.equal(m, m_torch) and torch.equal(v, v_torch)
        exact_sqrt = torch.sqrt(v) == v.double().sqrt().float()
        assert 0.9 < exact_sqrt.float().mean() < 1.0  # the case occurs, and is the exception
        assert torch.equal(w[exact_sqrt], w_torch[exact_sqrt])
        assert (w[~exact_sqrt] - w_torch[~exact_sqrt]).abs().max() < 1e-7


def test_the_kernel_splits_the_work_between_threads_exactly():
    """Each coordinate in exactly one share, the shares about equal and starting on a cache line; the
    same step with three threads and with one is the same to the bit."""
    sizes = [7, 100_000, 3, 65_537, 0, 40]
    runs = cpu_kernels.shares(sizes, 3)
    assert len(runs) == 3
    covered = [torch.zeros(n, dtype=torch.int) for n in sizes]
    for run in runs:
        assert run[0][1] % cpu_kernels.ALIGN == 0
        for t, start, stop in run:
            covered[t][start:stop] += 1
    assert all(bool((c == 1).all()) for c in covered)
    lengths = [sum(stop - start for _, start, stop in run) for run in runs]
    assert max(lengths) - min(lengths) <= 2 * cpu_kernels.ALIGN
    assert cpu_kernels.shares([1000], 4) == [[(0, 0, 1000)]]  # too small to share out
    results = []
    threads = torch.get_num_threads()
    for count in (1, 3):
        torch.set_num_threads(count)
        try:
            params = [torch.nn.Parameter(w.clone()) for w, *_ in map(_adamw_state, sizes)]
            for p, (_, g, _, _) in zip(params, map(_adamw_state, sizes), strict=True):
                p.grad = g
            opt = AdamW(params, lr=1e-2, weight_decay=0.1)
            opt.step()
            opt.step()
            results.append(torch.cat([p.detach() for p in params]))
        finally:
            torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])


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


def test_sophia_single_step_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = SophiaG([p], lr=0.1, weight_decay=0.1)  # betas (0.965, 0.99), rho 0.04
    p.grad = torch.tensor([1.0, 10.0], dtype=torch.float64)
    opt.update_hessian()  # h = 0.01 * g^2 = (0.01, 1.0)
    p.grad = torch.tensor([0.5, -0.1], dtype=torch.float64)
    opt.step(bs=2)
    # m = 0.035 g = (0.0175, -0.0035); rho * bs * h = (0.0008, 0.08)
    # ratio = (21.9 -> clipped to 1, 0.04375); p = p (1 - 0.01) - 0.1 sign(m) ratio
    assert torch.allclose(p.detach(), torch.tensor([0.99 - 0.1, -1.98 + 0.1 * 0.04375], dtype=torch.float64))
    state = opt.state[p]
    assert state["step"] == 1
    assert torch.allclose(state["hessian"], torch.tensor([0.01, 1.0], dtype=torch.float64))


def test_sophia_on_a_badly_conditioned_quadratic():
    """f(x) = sum(H x^2) / 2 with H = (100, 0.01), the exact Hessian fed in, no momentum.
    Far from the minimum the step is clipped to lr per coordinate whatever the curvature;
    within rho of it (lr = rho) the step is Newton's, m / (rho h) * lr = x, landing on 0.
    So both coordinates, 10,000x apart in curvature, reach 0 together in 10 steps."""
    hessian = torch.tensor([100.0, 0.01], dtype=torch.float64)
    x = torch.nn.Parameter(torch.tensor([5.0, 5.0], dtype=torch.float64))
    opt = SophiaG([x], lr=0.5, betas=(0.0, 0.0), rho=0.5, weight_decay=0.0)
    path = []
    for _ in range(10):
        x.grad = hessian.sqrt()  # bs * grad^2 = H with bs = 1
        opt.update_hessian()
        x.grad = hessian * x.detach()
        opt.step(bs=1)
        path.append(x.detach().clone())
    expected = [torch.full((2,), 5.0 - 0.5 * (i + 1), dtype=torch.float64) for i in range(10)]
    for got, want in zip(path, expected, strict=True):
        assert torch.allclose(got, want, atol=1e-12)
    # gradient descent at its largest stable rate for the stiff coordinate barely moves the flat one
    y = torch.tensor([5.0, 5.0], dtype=torch.float64)
    for _ in range(10):
        y -= 0.019 * hessian * y
    assert y[1] > 4.99


def test_sophia_gauss_newton_bartlett_estimates_the_hessian_diagonal():
    """E[bs * g^2] of the sampled-label loss equals the Gauss-Newton diagonal of the real loss."""
    from minbert.tasks import TASKS

    torch.manual_seed(0)
    x = torch.randn(6, 3, dtype=torch.float64)
    for task, outputs_of in (("sst", lambda w: x @ w), ("qqp", lambda w: x @ w[:, 0]),
                             ("sts", lambda w: x @ w[:, 0])):
        w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
        draws = []
        for _ in range(5000):
            (g,) = torch.autograd.grad(TASKS[task].sampled_label_loss(outputs_of(w)).double(), w)
            draws.append(len(x) * g.square())
        estimate = torch.stack(draws).mean(0)
        out = outputs_of(w).detach()
        if task == "sst":  # mean_i sum_c x_ij^2 (p_c - p_c^2) at column c
            p = out.softmax(-1)
            exact = (x.square().T @ (p * (1 - p))) / len(x)
        elif task == "qqp":
            p = torch.sigmoid(out)
            exact = torch.zeros(3, 5, dtype=torch.float64)
            exact[:, 0] = x.square().T @ (p * (1 - p)) / len(x)
        else:
            exact = torch.zeros(3, 5, dtype=torch.float64)
            exact[:, 0] = 2 * x.square().mean(0)
        assert torch.allclose(estimate, exact, rtol=0.1, atol=1e-9), task


def test_sophia_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    data, target = torch.randn(16, 4), torch.randn(16, 1)
    model = torch.nn.Linear(4, 1)

    def train(model, opt, steps, start):
        for i in range(start, start + steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(data), target).backward()
            if i % 3 == 0:
                opt.update_hessian()
            opt.step(bs=16)

    twin = copy.deepcopy(model)
    opt = SophiaG(model.parameters(), lr=0.01)
    train(model, opt, 8, 0)
    opt_twin = SophiaG(twin.parameters(), lr=0.01)
    train(twin, opt_twin, 4, 0)
    saved_model, saved_opt = copy.deepcopy(twin.state_dict()), copy.deepcopy(opt_twin.state_dict())
    resumed = torch.nn.Linear(4, 1)
    resumed.load_state_dict(saved_model)
    opt_resumed = SophiaG(resumed.parameters(), lr=0.01)
    opt_resumed.load_state_dict(saved_opt)
    train(resumed, opt_resumed, 4, 4)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs", [{"lr": -1.0}, {"rho": -0.1}, {"betas": (1.0, 0.99)},
                                    {"weight_decay": -0.1}])
def test_sophia_refuses_invalid_hyper_parameters(kwargs):
    with pytest.raises(ValueError):
        SophiaG([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_sophia_counts_clipped_coordinates_and_corrects_the_hessian_bias_by_hand():
    """Four coordinates, h = 0.01 g_hat^2 after one refresh, m = 0.035 g after one step, bs 1, rho 0.04:
    a step is clipped where |m| >= rho * h. With bias correction h is divided by 1 - 0.99 = 0.01. The
    last coordinate has momentum but no estimate (h = 0): it always clips."""
    g_hat = torch.tensor([1.0, 10.0, 2.0, 0.0], dtype=torch.float64)
    g = torch.tensor([1.0, 1.0, 0.1, 0.5], dtype=torch.float64)
    for corrected in (False, True):
        p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
        opt = SophiaG([p], lr=0.1, weight_decay=0.0, bias_correction=corrected)
        assert math.isnan(opt.clipped_share()) and math.isnan(opt.hessian_mean())
        p.grad = g_hat
        opt.update_hessian()
        p.grad = g
        opt.step(bs=1)
        h = 0.01 * g_hat**2 / (0.01 if corrected else 1.0)
        m = 0.035 * g
        # uncorrected: rho h = (4e-4, 4e-2, 1.6e-3, 0) against |m| = (.035, .035, .0035, .0175): clipped,
        # not, clipped, clipped (no estimate); corrected: rho h = (.04, 4, .16, 0): only the last
        clipped = m.abs() >= 0.04 * h
        expected_clipped = [False, False, False, True] if corrected else [True, False, True, True]
        assert clipped.tolist() == expected_clipped
        assert opt.clipped_share(reset=False, estimated_only=True) == pytest.approx(
            float(clipped[:3].double().mean()))  # among the three coordinates with h > 0
        assert opt.clipped_share() == pytest.approx(float(clipped.double().mean()))
        assert math.isnan(opt.clipped_share()) and math.isnan(opt.clipped_share(estimated_only=True))
        assert opt.hessian_mean() == pytest.approx(float(h.mean()))
        expected = -0.1 * torch.sign(m) * torch.clamp(m.abs() / (0.04 * h + 1e-15), max=1.0)
        torch.testing.assert_close(p.detach(), expected)


def test_sophia_names_the_rho_at_which_a_share_of_its_coordinates_step_unclipped():
    """Three coordinates with an estimate: after one refresh (h = 0.01 g_hat^2) and one step with bs 2
    (m = 0.035 g), a coordinate clips while rho <= |m| / (bs h). Those ratios are 0.035 / 0.02 = 1.75,
    0.035 / 2 = 0.0175 and 0.0035 / 0.08 = 0.04375; the coordinate without an estimate is left out."""
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = SophiaG([p], lr=0.1, weight_decay=0.0)
    assert math.isnan(opt.rho_unclipping())
    p.grad = torch.tensor([1.0, 10.0, 2.0, 0.0], dtype=torch.float64)
    opt.update_hessian()
    p.grad = torch.tensor([1.0, 1.0, 0.1, 0.5], dtype=torch.float64)
    opt.step(bs=2)
    assert opt.rho_unclipping(0.5) == pytest.approx(0.04375)  # the median ratio
    assert opt.rho_unclipping(1.0) == pytest.approx(0.0175)  # every estimated coordinate steps unclipped
    assert opt.rho_unclipping(0.0) == pytest.approx(1.75)  # at and above this, every one clips
    for rho, share in ((0.03, 2 / 3), (0.05, 1 / 3)):  # the optimizer's own count agrees at that rho
        q = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
        other = SophiaG([q], lr=0.1, weight_decay=0.0, rho=rho)
        q.grad = torch.tensor([1.0, 10.0, 2.0, 0.0], dtype=torch.float64)
        other.update_hessian()
        q.grad = torch.tensor([1.0, 1.0, 0.1, 0.5], dtype=torch.float64)
        other.step(bs=2)
        assert other.clipped_share(estimated_only=True) == pytest.approx(share)


def _two_paths(make, steps: int = 60, hessian_every: int = 0):
    """The same training run with the one-pass CPU kernel and with the multi-tensor (GPU) kernels, on
    the CPU; a weight that joins late and one that misses some steps, as a task head does."""
    x, y, start = regression_problem()
    runs = []
    for foreach in (False, True):
        model = copy.deepcopy(start)
        optimizer = make(param_groups(model), foreach)
        model[2].bias.requires_grad_(False)
        torch.manual_seed(5)  # the sampled labels of the Hessian refreshes
        for step in range(steps):
            if step == 10:
                model[2].bias.requires_grad_(True)
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(x), y).backward()
            if step % 3 == 1:
                model[0].bias.grad = None  # this weight sits this step out
            optimizer.step()
            if hessian_every and step % hessian_every == hessian_every - 1:
                optimizer.zero_grad(set_to_none=True)
                torch.nn.functional.mse_loss(model(x), y + torch.randn_like(y)).backward()
                optimizer.update_hessian()
        runs.append((model, optimizer))
    return runs


def test_adamw_multi_tensor_kernels_give_the_one_pass_update_and_torchs():
    """Sixty steps of both paths agree, a lagging weight's bias correction included (a kernel that gave it
    its group's step count fails by far more). Not to the bit: torch's sqrt rounds otherwise (see above),
    and on this small problem those last-place differences grow to about 1e-5 in sixty steps."""
    for correct_bias in (True, False):
        (one_pass, _), (fused, optimizer) = _two_paths(
            lambda groups, foreach, bias=correct_bias: AdamW(groups, lr=1e-2, weight_decay=0.01,
                                                             correct_bias=bias, foreach=foreach))
        assert optimizer.state[fused[0].bias]["step"] < optimizer.state[fused[0].weight]["step"]
        for a, b in zip(one_pass.parameters(), fused.parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    x, y, ours = regression_problem()
    theirs = copy.deepcopy(ours)
    train(ours, AdamW(param_groups(ours), lr=1e-2, weight_decay=0.01, foreach=True), x, y, 300)
    train(theirs, torch.optim.AdamW(param_groups(theirs), lr=1e-2, weight_decay=0.01), x, y, 300)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bias_correction", [False, True])
def test_sophia_multi_tensor_kernels_give_the_one_pass_update_and_its_clipped_counts(bias_correction):
    """No sqrt in Sophia's step: the two paths agree bit for bit, counts included."""
    (one_pass, slow), (fused, fast) = _two_paths(
        lambda groups, foreach: SophiaG(groups, lr=1e-3, rho=0.05, bias_correction=bias_correction,
                                        foreach=foreach), hessian_every=5)
    for a, b in zip(one_pass.parameters(), fused.parameters(), strict=True):
        assert torch.equal(a, b)
    shares = [(o.clipped_share(reset=False, estimated_only=True), o.clipped_share()) for o in (slow, fast)]
    assert shares[0] == shares[1]
    assert 0.0 < shares[0][1] < 1.0  # both regimes occurred: the counts are tested, not trivially 0 or 1
