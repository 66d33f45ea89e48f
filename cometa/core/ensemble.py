"""Audio-visual cluster ensemble (after Cai et al. 2022), the consensus pseudo labels of a round.

Paper Sec. 2.2: the audio, visual and joint embeddings are clustered separately; the joint
labelling is the reference. The other two are aligned onto it (one-to-one maximum-overlap matching
of cluster ids, the Hungarian algorithm on the contingency table), then each sample takes the
majority label of the three. Where all three differ, the policy decides: ``"reference"`` keeps the
joint label, ``"drop"`` leaves the sample out of this round's training.
:func:`make_round_labels` does a round's whole step: cluster each view, then vote.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix

from cometa.config.sections import ClusteringConfig
from cometa.core.label_quality import session_of
from cometa.core.pseudo_labels import cluster, l2_normalise, truth_labels

__all__ = ["joint_embeddings", "align", "vote", "vote_counts", "consensus", "make_round_labels"]

POLICIES = ("reference", "drop")


def joint_embeddings(audio: np.ndarray, visual: np.ndarray) -> np.ndarray:
    """(N, Da + Dv) float32: the concatenation of the two L2-normalised views (each half unit-norm).

    A visual row that is not finite (an utterance without face frames, ``corpus.missing_faces:
    audio_only``) gives a zero visual half: the joint view of that utterance is its voice alone.
    """
    if len(audio) != len(visual):
        raise ValueError(f"{len(audio)} audio but {len(visual)} visual embeddings")
    visual = np.asarray(visual, dtype=np.float32)
    visual = np.where(np.isfinite(visual).all(axis=1, keepdims=True), visual, 0.0)
    return np.concatenate([l2_normalise(audio), l2_normalise(visual)], axis=1)


def align(reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``labels`` with each cluster id replaced by the reference id it overlaps most, one-to-one.

    Clusters left unmatched (more clusters than the reference has, or a match of zero overlap)
    get ids outside the reference's range: max(reference) + 1, + 2, ... in order of their own ids.
    A negative id in ``labels`` marks a sample without that view (no face frames): it takes no
    part in the matching and stays -1.
    """
    ref, lab = np.asarray(reference).ravel(), np.asarray(labels).ravel()
    if ref.shape != lab.shape:
        raise ValueError(f"labellings differ in length: {ref.size} vs {lab.size}")
    out = np.full(lab.shape, -1, dtype=np.int64)
    has = lab >= 0
    if not has.any():
        return out
    ur, ri = np.unique(ref[has], return_inverse=True)
    ul, li = np.unique(lab[has], return_inverse=True)
    overlap = coo_matrix((np.ones(li.size), (li, ri)), shape=(ul.size, ur.size)).toarray()  # (L, R)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    mapping = np.full(ul.size, -1, dtype=np.int64)
    matched = overlap[rows, cols] > 0
    mapping[rows[matched]] = ur[cols[matched]]
    free = np.flatnonzero(mapping < 0)
    mapping[free] = int(ref.max()) + 1 + np.arange(free.size)
    out[has] = mapping[li]
    return out


def vote_counts(reference: np.ndarray, audio: np.ndarray, visual: np.ndarray) -> dict[str, int]:
    """How many samples had all three (already aligned) labels agree, exactly two, or none."""
    j, a, v = (np.asarray(x) for x in (reference, audio, visual))
    all_agree = (j == a) & (a == v)
    all_differ = (j != a) & (j != v) & (a != v)
    return {"all_agree": int(all_agree.sum()), "two_agree": int((~all_agree & ~all_differ).sum()),
            "all_differ": int(all_differ.sum())}


def _aligned_views(reference: np.ndarray, audio: np.ndarray,
                   visual: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,) joint, audio and visual ids in the reference's id space, unmatched ids disjoint.

    :func:`align` numbers each view's unmatched clusters from max(reference) + 1; for the vote the
    visual ones are moved past the audio ones, so that the two views can only agree through a
    reference cluster (otherwise audio's 1st extra cluster and visual's 1st extra cluster, which
    have nothing to do with each other, would share an id and outvote the reference).
    """
    j = np.asarray(reference).ravel().astype(np.int64)
    a, v = align(j, audio), align(j, visual)
    if j.size:
        base = int(j.max()) + 1
        v[v >= base] += max(int(a.max()) + 1, base) - base
    return j, a, v


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"vote policy must be one of {POLICIES}, got {policy!r}")


def _majority(j: np.ndarray, a: np.ndarray, v: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, kept) from aligned (N,) ids; the policy is already checked."""
    labels = j.copy()
    outvoted = (a == v) & (a != j)  # the two other views agree against the reference
    labels[outvoted] = a[outvoted]
    kept = np.ones(j.size, dtype=bool)
    if policy == "drop":
        differ = (j != a) & (j != v) & (a != v)
        labels[differ] = -1
        kept[differ] = False
    return labels, kept


def vote(reference: np.ndarray, audio: np.ndarray, visual: np.ndarray, *,
         policy: str = "reference") -> tuple[np.ndarray, np.ndarray]:
    """Majority of the joint, audio and visual labels per sample: ``(labels, kept)``, both (N,).

    ``audio`` and ``visual`` are raw cluster ids: they are aligned onto ``reference`` here (with
    :func:`align`; clusters left unmatched get ids that match neither the reference nor the other
    view). Where all three differ: ``policy="reference"`` keeps the joint label; ``"drop"`` gives
    label -1 and kept False. A visual id of -1 marks an utterance without faces: it never agrees,
    so such a sample keeps the joint label when audio agrees with it (and under ``"drop"`` is
    dropped when audio does not).
    """
    _check_policy(policy)
    return _majority(*_aligned_views(reference, audio, visual), policy)


def consensus(joint: np.ndarray, audio: np.ndarray, visual: np.ndarray, *,
              policy: str = "reference") -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The round's consensus ``(labels, kept, counts)`` from raw joint, audio and visual ids.

    The same as :func:`vote` plus :func:`vote_counts` on the views as the vote aligned them.
    """
    _check_policy(policy)
    j, a, v = _aligned_views(joint, audio, visual)
    labels, kept = _majority(j, a, v, policy)
    return labels, kept, vote_counts(j, a, v)


def make_round_labels(keys, speakers, audio_emb: np.ndarray, visual_emb: np.ndarray | None, *,
                      clustering: ClusteringConfig, seed: int,
                      truth_seed: int | None = None,
                      truth_embeddings: np.ndarray | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Cluster each view and vote: the round's labelling table and the vote counts.

    With no visual embeddings (round 1: the visual encoder has no Stage I) the consensus is the
    audio clustering, as in the paper. Columns: key, speaker (true identity, for diagnosis only),
    audio, visual, joint, consensus (-1 = dropped by the vote), kept; audio and visual ids are
    aligned onto the joint (reference) ids. Utterances whose visual row is not finite (no face
    frames, ``corpus.missing_faces: audio_only``) get visual -1: the visual clustering runs on the
    others, and their joint view is their voice alone (see :func:`joint_embeddings`).

    ``clustering.method: truth`` clusters nothing: every view is :func:`truth_labels` of ``speakers``
    drawn with ``truth_seed`` (default ``seed``; the pipeline passes one seed for every round, so
    the labels are the same in every round) and, for ``truth_noise_target: audio_nearest``,
    ``truth_embeddings`` (the pipeline passes Stage I's audio embeddings in every round); the visual
    view -1 where the clustering leaves it so.
    """
    if clustering.method == "truth":
        labels = truth_labels(speakers, session_of(keys), noise=clustering.truth_noise,
                              unit=clustering.truth_noise_unit, seed=seed if truth_seed is None else truth_seed,
                              target=clustering.truth_noise_target, embeddings=truth_embeddings)
        visual = labels.copy()
        visual[np.ones(len(labels), dtype=bool) if visual_emb is None else ~np.isfinite(visual_emb).all(axis=1)] = -1
        table = pd.DataFrame({"key": list(keys), "speaker": list(speakers), "audio": labels, "visual": visual,
                              "joint": labels, "consensus": labels, "kept": np.ones(len(labels), dtype=bool)})
        return table, {"all_agree": len(labels), "two_agree": 0, "all_differ": 0}
    audio = cluster(audio_emb, clustering, seed=seed)
    if visual_emb is None:
        n = len(audio)
        table = pd.DataFrame({"key": list(keys), "speaker": list(speakers), "audio": audio,
                              "visual": np.full(n, -1, dtype=np.int64), "joint": audio,
                              "consensus": audio, "kept": np.ones(n, dtype=bool)})
        return table, {"all_agree": n, "two_agree": 0, "all_differ": 0}
    has_face = np.isfinite(visual_emb).all(axis=1)
    visual = np.full(len(audio), -1, dtype=np.int64)
    visual[has_face] = cluster(visual_emb[has_face], clustering, seed=seed + 1)
    joint = cluster(joint_embeddings(audio_emb, visual_emb), clustering, seed=seed + 2)
    labels, kept, counts = consensus(joint, audio, visual, policy=clustering.vote_policy)
    table = pd.DataFrame({"key": list(keys), "speaker": list(speakers), "audio": align(joint, audio),
                          "visual": align(joint, visual), "joint": joint, "consensus": labels, "kept": kept})
    return table, counts
