"""Speaker-verification metrics: cosine scoring of trial lists, EER, minDCF, DET curves.

Pure, vectorised functions on numpy arrays. Conventions:

- ``scores`` is a float array, ``labels`` a 0/1 array (1 = target trial, same speaker);
- a trial is accepted when ``score >= threshold``;
- the error rates are evaluated at every distinct score (equal scores move together, so ties are
  handled exactly), plus "reject all" above the highest score.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["eer", "min_dcf", "det_curve", "error_rates", "cosine_scores", "score_trials", "fuse_scores"]


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate once: same length, non-empty, finite scores, labels in {0, 1}, both classes."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.size == 0:
        raise ValueError("empty score list")
    if s.size != y.size:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        bad = int(np.flatnonzero(~np.isfinite(s))[0])
        raise ValueError(f"scores must be finite; score {bad} is {s[bad]}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 (non-target) or 1 (target)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("labels hold a single class; EER and minDCF need targets and non-targets")
    return s, y


def error_rates(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_fa, p_miss, thresholds) at each distinct score, then at +inf (reject all).

    At threshold t: p_miss = P(score < t | target), p_fa = P(score >= t | non-target). p_fa falls
    and p_miss rises along the arrays.
    """
    s, y = _check(scores, labels)
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    n_tar, n_non = y.sum(), (~y).sum()
    # first index of each distinct score: everything before it is rejected at that threshold
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    tar_below = np.r_[0, np.cumsum(y)][first]
    non_below = np.r_[0, np.cumsum(~y)][first]
    p_miss = np.r_[tar_below, n_tar] / n_tar
    p_fa = 1.0 - np.r_[non_below, n_non] / n_non
    thresholds = np.r_[s[first], np.inf]
    return p_fa, p_miss, thresholds


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate (a fraction in [0, 1]) and the threshold where it is reached.

    p_miss rises and p_fa falls with the threshold; between the last threshold with
    p_miss < p_fa and the next one the two curves cross, and the EER is read at the crossing of
    the two straight segments joining them (the usual ROC-convex interpolation).
    """
    p_fa, p_miss, th = error_rates(scores, labels)
    diff = p_miss - p_fa  # rises from -1 to +1
    i = int(np.flatnonzero(diff >= 0)[0])  # exists: diff[-1] = 1
    if i == 0 or diff[i] == 0:
        return float((p_miss[i] + p_fa[i]) / 2), float(th[i])
    j = i - 1
    # segments p_miss(t) and p_fa(t) between points j and i; solve p_miss = p_fa on the segment
    w = -diff[j] / (diff[i] - diff[j])
    e = p_miss[j] + w * (p_miss[i] - p_miss[j])
    hi = th[i] if np.isfinite(th[i]) else th[j]
    return float(e), float(th[j] + w * (hi - th[j]))


def min_dcf(scores, labels, *, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Minimum normalised detection cost and its threshold (NIST SRE evaluation plan).

    C_det(t) = C_miss · P_miss(t) · P_target + C_fa · P_fa(t) · (1 − P_target), normalised by
    C_default = min(C_miss · P_target, C_fa · (1 − P_target)), the cost of accepting or rejecting
    every trial; minimised over all thresholds (accept-all and reject-all included).
    """
    if not (0.0 < p_target < 1.0):
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    p_fa, p_miss, th = error_rates(scores, labels)
    c_det = c_miss * p_miss * p_target + c_fa * p_fa * (1.0 - p_target)
    c_def = min(c_miss * p_target, c_fa * (1.0 - p_target))
    i = int(np.argmin(c_det))
    return float(c_det[i] / c_def), float(th[i])


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of the DET curve: (p_fa, p_miss, thresholds), p_fa non-increasing."""
    return error_rates(scores, labels)


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_scores(enroll, test) -> np.ndarray:
    """(T,) row-wise cosine similarity of two (T, D) arrays."""
    a, b = np.asarray(enroll), np.asarray(test)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return np.einsum("td,td->t", _l2(a), _l2(b)).astype(np.float64)


def score_trials(embeddings, index: dict, trials: pd.DataFrame, *, chunk: int = 65536) -> np.ndarray:
    """(T,) cosine scores of the trials ``enroll``/``test`` keys, looked up in ``index`` (key -> row).

    The embeddings (N, D) are normalised once and the trials scored in chunks, so memory stays
    bounded for a million trials.
    """
    emb = _l2(embeddings)
    keys = pd.Index(list(index.keys()))
    rows = np.fromiter(index.values(), dtype=np.int64, count=len(index))
    out = np.empty(len(trials), dtype=np.float64)
    positions = {}
    for side in ("enroll", "test"):
        pos = keys.get_indexer(trials[side])
        if (pos < 0).any():
            missing = trials[side][pos < 0]
            raise KeyError(f"trial {side} key {missing.iloc[0]!r} has no embedding "
                           f"({len(missing)} trial(s) name a key not in the index)")
        positions[side] = rows[pos]
    for start in range(0, len(trials), chunk):
        e = emb[positions["enroll"][start:start + chunk]]
        t = emb[positions["test"][start:start + chunk]]
        out[start:start + chunk] = np.einsum("td,td->t", e, t)
    return out


def fuse_scores(audio, visual) -> np.ndarray:
    """Audio-visual score fusion: the mean of the two cosine scores of each trial."""
    a, v = np.asarray(audio, dtype=np.float64), np.asarray(visual, dtype=np.float64)
    if a.shape != v.shape:
        raise ValueError(f"score arrays differ in length: {a.shape} vs {v.shape}")
    return (a + v) / 2.0
