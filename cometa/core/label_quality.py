"""Quality of a pseudo labelling against the true identities (when the corpus knows them).

Every measure is computed from the contingency table n_ij = |{samples of true class i in cluster
j}|, with a_i = Σ_j n_ij, b_j = Σ_i n_ij and N = Σ_ij n_ij:

- purity          = Σ_j max_i n_ij / N             (how pure each cluster is)
- inverse purity  = Σ_i max_j n_ij / N             (how whole each true speaker stays)
- NMI             = I(T; C) / ((H(T) + H(C)) / 2)  (arithmetic normalisation, sklearn's default)
  with I(T; C) = Σ_ij n_ij/N · log(N n_ij / (a_i b_j)), H(T) = −Σ_i a_i/N · log(a_i/N)
- ARI             = (Σ_ij C(n_ij, 2) − E) / ((Σ_i C(a_i, 2) + Σ_j C(b_j, 2)) / 2 − E),
  E = Σ_i C(a_i, 2) · Σ_j C(b_j, 2) / C(N, 2)  (Hubert & Arabie 1985)
- flip rate       = the fraction of samples whose label changed between two labellings after
                    aligning the ids one-to-one by maximum overlap (Hungarian)

Two measures of how the labelling sits on the recording sessions (a session is a video: the key's
directory, ``speaker/video/utterance``); noise that follows sessions is noise a network can fit
from session cues (background, channel), so small-loss selection cannot filter it:

- session coherence       = the fraction of samples that carry their session's majority label
                            (needs no ground truth: it can be read on VoxCeleb too)
- wrong whole-session frac = of the samples with a wrong label (:func:`wrong_label_mask`), the
                            fraction whose whole session is wrong under one single label

Which identities a labelling confuses: :func:`confused_pairs` gives, for every wrong label, its
speaker and its cluster's majority speaker (with a corpus that knows its identities' latent voices
and faces, ``tools/study_criteria.py`` measures how alike those pairs are).

Cluster ids may be any integers. Samples with a negative cluster id (dropped by the ensemble vote)
are excluded from every measure: from N, the table and the cluster counts; in ``flip_rate`` a
sample negative in either labelling is excluded. A measure over no samples is NaN.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix

__all__ = ["contingency", "purity", "inverse_purity", "nmi", "ari", "n_clusters", "cluster_sizes", "flip_rate",
           "label_quality", "label_metrics", "wrong_label_mask", "majority_identity", "cluster_majority", "session_of",
           "session_coherence", "wrong_whole_session_frac", "confused_pairs"]


def _kept(true, pred) -> tuple[np.ndarray, np.ndarray]:
    """(true, pred) restricted to the samples with pred >= 0; checks equal lengths."""
    t, p = np.asarray(true).ravel(), np.asarray(pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true labels but {p.size} predicted")
    keep = p >= 0
    return t[keep], p[keep]


def contingency(true, pred, *, sparse: bool = True):
    """Contingency table of true identities against clusters.

    Parameters
    ----------
    true : (N,) true identity of each sample (any sortable ids).
    pred : (N,) cluster id of each sample (any ints; negative = dropped, excluded).
    sparse : return a ``scipy.sparse.csr_matrix`` (default) or a dense ndarray.

    Returns
    -------
    (n_true, n_clusters) int64 counts; rows follow ``np.unique(true[kept])``, columns
    ``np.unique(pred[kept])``.
    """
    t, p = _kept(true, pred)
    ut, ti = np.unique(t, return_inverse=True)
    up, pi = np.unique(p, return_inverse=True)
    table = coo_matrix((np.ones(t.size, dtype=np.int64), (ti.ravel(), pi.ravel())),
                       shape=(ut.size, up.size)).tocsr()  # duplicates summed
    return table if sparse else table.toarray()


def _margins(table: csr_matrix) -> tuple[np.ndarray, np.ndarray, float]:
    """(a (n_true,), b (n_clusters,), N) as float64."""
    a = np.asarray(table.sum(axis=1), dtype=np.float64).ravel()
    b = np.asarray(table.sum(axis=0), dtype=np.float64).ravel()
    return a, b, float(a.sum())


def purity(true, pred) -> float:
    """Σ_j max_i n_ij / N: the fraction of samples in their cluster's majority identity."""
    c = contingency(true, pred)
    return float(c.max(axis=0).sum() / c.sum()) if c.nnz else float("nan")


def inverse_purity(true, pred) -> float:
    """Σ_i max_j n_ij / N: the fraction of samples in their identity's largest cluster."""
    c = contingency(true, pred)
    return float(c.max(axis=1).sum() / c.sum()) if c.nnz else float("nan")


def _entropy(counts: np.ndarray, n: float) -> float:
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum())


def nmi(true, pred) -> float:
    """Normalised mutual information, I(T; C) / ((H(T) + H(C)) / 2), natural logs.

    Two single-class labellings give 1 (identical partitions); one single-class labelling against a
    finer one gives 0, as in ``sklearn.metrics.normalized_mutual_info_score``.
    """
    c = contingency(true, pred).tocoo()
    a, b, n = _margins(c)
    if n == 0:
        return float("nan")
    h_t, h_c = _entropy(a, n), _entropy(b, n)
    if h_t == 0 and h_c == 0:
        return 1.0
    v = c.data.astype(np.float64)  # (nnz,) non-zero n_ij
    mi = float((v / n * (np.log(v * n) - np.log(a[c.row] * b[c.col]))).sum())
    return float(min(1.0, max(0.0, mi / ((h_t + h_c) / 2))))


def _pairs(x: np.ndarray | float) -> np.ndarray:
    """C(x, 2) elementwise, in float64."""
    x = np.asarray(x, dtype=np.float64)
    return x * (x - 1.0) / 2.0


def ari(true, pred) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985): 1 for identical partitions, about 0 by chance.

    Identical partitions whose index and expectation coincide (e.g. both single-class) give 1, as
    in ``sklearn.metrics.adjusted_rand_score``; fewer than 2 samples give NaN.
    """
    c = contingency(true, pred)
    a, b, n = _margins(c)
    if n < 2:
        return float("nan")
    sum_ij = _pairs(c.data).sum()
    sum_a, sum_b = _pairs(a).sum(), _pairs(b).sum()
    expected = sum_a * sum_b / _pairs(n)
    max_index = (sum_a + sum_b) / 2.0
    if max_index == expected:
        return 1.0
    return float((sum_ij - expected) / (max_index - expected))


def n_clusters(pred) -> int:
    """Number of non-empty clusters (negative ids excluded)."""
    p = np.asarray(pred).ravel()
    return int(np.unique(p[p >= 0]).size)


def cluster_sizes(pred) -> np.ndarray:
    """(n_clusters,) int64 sizes of the non-empty clusters, largest first (negative ids excluded)."""
    p = np.asarray(pred).ravel()
    return np.sort(np.unique(p[p >= 0], return_counts=True)[1])[::-1].astype(np.int64)


def flip_rate(prev, cur) -> float:
    """Fraction of samples whose label changed between two labellings, ids aligned first.

    ``cur``'s cluster ids are mapped onto ``prev``'s by a one-to-one matching of maximum total
    overlap (``linear_sum_assignment`` on the (n_cur, n_prev) contingency table); a ``cur`` cluster
    left unmatched (more clusters than before) flips all its samples. Renaming clusters alone thus
    gives 0. Samples negative in either labelling are excluded.

    Parameters
    ----------
    prev, cur : (N,) int cluster ids of the same samples in two rounds.

    Returns
    -------
    float in [0, 1]; NaN when no sample is left.
    """
    a, b = np.asarray(prev).ravel(), np.asarray(cur).ravel()
    if a.shape != b.shape:
        raise ValueError(f"labellings differ in length: {a.size} vs {b.size}")
    keep = (a >= 0) & (b >= 0)
    a, b = a[keep], b[keep]
    if a.size == 0:
        return float("nan")
    ua, ai = np.unique(a, return_inverse=True)
    ub, bi = np.unique(b, return_inverse=True)
    ai, bi = ai.ravel(), bi.ravel()
    # (n_cur, n_prev) dense overlap counts: the assignment solver needs a dense matrix
    table = np.bincount(bi * ua.size + ai, minlength=ub.size * ua.size).reshape(ub.size, ua.size)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapped = np.full(ub.size, -1, dtype=np.int64)  # cur id -> prev id, -1 when unmatched
    mapped[rows] = cols
    return float(np.mean(mapped[bi] != ai))


def label_quality(true, pred) -> dict[str, float]:
    """Every measure of one labelling.

    Returns
    -------
    dict with keys exactly ``purity, inverse_purity, nmi, ari, n_clusters, cluster_size_min,
    cluster_size_median, cluster_size_max`` (floats; sizes NaN when no cluster is left).
    """
    sizes = cluster_sizes(pred)
    some = sizes.size > 0
    return {"purity": purity(true, pred), "inverse_purity": inverse_purity(true, pred),
            "nmi": nmi(true, pred), "ari": ari(true, pred), "n_clusters": float(n_clusters(pred)),
            "cluster_size_min": float(sizes.min()) if some else float("nan"),
            "cluster_size_median": float(np.median(sizes)) if some else float("nan"),
            "cluster_size_max": float(sizes.max()) if some else float("nan")}


def session_of(keys) -> np.ndarray:
    """(N,) str: each key's session, its directory (``id00012/21Uxsk56VDQ/00001.wav`` -> ``id00012/21Uxsk56VDQ``)."""
    return np.asarray([str(k).rsplit("/", 1)[0] for k in keys], dtype=object)


def session_coherence(sessions, labels) -> float:
    """The fraction of samples (label >= 0) that carry the majority label of their session; NaN over none."""
    df = pd.DataFrame({"g": np.asarray(sessions), "c": np.asarray(labels)})
    df = df[df["c"] >= 0]
    if df.empty:
        return float("nan")
    # each (session, label) pair's count; a sample agrees when its pair is its session's largest
    counts = df.groupby(["g", "c"]).size()
    return float(counts.groupby(level="g").max().sum() / len(df))


def wrong_whole_session_frac(speakers, sessions, labels) -> float:
    """Of the samples with a wrong label, the fraction in sessions that are wrong as a whole: every
    labelled sample of the session is wrong and all carry the same label. NaN when no label is wrong."""
    df = pd.DataFrame({"s": np.asarray(speakers), "g": np.asarray(sessions), "c": np.asarray(labels)})
    df = df[df["c"] >= 0]
    if df.empty:
        return float("nan")
    df["wrong"] = wrong_label_mask(df["s"].to_numpy(), df["c"].to_numpy())
    if not df["wrong"].any():
        return float("nan")
    by = df.groupby("g")
    whole = by["wrong"].transform("all") & (by["c"].transform("nunique") == 1)
    return float(whole[df["wrong"]].mean())


def label_metrics(table: pd.DataFrame, previous: pd.DataFrame | None) -> list[dict]:
    """A round's label quality as store rows ``{name, value, modality}``.

    ``table`` is the round's labelling (columns key, speaker, audio, visual, joint, consensus; see
    :func:`cometa.core.ensemble.make_round_labels`): :func:`label_quality` of each view against the
    true speakers (a view that is -1 everywhere, round 1's visual, is left out) with its
    :func:`session_coherence` and :func:`wrong_whole_session_frac`, and, given the previous round's
    table, the :func:`flip_rate` of the consensus over the keys labelled in both."""
    rows = []
    truth = pd.factorize(table["speaker"])[0]
    sessions = session_of(table["key"])
    for view in ("audio", "visual", "joint", "consensus"):
        pred = table[view].to_numpy()
        if (pred < 0).all():
            continue
        quality = label_quality(truth, pred)
        quality["session_coherence"] = session_coherence(sessions, pred)
        quality["wrong_whole_session_frac"] = wrong_whole_session_frac(truth, sessions, pred)
        for name, value in quality.items():
            rows.append(dict(name=name, value=float(value), modality=view))
    if previous is not None:
        prev = previous.set_index("key")["consensus"].reindex(table["key"]).to_numpy()
        cur = table["consensus"].to_numpy()
        ok = (prev >= 0) & (cur >= 0)
        rows.append(dict(name="flip_rate", value=float(flip_rate(prev[ok], cur[ok])), modality="consensus"))
    return rows


def cluster_majority(speakers, labels) -> pd.Series:
    """Each cluster's majority true identity, from the (cluster, speaker) counts, in O(N log N).

    Parameters
    ----------
    speakers : (N,) true identities (any hashable values).
    labels : (N,) integer cluster ids; the caller leaves out the negative (dropped) ones if it wants.

    Returns
    -------
    Series indexed by cluster id (sorted), values the majority speaker; a tie goes to the speaker seen
    first in the cluster (as :func:`wrong_label_mask`). Speakers are factorised once and the pairs
    counted with ``np.unique``, so a million rows take a fraction of a second (a per-cluster
    ``value_counts`` takes seconds at k = 6,000).
    """
    labels, speakers = np.asarray(labels), np.asarray(speakers)
    # (N,) speaker codes, first seen first; integer codes (a caller's own coding) are hashed as integers
    codes, names = pd.factorize(speakers if speakers.dtype.kind in "iu" else speakers.astype(object))
    if labels.size == 0:
        return pd.Series([], index=pd.Index([], dtype=np.int64), dtype=object, name="speaker")
    if labels.dtype.kind in "iu" and labels.min() >= 0 and labels.max() < 4 * labels.size:  # k-means ids: no sort
        clusters = np.flatnonzero(np.bincount(labels))
        c_idx = np.zeros(int(labels.max()) + 1, dtype=np.int64)
        c_idx[clusters] = np.arange(clusters.size)
        c_idx = c_idx[labels]
    else:
        clusters, c_idx = np.unique(labels, return_inverse=True)
    n_spk = max(len(names), 1)
    pairs, first, count = np.unique(c_idx.astype(np.int64) * n_spk + codes, return_index=True, return_counts=True)
    cluster = pairs // n_spk
    order = np.lexsort((first, -count, cluster))  # per cluster: most members, then seen first
    top = order[np.r_[True, np.diff(cluster[order]) != 0]]
    return pd.Series(np.asarray(names, dtype=object)[pairs[top] % n_spk], index=clusters[cluster[top]],
                     name="speaker")


def wrong_label_mask(speakers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) bool, True where a sample's pseudo label is wrong: its cluster's majority true identity
    differs from its own (the ground truth the embedded corpus knows). A tie for the majority goes
    to the speaker seen first in the cluster."""
    df = pd.DataFrame({"s": speakers, "c": labels})
    return (df["c"].map(cluster_majority(df["s"].to_numpy(), df["c"].to_numpy())) != df["s"]).to_numpy()


def majority_identity(speakers: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k,) the majority identity of each cluster 0..k-1 (ties as :func:`wrong_label_mask`), -1 for
    an empty cluster; ``speakers`` are non-negative integer codes (N,), ``labels`` in 0..k-1 (N,)."""
    majority = cluster_majority(speakers, labels)
    out = np.full(int(k), -1, dtype=np.int64)
    out[majority.index.to_numpy(dtype=np.int64)] = majority.to_numpy(dtype=np.int64)
    return out


def confused_pairs(speakers, labels) -> pd.DataFrame:
    """The identities a labelling confuses: one row per wrong label (:func:`wrong_label_mask`), in
    sample order, with ``speaker`` (its true identity) and ``majority`` (its cluster's majority
    identity). Samples with a negative label are left out."""
    speakers, labels = np.asarray(speakers), np.asarray(labels)
    keep = labels >= 0
    df = pd.DataFrame({"speaker": speakers[keep], "c": labels[keep]})
    majority = cluster_majority(df["speaker"].to_numpy(), df["c"].to_numpy())  # values: object for int codes
    df["majority"] = df["c"].map(majority).astype(df["speaker"].dtype)
    return df.loc[df["speaker"] != df["majority"], ["speaker", "majority"]].reset_index(drop=True)
