"""BatchNorm in training mode with a hand-written double backward, for the second-order meta step.

The second-order outer gradient of Algorithm 1 (lines 10-11, through the inner step of lines 5-6)
differentiates the inner gradient itself, so every BatchNorm layer's *backward* is differentiated
once more. PyTorch composes that double backward (``NativeBatchNormBackwardBackward0``) of some
thirty elementwise operations over the activations; in ``bench_steps --profile`` it was the largest
node of the outer gradient beside the convolutions' (audio 135 ms, visual 74 ms of a 1,181 ms step,
2 threads). Here it is written in closed form, with three per-channel reductions and two fused
sums.

Per channel, over its m = N·L values (biased variance, as BatchNorm normalises):

    x̂ = (x − μ) s,  s = (σ² + ε)^(−1/2),  y = γ x̂ + β
    backward:  gx = γ s (gy − ḡ − x̂ c),  gγ = Σ gy x̂ = m c,  gβ = Σ gy = m ḡ
               (ḡ = mean(gy), c = mean(gy x̂))

Differentiating L = Σ a·gx + bγ·gγ + bβ·gβ (a, bγ, bβ: the gradients flowing into gx, gγ, gβ), with
ā = mean(a), â = mean(a x̂), D = mean(a gy) − ā ḡ − â c:

    ∂L/∂gy = γ s a + (bγ − γ s â) x̂ + (bβ − γ s ā)
    ∂L/∂γ  = m s D
    ∂L/∂x  = −γ s² c a + s (bγ − γ s â) gy + (2 γ s² â c − s bγ c − γ s² D) x̂ − s ū,
             ū = −γ s (ā c + ḡ â) + bγ ḡ

(the last is BatchNorm's own backward applied to ∂L/∂x̂ = −γ s (c a + â gy) + bγ gy, plus the path
through s: ∂s/∂x = −s² x̂ / m). ``tests/test_batchnorm.py`` checks all three against PyTorch's double
backward and by ``gradgradcheck`` in float64.

The forward and the first backward are PyTorch's own kernels (``native_batch_norm`` and
``native_batch_norm_backward``), so a step that differentiates only once computes bit for bit what
``F.batch_norm`` computes; only the second derivative's rounding differs.

Use :func:`hand_double_backward_batchnorm` around the forwards whose graph will be differentiated
twice: within it, every ``F.batch_norm`` call on CPU in training mode with gradients on
(``nn.BatchNorm*`` modules, torchvision's included) goes through :class:`BatchNormTrain`. On CUDA,
``F.batch_norm`` is cuDNN's, whose kernels this module does not reproduce; it is left as it is there
until the hand path has been measured on a GPU.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["batch_norm_train", "hand_double_backward_batchnorm", "BatchNormTrain"]


def _per_channel(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """(C,) -> (1, C, 1, ...) to broadcast against an (N, C, *) activation."""
    return t.view((1, -1) + (1,) * (ndim - 2))


class _BatchNormBackward(torch.autograd.Function):
    """BatchNorm's backward (training mode) as a function of (gy, x, γ), with its own backward."""

    @staticmethod
    def forward(gy, x, weight, mean, invstd, eps):
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            gy, x, weight, None, None, mean, invstd, True, eps, [True, True, True])
        return gx, gw, gb

    @staticmethod
    def setup_context(ctx, inputs, output):
        gy, x, weight, mean, invstd, _ = inputs
        _, gw, gb = output
        ctx.save_for_backward(gy, x, weight, mean, invstd, gw, gb)

    @staticmethod
    def backward(ctx, a, b_w, b_b):
        gy, x, weight, mean, invstd, gw, gb = ctx.saved_tensors
        need_gy, need_x, need_w = ctx.needs_input_grad[:3]
        nd = x.ndim
        dims = [0] + list(range(2, nd))
        m = x.numel() // x.shape[1]
        s = invstd
        gamma = weight if weight is not None else torch.ones_like(s)
        if a is None:
            a = torch.zeros_like(x)
        b_w = torch.zeros_like(s) if b_w is None else b_w
        b_b = torch.zeros_like(s) if b_b is None else b_b

        xhat = torch.addcmul(_per_channel(-mean * s, nd), x, _per_channel(s, nd))  # (N, C, *)
        g_bar = gb / m                      # mean(gy)
        c = gw / m                          # mean(gy x̂)
        a_bar = a.mean(dims)                # mean(a)
        a_hat = (a * xhat).mean(dims)       # mean(a x̂)
        gs = gamma * s

        grad_gy = grad_x = grad_w = None
        if need_gy:
            grad_gy = torch.addcmul(_per_channel(b_b - gs * a_bar, nd), xhat, _per_channel(b_w - gs * a_hat, nd))
            grad_gy.addcmul_(a, _per_channel(gs, nd))
        if need_x or need_w:
            d = (a * gy).mean(dims) - a_bar * g_bar - a_hat * c  # D
            if need_w:  # (False when weight is None: nothing to differentiate)
                grad_w = m * s * d
            if need_x:
                u_bar = -gs * (a_bar * c + g_bar * a_hat) + b_w * g_bar
                k_a = -gs * s * c
                k_gy = s * (b_w - gs * a_hat)
                k_xhat = 2 * gs * s * a_hat * c - s * b_w * c - gs * s * d
                grad_x = torch.addcmul(_per_channel(-s * u_bar, nd), xhat, _per_channel(k_xhat, nd))
                grad_x.addcmul_(a, _per_channel(k_a, nd)).addcmul_(gy, _per_channel(k_gy, nd))
        return grad_gy, grad_x, grad_w, None, None, None


class BatchNormTrain(torch.autograd.Function):
    """``F.batch_norm`` in training mode (batch statistics; running statistics updated in place when
    given), whose backward is :class:`_BatchNormBackward` and so has the closed-form double backward."""

    @staticmethod
    def forward(x, weight, bias, running_mean, running_var, momentum, eps):
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        return y, mean, invstd

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, _, _, _, eps = inputs
        _, mean, invstd = output
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(mean, invstd)

    @staticmethod
    def backward(ctx, gy, _g_mean, _g_invstd):
        x, weight, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: this backward will itself be differentiated
            gx, gw, gb = _BatchNormBackward.apply(gy, x, weight, mean, invstd, ctx.eps)
        else:  # the same kernel without a node of its own
            gx, gw, gb = _BatchNormBackward.forward(gy, x, weight, mean, invstd, ctx.eps)
        return (gx, gw if weight is not None else None, gb if ctx.has_bias else None,
                None, None, None, None)


def batch_norm_train(x, running_mean, running_var, weight=None, bias=None, momentum=0.1, eps=1e-5):
    """``F.batch_norm(x, running_mean, running_var, weight, bias, training=True, momentum, eps)``
    through :class:`BatchNormTrain`: the same output and running statistics, bit for bit."""
    y, _, _ = BatchNormTrain.apply(x, weight, bias, running_mean, running_var, momentum, eps)
    return y


class _HandDoubleBackward(TorchFunctionMode):
    """Routes ``F.batch_norm`` in training mode, gradients on, to :func:`batch_norm_train`."""

    calls = 0  # how many batch_norm calls took the hand-written path (tests read it)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm and torch.is_grad_enabled():
            bound = _BATCH_NORM_SIGNATURE.bind(*args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            if a["training"] and a["input"].device.type == "cpu":
                type(self).calls += 1
                return batch_norm_train(a["input"], a["running_mean"], a["running_var"], a["weight"], a["bias"],
                                        a["momentum"], a["eps"])
        return func(*args, **kwargs)


_BATCH_NORM_SIGNATURE = inspect.signature(F.batch_norm)  # its arguments by name, its defaults included


@contextmanager
def hand_double_backward_batchnorm(enabled: bool = True) -> Iterator[None]:
    """Within the block, BatchNorm in training mode (with gradients on) has the closed-form double
    backward of this module; outside it, or with ``enabled=False``, nothing changes."""
    if not enabled:
        yield
        return
    with _HandDoubleBackward():
        yield
