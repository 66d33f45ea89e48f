"""Schedules: the keep ratio λ(e) of Algorithm 1 (line 13) and the learning rate of both stages.

**λ(e)** = 1 − min(e / E_k · τ, τ), the keep ratio of the small-loss selection. It starts at 1
(keep every disagreeing sample while the networks still learn the clean patterns) and falls
linearly to 1 − τ after E_k epochs, τ being the estimated noise rate (the paper uses τ = 0.2,
E_k = 10, E_max = 200). The epoch e is counted from 1 over the whole of Stage II (it does not
restart with each round). Line 13 updates λ *after* epoch e, so epoch e trains with λ(e − 1) and
epoch 1 with λ(0) = 1: :func:`keep_ratio_in_epoch`. ``keep_ratio_schedule`` precomputes
λ(1..E_max) as one array, like dino's ``cosine_scheduler``.

**Learning rate**: linear warm-up, then cosine or exponential decay to ``final_ratio`` of the
initial rate, one value per optimiser step (:func:`lr_schedule`), as wespeaker and sslsv do. The
paper gives only the initial rates (Adam, 0.001); the decay is ours.
"""
from __future__ import annotations

import math

import numpy as np

from cometa.config.sections import LR_KINDS, LRScheduleConfig

__all__ = ["keep_ratio", "keep_ratio_in_epoch", "keep_ratio_schedule", "LRScheduleConfig", "lr_schedule"]


def _check(tau: float, e_k: int) -> None:
    """τ in [0, 1] (a noise rate), E_k > 0 (epochs to reach it); NaN fails both."""
    if not (0.0 <= tau <= 1.0):
        raise ValueError(f"tau (estimated noise rate) must be in [0, 1], got {tau}")
    if not (e_k > 0) or math.isinf(e_k):
        raise ValueError(f"e_k (epochs to reach 1 - tau) must be positive and finite, got {e_k}")


def keep_ratio(epoch: int, *, tau: float = 0.2, e_k: int = 10) -> float:
    """λ(e) = 1 − min(e / E_k · τ, τ) for one epoch.

    Parameters
    ----------
    epoch : e, counted from 1.
    tau : τ, the estimated noise rate, in [0, 1].
    e_k : E_k, the epoch at which λ reaches its floor 1 − τ.

    Returns
    -------
    float in [1 − τ, 1).
    """
    _check(tau, e_k)
    if not (epoch >= 1):
        raise ValueError(f"epochs are counted from 1, got {epoch}")
    return 1.0 - min(epoch / e_k * tau, tau)


def keep_ratio_schedule(e_max: int, *, tau: float = 0.2, e_k: int = 10) -> np.ndarray:
    """λ(1), ..., λ(E_max) precomputed.

    Returns
    -------
    (e_max,) float64, ``schedule[e - 1] == keep_ratio(e, tau=tau, e_k=e_k)`` exactly.
    """
    _check(tau, e_k)
    if e_max < 0:
        raise ValueError(f"e_max must be non-negative, got {e_max}")
    e = np.arange(1, e_max + 1, dtype=np.float64)  # (e_max,)
    return 1.0 - np.minimum(e / e_k * tau, tau)


def keep_ratio_in_epoch(epoch: int, *, tau: float = 0.2, e_k: int = 10) -> float:
    """The λ that epoch ``epoch`` trains with: λ(e − 1), and λ(0) = 1 for the first epoch.

    Algorithm 1 updates λ at line 13, after the mini-batches of epoch e (lines 3-12), so the
    selection of epoch e uses the value computed at the end of epoch e − 1.
    """
    _check(tau, e_k)
    if not (epoch >= 1):
        raise ValueError(f"epochs are counted from 1, got {epoch}")
    return 1.0 if epoch == 1 else keep_ratio(epoch - 1, tau=tau, e_k=e_k)


# ---------------------------------------------------------------------------------------------
# learning rate

def lr_schedule(base_lr: float, *, epochs: int, steps_per_epoch: int, kind: str = "cosine",
                warmup_epochs: float = 0.0, final_ratio: float = 0.05) -> np.ndarray:
    """(epochs · steps_per_epoch,) learning rate of every optimiser step.

    Warm-up: step t < W (W = round(warmup_epochs · steps_per_epoch)) takes base_lr · (t + 1) / W.
    After it, with progress p = (t − W) / max(T − W − 1, 1) running from 0 at the first step after
    the warm-up to 1 at the last step T − 1:

    - ``constant``:    base_lr
    - ``cosine``:      base_lr · (r + (1 − r) · ½(1 + cos πp))
    - ``exponential``: base_lr · r^p   (wespeaker's ExponentialDecrease)

    with r = ``final_ratio``. The warm-up is capped at all but the last step.
    """
    if kind not in LR_KINDS:
        raise ValueError(f"kind must be one of {'|'.join(LR_KINDS)}, got {kind!r}")
    if not (base_lr > 0):
        raise ValueError(f"base_lr must be positive, got {base_lr}")
    if not (0 < final_ratio <= 1):
        raise ValueError(f"final_ratio must be in (0, 1], got {final_ratio}")
    if epochs < 0 or steps_per_epoch < 0:
        raise ValueError(f"epochs and steps_per_epoch must be >= 0, got {epochs}, {steps_per_epoch}")
    total = epochs * steps_per_epoch
    warm = min(int(round(warmup_epochs * steps_per_epoch)), max(total - 1, 0))
    t = np.arange(total, dtype=np.float64)
    out = np.full(total, float(base_lr))
    out[:warm] = base_lr * (t[:warm] + 1) / warm
    p = (t[warm:] - warm) / max(total - warm - 1, 1)  # (T - W,) 0 .. 1
    if kind == "cosine":
        out[warm:] = base_lr * (final_ratio + (1 - final_ratio) * 0.5 * (1 + np.cos(np.pi * p)))
    elif kind == "exponential":
        out[warm:] = base_lr * final_ratio ** p
    return out
