"""Algorithm 1, line 13: the keep ratio λ(e) = 1 − min(e / E_k · τ, τ) of the small-loss selection.

λ starts near 1 (keep almost every disagreeing sample while the networks are still learning the
clean patterns) and falls linearly to 1 − τ after E_k epochs, τ being the estimated noise rate.
The epoch e is counted from 1 over the whole of Stage II (it does not restart with each round).
"""
from __future__ import annotations

import numpy as np

__all__ = ["keep_ratio", "keep_ratio_schedule"]


def _check(tau: float, e_k: int) -> None:
    if not (0.0 <= tau <= 1.0):
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    if e_k <= 0:
        raise ValueError(f"e_k must be positive, got {e_k}")


def keep_ratio(epoch: int, *, tau: float = 0.2, e_k: int = 10) -> float:
    """λ(e) for epoch ``epoch`` (1-based)."""
    _check(tau, e_k)
    if epoch < 1:
        raise ValueError(f"epochs are counted from 1, got {epoch}")
    return 1.0 - min(epoch / e_k * tau, tau)


def keep_ratio_schedule(e_max: int, *, tau: float = 0.2, e_k: int = 10) -> np.ndarray:
    """(e_max,) array of λ(1), ..., λ(e_max)."""
    _check(tau, e_k)
    e = np.arange(1, e_max + 1, dtype=np.float64)
    return 1.0 - np.minimum(e / e_k * tau, tau)
