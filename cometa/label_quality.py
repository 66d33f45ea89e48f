"""Quality of a pseudo labelling against the true identities (when the corpus knows them).

All measures are computed from the contingency table n_ij = |{samples of true class i in
cluster j}|. Samples with a negative cluster id (dropped by the ensemble vote) are excluded
from every measure.

- purity          = Σ_j max_i n_ij / N   (how pure each cluster is)
- inverse purity  = Σ_i max_j n_ij / N   (how whole each true speaker stays)
- NMI             = I(T; C) / ((H(T) + H(C)) / 2)   (arithmetic normalisation)
- ARI             = adjusted Rand index (Hubert & Arabie 1985)
- flip rate       = the fraction of samples whose label changed between two labellings after
                    aligning the ids one-to-one by maximum overlap (Hungarian)
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix

__all__ = ["contingency", "purity", "inverse_purity", "nmi", "ari", "n_clusters", "cluster_sizes", "flip_rate",
           "label_quality"]


def _valid(true, pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(true).ravel(), np.asarray(pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true labels but {p.size} predicted")
    keep = p >= 0
    return t[keep], p[keep]


def contingency(true, pred) -> csr_matrix:
    """(n_true, n_clusters) sparse counts; ids may be arbitrary (negative predictions excluded)."""
    t, p = _valid(true, pred)
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    return coo_matrix((np.ones(t.size, dtype=np.int64), (ti, pi)), shape=(ti.max(initial=-1) + 1, pi.max(initial=-1) + 1)).tocsr()


def purity(true, pred) -> float:
    c = contingency(true, pred)
    return float(c.max(axis=0).sum() / c.sum()) if c.nnz else float("nan")


def inverse_purity(true, pred) -> float:
    c = contingency(true, pred)
    return float(c.max(axis=1).sum() / c.sum()) if c.nnz else float("nan")


def _entropy(counts: np.ndarray, n: float) -> float:
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum())


def nmi(true, pred) -> float:
    c = contingency(true, pred).tocoo()
    n = float(c.sum())
    if n == 0:
        return float("nan")
    a, b = np.asarray(c.sum(axis=1)).ravel(), np.asarray(c.sum(axis=0)).ravel()
    h_t, h_c = _entropy(a, n), _entropy(b, n)
    if h_t == 0 and h_c == 0:
        return 1.0  # both labellings put everything in one class: identical partitions
    v = c.data.astype(np.float64)
    mi = float((v / n * (np.log(v * n) - np.log(a[c.row] * b[c.col]))).sum())
    return max(0.0, mi / ((h_t + h_c) / 2)) if (h_t + h_c) > 0 else 0.0


def ari(true, pred) -> float:
    c = contingency(true, pred)
    n = int(c.sum())
    if n < 2:
        return float("nan")
    comb2 = lambda x: x * (x - 1) / 2.0  # noqa: E731
    sum_ij = comb2(c.data.astype(np.float64)).sum()
    sum_a = comb2(np.asarray(c.sum(axis=1), dtype=np.float64)).sum()
    sum_b = comb2(np.asarray(c.sum(axis=0), dtype=np.float64)).sum()
    expected = sum_a * sum_b / comb2(float(n))
    max_index = (sum_a + sum_b) / 2
    if max_index == expected:
        return 1.0
    return float((sum_ij - expected) / (max_index - expected))


def n_clusters(pred) -> int:
    """Number of non-empty clusters (negative ids excluded)."""
    p = np.asarray(pred)
    return int(np.unique(p[p >= 0]).size)


def cluster_sizes(pred) -> np.ndarray:
    """Sizes of the non-empty clusters, largest first."""
    p = np.asarray(pred)
    return np.sort(np.unique(p[p >= 0], return_counts=True)[1])[::-1]


def flip_rate(prev, cur) -> float:
    """Fraction of samples whose label changed between two labellings, after mapping ``cur``'s ids
    onto ``prev``'s by one-to-one maximum overlap (a cluster left unmatched counts as a flip)."""
    a, b = np.asarray(prev).ravel(), np.asarray(cur).ravel()
    if a.shape != b.shape:
        raise ValueError(f"labellings differ in length: {a.size} vs {b.size}")
    if a.size == 0:
        return float("nan")
    ua, ai = np.unique(a, return_inverse=True)
    ub, bi = np.unique(b, return_inverse=True)
    table = coo_matrix((np.ones(a.size), (bi, ai)), shape=(ub.size, ua.size)).toarray()
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapped = np.full(ub.size, -1)
    mapped[rows] = cols
    return float(np.mean(mapped[bi] != ai))


def label_quality(true, pred) -> dict[str, float]:
    """Every measure of one labelling: purity, inverse_purity, nmi, ari, n_clusters and the
    cluster size distribution (cluster_size_min / _median / _max)."""
    sizes = cluster_sizes(pred)
    return {"purity": purity(true, pred), "inverse_purity": inverse_purity(true, pred), "nmi": nmi(true, pred),
            "ari": ari(true, pred), "n_clusters": float(n_clusters(pred)),
            "cluster_size_min": float(sizes.min()) if sizes.size else float("nan"),
            "cluster_size_median": float(np.median(sizes)) if sizes.size else float("nan"),
            "cluster_size_max": float(sizes.max()) if sizes.size else float("nan")}
