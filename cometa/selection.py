"""Algorithm 1, lines 7-9: the disagreement set (Eq. 3) and each model's small-loss part of it.

Pure functions on numpy arrays or torch tensors (the result has the input's kind and device).
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["disagreement", "small_loss", "n_selected", "selection_overlap"]


def disagreement(pred_a, pred_v):
    """Eq. (3): indices (ascending, int64) of the samples whose predicted classes differ.

    Parameters
    ----------
    pred_a, pred_v : (B,) predicted class of each sample under the audio and the visual model
        (the argmax of each head's cosine logits).
    """
    if pred_a.shape != pred_v.shape:
        raise ValueError(f"prediction shapes differ: {tuple(pred_a.shape)} vs {tuple(pred_v.shape)}")
    if isinstance(pred_a, torch.Tensor):
        return torch.nonzero(pred_a != pred_v, as_tuple=False).flatten().to(torch.int64)
    return np.flatnonzero(np.asarray(pred_a) != np.asarray(pred_v)).astype(np.int64)


def n_selected(n: int, keep_ratio: float) -> int:
    """⌈keep_ratio · n⌉, rounded to 9 decimals first so that float noise (0.8 · 10 =
    8.000000000000002) does not add a sample."""
    if not (0.0 <= keep_ratio <= 1.0):  # also rejects NaN
        raise ValueError(f"keep_ratio must be in [0, 1], got {keep_ratio}")
    return min(n, math.ceil(round(keep_ratio * n, 9)))


def small_loss(losses, keep_ratio: float):
    """Lines 8-9: indices of the ⌈keep_ratio · n⌉ samples of smallest loss.

    Ties are broken by a stable order (the lower index first); the result is ordered by ascending
    loss. ``losses`` is (n,) numpy or torch; an empty input gives an empty index array.
    """
    n = int(losses.shape[0])
    k = n_selected(n, float(keep_ratio))
    if isinstance(losses, torch.Tensor):
        order = torch.sort(losses.detach(), stable=True).indices
        return order[:k].to(torch.int64)
    return np.argsort(np.asarray(losses), kind="stable")[:k].astype(np.int64)


def selection_overlap(sel_a, sel_b) -> float:
    """|A ∩ B| / |A ∪ B| of two selections (index arrays); NaN when both are empty."""
    a = set(np.asarray(sel_a.cpu() if isinstance(sel_a, torch.Tensor) else sel_a).tolist())
    b = set(np.asarray(sel_b.cpu() if isinstance(sel_b, torch.Tensor) else sel_b).tolist())
    union = a | b
    return len(a & b) / len(union) if union else float("nan")
