"""Algorithm 1, lines 5-6 and 10-11, against independent autograd computations."""
import pytest
import torch
from torch import nn

from cometa.core.meta import call_with, inner_update, meta_gradients

ALPHA, BETA = 0.01, 0.001


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _loss_fn(w1, b1, w2, b2, x, y):
    """The same network written out by hand: an independent path to ℓ(·; θ)."""
    logits = torch.tanh(x @ w1.T + b1) @ w2.T + b2
    return nn.functional.cross_entropy(logits, y)


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g)
    xq, yq = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (5,), generator=g)
    return xs, ys, xq, yq


def test_second_order_meta_update_equals_direct_formula():
    model = _mlp()
    xs, ys, xq, yq = _data()
    theta = [p.detach().clone().requires_grad_(True) for p in model.parameters()]

    # direct: θ_new = θ − β ∇_θ ℓ(q; θ − α ∇_θ ℓ(s; θ))
    g_s = torch.autograd.grad(_loss_fn(*theta, xs, ys), theta, create_graph=True)
    theta_prime = [t - ALPHA * g for t, g in zip(theta, g_s)]
    g_direct = torch.autograd.grad(_loss_fn(*theta_prime, xq, yq), theta)
    expected = [t.detach() - BETA * g for t, g in zip(theta, g_direct)]

    support = nn.functional.cross_entropy(model(xs), ys)
    grads, _ = meta_gradients(model, support, lambda fast: nn.functional.cross_entropy(call_with(model, fast, xq), yq),
                              alpha=ALPHA, second_order=True)
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            p -= BETA * g
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-12)


def test_second_order_differs_from_first_order():
    model = _mlp()
    xs, ys, xq, yq = _data()
    q = lambda fast: nn.functional.cross_entropy(call_with(model, fast, xq), yq)  # noqa: E731
    g2, _ = meta_gradients(model, nn.functional.cross_entropy(model(xs), ys), q, alpha=0.5, second_order=True)
    g1, _ = meta_gradients(model, nn.functional.cross_entropy(model(xs), ys), q, alpha=0.5, second_order=False)
    assert max(float((a - b).abs().max()) for a, b in zip(g1, g2)) > 1e-6


def test_first_order_meta_update_is_gradient_at_inner_params():
    model = _mlp()
    xs, ys, xq, yq = _data()
    theta = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    # first order: ∇ℓ(s; θ) treated as a constant, so the outer gradient is ∇ℓ(q; ·) at θ'
    g_s = torch.autograd.grad(_loss_fn(*theta, xs, ys), theta)
    theta_prime = [(t - ALPHA * g).detach().requires_grad_(True) for t, g in zip(theta, g_s)]
    expected = torch.autograd.grad(_loss_fn(*theta_prime, xq, yq), theta_prime)

    support = nn.functional.cross_entropy(model(xs), ys)
    grads, q = meta_gradients(model, support, lambda fast: nn.functional.cross_entropy(call_with(model, fast, xq), yq),
                              alpha=ALPHA, second_order=False)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-12)
    torch.testing.assert_close(q, _loss_fn(*theta_prime, xq, yq).detach())


def test_inner_update_moves_parameters_by_alpha_times_gradient():
    model = _mlp()
    xs, ys, _, _ = _data()
    loss = nn.functional.cross_entropy(model(xs), ys)
    grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    fast = inner_update(model, loss, alpha=ALPHA, second_order=False)
    for (name, p), g in zip(model.named_parameters(), grads):
        torch.testing.assert_close(fast[name], p.detach() - ALPHA * g)


@pytest.mark.parametrize("second_order", [True, False])
def test_profiled_step_double_backward_only_in_the_second_order_outer_gradient(second_order):
    """bench_steps --profile attributes the step's work to the ranges the strategy marks: a Co-Meta
    step runs the double backward of the inner gradient (``*BackwardBackward0`` nodes) inside its
    outer gradients, and only there, when second order; first order runs none at all."""
    from bench.bench_steps import _phase_names, _profile_variant, _snapshot, build_variant, random_batch
    from cometa.config import load_config

    cfg = load_config("tiny")
    batch = random_batch(cfg)
    st = build_variant(cfg, "cometa", second_order)
    theta = _snapshot(st)
    st.step(batch, keep_ratio=0.8)
    ranges, nodes, step_us = _profile_variant(st, batch, 0.8, theta, _snapshot(st), steps=1, seed=0)
    meta = [f"{p}[{m}]" for p in ("inner_gradient", "query_forward", "outer_gradient") for m in ("audio", "visual")]
    assert set(meta) | {"front_end", "forward[audio]", "forward[visual]", "selection", "optimiser"} == set(ranges)
    assert set(ranges) <= set(_phase_names())
    assert sum(ranges.values()) <= step_us  # the ranges do not overlap
    double = {ph for (ph, node), us in nodes.items() if node.endswith("BackwardBackward0") and us > 0}
    assert double == ({"outer_gradient[audio]", "outer_gradient[visual]"} if second_order else set())
