"""The MAML-style gradient regularisation of Co-Meta learning (Algorithm 1, lines 5-6 and 10-11).

For one model with parameters θ (encoder and AAM-softmax head together):

- line 5/6, the inner step on the support set (the whole mini-batch D̄):
  θ' = θ − α ∇_θ ℓ(D̄; θ)
- line 10/11, the outer step on the query set (the peer's small-loss selection of the
  disagreement set): the gradient ∇_θ ℓ(D̄'^(peer); θ'), taken with respect to θ *through* the
  inner step (second order), which the caller hands to its optimiser (Adam with lr β).

The first-order variant treats ∇_θ ℓ(D̄; θ) as a constant, so that dθ'/dθ = I and the outer
gradient is simply ∇ℓ evaluated at θ' (first-order MAML).

Buffers (BatchNorm running statistics) are shared between θ and θ': the inner step only moves
parameters. The running statistics move once per step, in the forward pass under θ, as in the other
strategies: :func:`call_with` normalises with the batch's statistics (training mode) but leaves the
running averages alone (:func:`frozen_bn_stats`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call
from torch.profiler import record_function

__all__ = ["inner_update", "call_with", "frozen_bn_stats", "meta_gradients"]


def inner_update(
    model: nn.Module,
    support_loss: torch.Tensor,
    *,
    alpha: float,
    second_order: bool = True,
) -> dict[str, torch.Tensor]:
    """θ' = θ − α ∇_θ ℓ_support (Algorithm 1, line 5/6).

    Parameters
    ----------
    model : the module whose ``named_parameters()`` are θ.
    support_loss : scalar loss computed from ``model`` with its own parameters.
    alpha : inner step size α.
    second_order : keep the graph of the inner gradient so that the outer gradient can flow
        through it; False detaches it (first-order MAML).

    Returns
    -------
    dict name -> tensor θ' for every trainable parameter (untrainable ones are left out and keep
    their current value when the model is called through :func:`call_with`).
    """
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    grads = torch.autograd.grad(support_loss, params, create_graph=second_order, allow_unused=True)
    fast = {}
    for name, p, g in zip(names, params, grads):
        if g is None:  # parameter not used by the support loss: θ' = θ
            fast[name] = p
        else:
            fast[name] = p - alpha * (g if second_order else g.detach())
    return fast


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Within the block, BatchNorm layers in training mode normalise with the batch's statistics
    but do not update their running mean, variance or batch count (``track_running_stats`` off)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


def call_with(model: nn.Module, params: Mapping[str, torch.Tensor], *args, **kwargs):
    """``model(*args, **kwargs)`` with its trainable parameters replaced by ``params`` (θ').

    Buffers are the model's own and are not updated: in training mode BatchNorm normalises with the
    batch's statistics and leaves its running statistics to the forward pass under θ.
    """
    with frozen_bn_stats(model):
        return functional_call(model, dict(params), args, kwargs)


def meta_gradients(
    model: nn.Module,
    support_loss: torch.Tensor,
    query_loss_fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
    *,
    alpha: float,
    second_order: bool = True,
    tag: str = "",
) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """Outer gradient ∇_θ ℓ_query(θ − α ∇_θ ℓ_support(θ)) (Algorithm 1, lines 5 + 10).

    Parameters
    ----------
    model : the module holding θ.
    support_loss : ℓ(D̄; θ), computed from ``model`` with its own parameters (graph attached).
    query_loss_fn : maps parameters θ' to the scalar query loss ℓ(D̄'; θ') (use :func:`call_with`).
    alpha, second_order : see :func:`inner_update`.
    tag : names the profiler ranges of the three parts, ``cometa.inner_gradient[<tag>]``,
        ``cometa.query_forward[<tag>]`` and ``cometa.outer_gradient[<tag>]`` (``bench_steps --profile``).

    Returns
    -------
    grads : one entry per ``model.parameters()`` (None for frozen or unused ones), ready to be
        written into ``p.grad`` before ``optimizer.step()``.
    query_loss : the detached query loss.
    """
    with record_function(f"cometa.inner_gradient[{tag}]"):
        fast = inner_update(model, support_loss, alpha=alpha, second_order=second_order)
    with record_function(f"cometa.query_forward[{tag}]"):
        q_loss = query_loss_fn(fast)
    params = [p for p in model.parameters() if p.requires_grad]
    with record_function(f"cometa.outer_gradient[{tag}]"):
        if second_order:
            grads = torch.autograd.grad(q_loss, params, allow_unused=True)
        else:
            # dθ'/dθ = I: the gradient at θ' is the gradient with respect to θ.
            fast_list = [fast[n] for n, p in model.named_parameters() if p.requires_grad]
            grads = torch.autograd.grad(q_loss, fast_list, allow_unused=True)
    out: list[torch.Tensor | None] = []
    it = iter(grads)
    for p in model.parameters():
        out.append(next(it) if p.requires_grad else None)
    return out, q_loss.detach()
