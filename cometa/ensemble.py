"""Audio-visual cluster ensemble (after Cai et al. 2022), the consensus pseudo labels of a round.

The audio, visual and joint embeddings are clustered separately; the joint labelling is the
reference. The other two are aligned onto it (one-to-one maximum-overlap matching of cluster ids,
the Hungarian algorithm on the contingency table), then each sample takes the majority label of
the three. Where all three differ, the policy decides: ``"reference"`` keeps the joint label,
``"drop"`` leaves the sample out of this round's training.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix

__all__ = ["joint_embeddings", "align", "vote", "vote_counts", "consensus"]

POLICIES = ("reference", "drop")


def joint_embeddings(audio: np.ndarray, visual: np.ndarray) -> np.ndarray:
    """(N, Da + Dv): the concatenation of the two L2-normalised views."""
    def l2(x):
        x = np.asarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    if len(audio) != len(visual):
        raise ValueError(f"{len(audio)} audio but {len(visual)} visual embeddings")
    return np.concatenate([l2(audio), l2(visual)], axis=1)


def align(reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``labels`` with each cluster id replaced by the reference id it overlaps most, one-to-one.

    Clusters left unmatched (more clusters than the reference has, or a match of zero overlap)
    get ids outside the reference's range: max(reference) + 1, + 2, ... in order of their own ids.
    """
    ref, lab = np.asarray(reference).ravel(), np.asarray(labels).ravel()
    if ref.shape != lab.shape:
        raise ValueError(f"labellings differ in length: {ref.size} vs {lab.size}")
    if ref.size == 0:
        return lab.astype(np.int64)
    ur, ri = np.unique(ref, return_inverse=True)
    ul, li = np.unique(lab, return_inverse=True)
    overlap = coo_matrix((np.ones(ref.size), (li, ri)), shape=(ul.size, ur.size)).toarray()  # (L, R)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    mapping = np.full(ul.size, -1, dtype=np.int64)
    matched = overlap[rows, cols] > 0
    mapping[rows[matched]] = ur[cols[matched]]
    free = np.flatnonzero(mapping < 0)
    mapping[free] = int(ref.max()) + 1 + np.arange(free.size)
    return mapping[li]


def vote_counts(reference: np.ndarray, audio: np.ndarray, visual: np.ndarray) -> dict[str, int]:
    """How many samples had all three (aligned) labels agree, exactly two, or none."""
    j, a, v = (np.asarray(x) for x in (reference, audio, visual))
    all_agree = (j == a) & (a == v)
    all_differ = (j != a) & (j != v) & (a != v)
    return {"all_agree": int(all_agree.sum()), "two_agree": int((~all_agree & ~all_differ).sum()),
            "all_differ": int(all_differ.sum())}


def vote(reference: np.ndarray, audio: np.ndarray, visual: np.ndarray, *,
         policy: str = "reference") -> tuple[np.ndarray, np.ndarray]:
    """Majority of the joint, audio and visual labels per sample: ``(labels, kept)``.

    ``audio`` and ``visual`` are aligned onto ``reference`` here (pass raw cluster ids). Where all
    three differ: ``policy="reference"`` keeps the joint label; ``"drop"`` gives label -1 and
    kept False.
    """
    if policy not in POLICIES:
        raise ValueError(f"vote policy must be one of {POLICIES}, got {policy!r}")
    j = np.asarray(reference).ravel().astype(np.int64)
    a, v = align(j, audio), align(j, visual)
    labels = j.copy()
    labels[(a == v) & (a != j)] = a[(a == v) & (a != j)]  # the two others outvote the reference
    kept = np.ones(j.size, dtype=bool)
    if policy == "drop":
        differ = (j != a) & (j != v) & (a != v)
        labels[differ] = -1
        kept[differ] = False
    return labels, kept


def consensus(joint: np.ndarray, audio: np.ndarray, visual: np.ndarray, *,
              policy: str = "reference") -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The round's consensus labels, kept mask and vote counts (audio and visual raw ids)."""
    labels, kept = vote(joint, audio, visual, policy=policy)
    counts = vote_counts(joint, align(joint, audio), align(joint, visual))
    return labels, kept, counts
