"""Algorithm 1, lines 7-9: the disagreement set (Eq. 3) and each model's small-loss part of it.

- Line 7, Eq. (3): D̄' = {(x_i, y_i) ∈ D̄ : ȳ_i^(A) ≠ ȳ_i^(V)}, the samples on which the audio and
  the visual model predict different classes (``disagreement``).
- Lines 8-9: D̄'^(m) = argmin_{D' : |D'| ≥ λ(e) |D̄'|} ℓ(D'; θ_m), the ⌈λ(e) · n⌉ samples of smallest
  loss under model m (``small_loss``); λ(e) comes from ``cometa.core.schedules``.

Pure functions on numpy arrays or torch tensors: the result has the input's kind (and, for torch,
its device); index arrays are int64.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["disagreement", "small_loss", "n_selected", "selection_overlap"]


def disagreement(pred_a, pred_v):
    """Eq. (3): indices of the samples whose predicted classes differ.

    Parameters
    ----------
    pred_a, pred_v : (B,) int, numpy arrays or torch tensors (on the same device)
        predicted class of each sample under the audio and the visual model.

    Returns
    -------
    (B',) int64 indices, ascending; a torch LongTensor on the input's device for torch input.
    """
    if tuple(pred_a.shape) != tuple(pred_v.shape):
        raise ValueError(f"prediction shapes differ: {tuple(pred_a.shape)} vs {tuple(pred_v.shape)}")
    if isinstance(pred_a, torch.Tensor):
        return torch.nonzero(pred_a != pred_v, as_tuple=False).flatten().to(torch.int64)
    return np.flatnonzero(np.asarray(pred_a) != np.asarray(pred_v)).astype(np.int64)


def n_selected(n: int, keep_ratio: float) -> int:
    """⌈keep_ratio · n⌉, the size of a small-loss selection out of n samples.

    The product is rounded to 9 decimals before the ceiling so that float noise
    (0.56 · 100 = 56.00000000000001) does not add a sample; a ratio so small that the product
    rounds to 0 selects nothing.

    Raises
    ------
    ValueError
        if ``keep_ratio`` is NaN or outside [0, 1], or ``n`` is negative.
    """
    if not (0.0 <= keep_ratio <= 1.0):  # also rejects NaN
        raise ValueError(f"keep_ratio must be in [0, 1], got {keep_ratio}")
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    return min(n, math.ceil(round(keep_ratio * n, 9)))


def small_loss(losses, keep_ratio: float):
    """Lines 8-9: indices of the ⌈keep_ratio · n⌉ samples of smallest loss.

    Parameters
    ----------
    losses : (n,) float, numpy array or torch tensor (gradients are not needed: it is detached).
    keep_ratio : λ(e) in [0, 1].

    Returns
    -------
    (k,) int64 indices ordered by ascending loss, equal losses in index order (a stable sort);
    numpy for numpy input, a LongTensor on the input's device for torch input. n = 0 gives an empty
    index array.
    """
    if len(losses.shape) != 1:
        raise ValueError(f"losses must be 1-D (n,), got shape {tuple(losses.shape)}")
    k = n_selected(int(losses.shape[0]), float(keep_ratio))
    if isinstance(losses, torch.Tensor):
        order = torch.sort(losses.detach(), stable=True).indices
        return order[:k].to(torch.int64)
    return np.argsort(np.asarray(losses), kind="stable")[:k].astype(np.int64)


def _as_numpy(idx) -> np.ndarray:
    if isinstance(idx, torch.Tensor):
        idx = idx.detach().cpu().numpy()
    return np.asarray(idx).ravel()


def selection_overlap(sel_a, sel_b) -> float:
    """Jaccard overlap |A ∩ B| / |A ∪ B| of two selections (index arrays, numpy or torch).

    Repeated indices count once. Returns ``nan`` when both selections are empty (the union is
    empty and the ratio undefined), so an empty step is not mistaken for total disagreement.
    """
    a, b = np.unique(_as_numpy(sel_a)), np.unique(_as_numpy(sel_b))
    union = np.union1d(a, b).size
    if union == 0:
        return float("nan")
    return np.intersect1d(a, b, assume_unique=True).size / union
