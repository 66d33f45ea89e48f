"""core/batchnorm.py: BatchNorm's closed-form double backward equals PyTorch's, and its forward and first
backward are PyTorch's bit for bit. (That the second-order Co-Meta step takes it, and gets PyTorch's
gradient: tests/test_strategies.py, test_cometa_outer_step_goes_through_inner_step_on_peer_selection.)"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cometa.core import batchnorm
from cometa.core.batchnorm import batch_norm_train, hand_double_backward_batchnorm

SHAPES = [(6, 4), (5, 3, 7), (3, 2, 4, 5)]  # BatchNorm1d on (N, C) and (N, C, L); BatchNorm2d


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_gradgradcheck_in_float64(shape, affine):
    g = torch.Generator().manual_seed(0)
    c = shape[1]
    x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    if affine:
        w = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
        b = torch.randn(c, generator=g, dtype=torch.float64).requires_grad_()
        inputs, fn = (x, w, b), lambda x, w, b: batch_norm_train(x, None, None, w, b)
    else:
        inputs, fn = (x,), lambda x: batch_norm_train(x, None, None)
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def _second_order_grads(bn, dtype):
    """∇_θ of a query loss at θ' = θ − α∇ℓ_support(θ), through conv -> BatchNorm -> ReLU (a MAML step)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 6, 20, generator=g, dtype=dtype)
    conv = torch.randn(6, 6, 3, generator=g, dtype=dtype).requires_grad_()
    w = (torch.rand(6, generator=g, dtype=dtype) + 0.5).requires_grad_()
    b = torch.randn(6, generator=g, dtype=dtype).requires_grad_()

    def loss(cw, ww, bb, norm, f):
        return f(torch.relu(norm(F.conv1d(x, cw, padding=1), None, None, ww, bb, True, 0.1, 1e-5))).mean()

    support = loss(conv, w, b, bn, lambda h: h.pow(2))
    inner = torch.autograd.grad(support, (conv, w, b), create_graph=True)
    fast = [p - 0.1 * gp for p, gp in zip((conv, w, b), inner)]
    query = loss(*fast, F.batch_norm, torch.sin)
    return torch.autograd.grad(query, (conv, w, b))


def _train_bn(x, rm, rv, w, b, training, momentum, eps):
    assert training
    return batch_norm_train(x, rm, rv, w, b, momentum, eps)


def test_the_second_order_gradient_equals_pytorchs_double_backward():
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        theirs = _second_order_grads(F.batch_norm, dtype)
        ours = _second_order_grads(_train_bn, dtype)
        for t, o in zip(theirs, ours):
            torch.testing.assert_close(o, t, rtol=tol, atol=tol)


@pytest.mark.parametrize("bn", [nn.BatchNorm1d(5), nn.BatchNorm2d(5), nn.BatchNorm1d(5, momentum=None)])
def test_forward_running_statistics_and_first_backward_are_pytorchs_bit_for_bit(bn):
    torch.manual_seed(0)
    x = torch.randn((8, 5, 11) if isinstance(bn, nn.BatchNorm1d) else (4, 5, 3, 6), requires_grad=True)
    ours, theirs = copy.deepcopy(bn).train(), copy.deepcopy(bn).train()
    with torch.no_grad():
        for m in (ours, theirs):
            m.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(1))
    before = batchnorm._HandDoubleBackward.calls
    for _ in range(2):  # twice: the cumulative average (momentum None) reads num_batches_tracked
        with hand_double_backward_batchnorm():
            y_ours = ours(x)
        y_theirs = theirs(x)
        gy = torch.randn_like(y_theirs)
        g_ours = torch.autograd.grad(y_ours, (x, ours.weight, ours.bias), gy)
        g_theirs = torch.autograd.grad(y_theirs, (x, theirs.weight, theirs.bias), gy)
        assert torch.equal(y_ours, y_theirs)
        assert all(torch.equal(a, b) for a, b in zip(g_ours, g_theirs))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(getattr(ours, name), getattr(theirs, name)), name
    assert batchnorm._HandDoubleBackward.calls == before + 2  # the hand path ran, once per forward


def test_eval_mode_no_grad_and_disabled_take_pytorchs_path():
    bn = nn.BatchNorm1d(3)
    x = torch.randn(4, 3)
    before = batchnorm._HandDoubleBackward.calls
    with hand_double_backward_batchnorm():
        bn.eval()(x)
        with torch.no_grad():
            bn.train()(x)
    with hand_double_backward_batchnorm(enabled=False):
        bn.train()(x)
    assert batchnorm._HandDoubleBackward.calls == before
