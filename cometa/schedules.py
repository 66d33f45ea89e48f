"""Algorithm 1, line 13: the keep ratio λ(e) = 1 − min(e / E_k · τ, τ) of the small-loss selection.

λ starts near 1 (keep almost every disagreeing sample while the networks still learn the clean
patterns) and falls linearly to 1 − τ after E_k epochs, τ being the estimated noise rate (the paper
uses τ = 0.2, E_k = 10, E_max = 200). The epoch e is counted from 1 over the whole of Stage II (it
does not restart with each round). ``keep_ratio_schedule`` precomputes λ(1..E_max) as one array,
like dino's ``cosine_scheduler``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["keep_ratio", "keep_ratio_schedule"]


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
