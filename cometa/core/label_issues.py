"""Label-issue scores of a round's pseudo labels (confident learning, Northcutt et al. 2021, via cleanlab).

1. Out-of-sample class probabilities P̂ (N, K): a k-fold logistic regression on the round's frozen,
   L2-normalised embeddings, each sample scored by the model of the folds it was not in
   (``out_of_sample_probs``) — cheap, no retraining of the encoders.
2. Per-sample label quality (``label_issue_scores``, cleanlab's ``get_label_quality_scores``):
   self-confidence P̂[i, y_i] and normalised margin P̂[i, y_i] − max_{k≠y_i} P̂[i, k] (rescaled to
   [0, 1]); a low score = a likely wrong label. cleanlab's ``find_label_issues`` flags the issues
   (prune by noise rate).
3. With the ground truth: how well a score ranks the wrong labels first (``ranking_quality``):
   AUROC and average precision of −score against the wrong-label mask.

At paper scale (N = 1.09 M, K = 6,000) the dense (N, K) P̂ of step 1 is 52 GB and its K-class fits
take days, so the scalable path (config ``evaluation.label_issues.method: centroid``) replaces step 1
by a nearest-class-mean softmax over leave-one-out class centroids (``centroid_probs``: one (N, D) @
(D, K) product, kept as an (N, K) sparse matrix of each row's top entries and its own label's), and
step 2 by the same scores and cleanlab's ``confident_learning`` flags computed on it
(``sparse_label_issue_scores``, ``sparse_flag_label_issues``). On seeded noisy clusters of demo size it
ranks the wrong labels at least as well as the k-fold regression (tests/test_label_issues.py).

Pure functions: arrays in, arrays out (no file I/O); sklearn and cleanlab are imported when called.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SCORE_METHODS", "out_of_sample_probs", "label_issue_scores", "flag_label_issues", "ranking_quality",
           "centroid_probs", "sparse_label_issue_scores", "sparse_flag_label_issues"]

SCORE_METHODS = ("self_confidence", "normalized_margin")


def _check(labels, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise ValueError(f"labels must be ({n},) non-negative integers, got shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int64)


def out_of_sample_probs(embeddings, labels, *, n_folds: int = 5, seed: int = 0, max_iter: int = 200) -> np.ndarray:
    """(N, K) class probabilities of each sample from a logistic regression fitted on the other folds.

    Parameters
    ----------
    embeddings : (N, D) frozen embeddings (L2-normalised here).
    labels : (N,) pseudo labels 0..K-1, K = labels.max() + 1.
    n_folds : folds of a shuffled split stratified by label (scikit-learn's ``StratifiedKFold``, as
        cleanlab's own cross-validation; seeded by ``seed``): every fold holds about 1/``n_folds`` of
        each cluster, so each sample is scored by a model that saw the rest of its cluster.

    Clusters smaller than ``n_folds``: the m members of such a cluster go to m different folds, so
    each is scored by a model trained on its m - 1 cluster-mates (a 2-member cluster: on its one
    mate). A cluster of one member cannot be: no model that scores it has seen its label, which
    then gets probability 0 (ranked as an issue, as a singleton cell of k-means deserves). At least
    one cluster must have ``n_folds`` members.

    Returns
    -------
    (N, K) float64 rows summing to 1; a class absent from a fold's training part (a singleton's)
    gets probability 0 in that fold's rows.
    """
    import warnings  # with the imports below: this module's other functions do not need it

    from sklearn.linear_model import LogisticRegression  # sklearn: imported when used
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {x.shape}")
    y = _check(labels, x.shape[0])
    if n_folds < 2 or n_folds > x.shape[0]:
        raise ValueError(f"n_folds must be in [2, {x.shape[0]}], got {n_folds}")
    if np.bincount(y).max() < n_folds:
        raise ValueError(f"n_folds ({n_folds}) exceeds the largest cluster ({np.bincount(y).max()} members): "
                         f"a stratified split needs one cluster with a member in every fold")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = int(y.max()) + 1
    probs = np.zeros((x.shape[0], k))
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits": the rule above
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(x, y))
    for train, held in folds:
        if np.unique(y[train]).size < 2:  # one class only: it gets all the mass
            probs[np.ix_(held, np.unique(y[train]))] = 1.0
            continue
        # one BLAS thread: these small products run ~7x faster than on contended threads (measured)
        with threadpool_limits(1, user_api="blas"):
            clf = LogisticRegression(max_iter=max_iter, C=10.0).fit(x[train], y[train])
            probs[np.ix_(held, clf.classes_)] = clf.predict_proba(x[held])
    return probs


def label_issue_scores(labels, probs) -> dict[str, np.ndarray]:
    """``{method: (N,) score in [0, 1]}`` for the methods of :data:`SCORE_METHODS` (cleanlab's
    ``get_label_quality_scores``); low = a likely wrong label."""
    from cleanlab.rank import get_label_quality_scores  # cleanlab: imported when used

    p = np.asarray(probs, dtype=np.float64)
    y = _check(labels, p.shape[0])
    return {m: np.asarray(get_label_quality_scores(y, p, method=m), dtype=np.float64) for m in SCORE_METHODS}


def flag_label_issues(labels, probs) -> np.ndarray:
    """(N,) bool, cleanlab's ``find_label_issues`` (confident learning, prune by noise rate)."""
    from cleanlab.filter import find_label_issues  # cleanlab: imported when used

    p = np.asarray(probs, dtype=np.float64)
    return np.asarray(find_label_issues(_check(labels, p.shape[0]), p), dtype=bool)


def ranking_quality(scores, wrong) -> tuple[float, float]:
    """``(auroc, ap)`` of ranking the samples by ascending score against the wrong-label mask
    (N,) bool; both NaN when every label is right or every label is wrong."""
    from sklearn.metrics import average_precision_score, roc_auc_score  # sklearn: imported when used

    s, w = np.asarray(scores, dtype=np.float64), np.asarray(wrong, dtype=bool)
    if s.shape != w.shape:
        raise ValueError(f"{s.size} scores but {w.size} wrong-label flags")
    if w.all() or not w.any():
        return float("nan"), float("nan")
    return float(roc_auc_score(w, -s)), float(average_precision_score(w, -s))


def centroid_probs(embeddings, labels, *, temperature: float = 0.05, top_k: int = 8, chunk: int = 8192):
    """(N, K) sparse class probabilities from the cosine to each class's leave-one-out centroid.

    P̂[i, k] = softmax_k(cos(x_i, μ_k^{(−i)}) / T), μ_k^{(−i)} = Σ_{j: y_j = k, j ≠ i} x_j (the mean
    direction of class k without sample i): a nearest-class-mean classifier, out of sample for every
    row without folds or fits; one (N, D) @ (D, K) product, in chunks of ``chunk`` rows (torch).
    The softmax is over all K classes; each row keeps its ``top_k`` largest entries and its own label's.

    Parameters
    ----------
    embeddings : (N, D) frozen embeddings (L2-normalised here, float32).
    labels : (N,) pseudo labels 0..K-1, K = labels.max() + 1.
    temperature : T, in cosine units.
    top_k : entries kept a row besides the own label's. A dropped entry is at most 1 / (top_k + 1) (the
        row sums to 1), so :func:`sparse_flag_label_issues` is exact where every class threshold is above
        that, and both scores are exact always (the own entry and the largest other are kept).

    Returns
    -------
    scipy.sparse.csr_array (N, K) float64, sorted indices; a row sums to 1 minus the dropped mass.
    """
    import torch  # torch: imported when used
    from scipy import sparse

    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {x.shape}")
    y = _check(labels, x.shape[0])
    if temperature <= 0 or top_k < 1:
        raise ValueError(f"temperature must be > 0 and top_k >= 1, got {temperature}, {top_k}")
    n, k = x.shape[0], int(y.max()) + 1
    top = min(top_k, k)
    xt = torch.from_numpy(x)
    xt = xt / xt.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (N, D)
    yt = torch.from_numpy(y)
    sums = torch.zeros(k, x.shape[1]).index_add_(0, yt, xt)  # (K, D) Σ x over each class
    mu = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (K, D)
    cols = np.empty((n, top + 1), dtype=np.int64)  # the top classes, then the own label
    vals = np.empty((n, top + 1), dtype=np.float64)
    scaled = (mu / temperature).T.contiguous()  # (D, K): |cos / T| <= 1 / T, so exp needs no max subtracted
    with torch.no_grad():
        for lo in range(0, n, chunk):
            xs, ys = xt[lo:lo + chunk], yt[lo:lo + chunk]  # (b, D), (b,)
            rows = torch.arange(len(ys))
            own = sums[ys] - xs  # (b, D) the own class without this sample
            own_cos = (xs * own).sum(1) / own.norm(dim=1).clamp_min(1e-12)
            e = xs @ scaled  # (b, K) cos / T
            e[rows, ys] = own_cos / temperature
            e.exp_()  # in place: the (b, K) block is the largest array here
            z = e.sum(1)  # (b,) the softmax's denominator over all K
            pv, pi = torch.topk(e, top, dim=1)
            cols[lo:lo + chunk, :top], vals[lo:lo + chunk, :top] = pi.numpy(), (pv / z[:, None]).numpy()
            cols[lo:lo + chunk, top], vals[lo:lo + chunk, top] = ys.numpy(), (e[rows, ys] / z).numpy()
    vals[:, top][(cols[:, :top] == cols[:, top:]).any(axis=1)] = 0.0  # the own label among the top: once
    probs = sparse.csr_array((vals.ravel(), cols.ravel(), np.arange(0, n * (top + 1) + 1, top + 1)), shape=(n, k))
    probs.sum_duplicates()
    probs.eliminate_zeros()
    probs.sort_indices()
    return probs


def _row_max(probs, *, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """``(max, argmax)`` of each row of a CSR (N, K) matrix with non-negative entries, over its stored
    entries (the lowest column on ties, as ``np.argmax``), leaving out column ``exclude[i]`` of row i;
    (0, -1) for a row with nothing left."""
    n = probs.shape[0]
    row = np.repeat(np.arange(n), np.diff(probs.indptr))
    data = probs.data.copy()
    if exclude is not None:
        data[probs.indices == exclude[row]] = -1.0
    best = np.full(n, -1.0)
    np.maximum.at(best, row, data)
    hit = np.flatnonzero((data == best[row]) & (data >= 0))
    first = np.full(n, -1)
    first[row[hit][::-1]] = probs.indices[hit][::-1]  # the first hit of each row is written last
    return np.maximum(best, 0.0), first


def sparse_label_issue_scores(labels, probs) -> dict[str, np.ndarray]:
    """``{method: (N,) score in [0, 1]}`` for :data:`SCORE_METHODS` from a sparse (N, K) P̂ (:func:`centroid_probs`),
    by cleanlab's equations: self-confidence P̂[i, y_i], normalised margin (P̂[i, y_i] − max_{k≠y_i} P̂[i, k] + 1) / 2
    (equal to :func:`label_issue_scores` on the dense matrix)."""
    y = _check(labels, probs.shape[0])
    own = np.asarray(probs[np.arange(y.size), y], dtype=np.float64).ravel()
    other, _ = _row_max(probs, exclude=y)
    return {"self_confidence": own, "normalized_margin": (own - other + 1.0) / 2.0}


def sparse_flag_label_issues(labels, probs) -> np.ndarray:
    """(N,) bool: cleanlab's ``find_label_issues(filter_by="confident_learning")`` on a sparse (N, K) P̂.

    Class thresholds t_k = mean of P̂[i, k] over the samples labelled k; a sample is flagged when it
    is confidently counted off the diagonal of the confident joint (its single class above threshold,
    or its argmax when several are, is not y_i) and its own label is not its argmax (cleanlab's
    ``_reduce_issues``). Its ``prune_by_noise_rate`` default needs the dense (K, K) joint per class:
    not used at this scale.
    """
    y = _check(labels, probs.shape[0])
    n, k = probs.shape
    own = np.asarray(probs[np.arange(n), y], dtype=np.float64).ravel()
    counts = np.bincount(y, minlength=k)
    thresholds = np.where(counts > 0, np.bincount(y, weights=own, minlength=k) / np.maximum(counts, 1), 2.0)
    thresholds = np.maximum(thresholds, 2e-6)  # cleanlab's CONFIDENT_THRESHOLDS_LOWER_BOUND
    row = np.repeat(np.arange(n), np.diff(probs.indptr))
    confident = probs.data >= thresholds[probs.indices] - 1e-6
    n_confident = np.bincount(row, weights=confident, minlength=n)
    single = np.full(n, -1)
    single[row[confident]] = probs.indices[confident]  # the one confident class, where there is one
    _, argmax = _row_max(probs)
    guess = np.where(n_confident > 1, argmax, single)
    off_diagonal = (n_confident > 0) & (guess != y)
    best_other, _ = _row_max(probs, exclude=y)
    own_is_argmax = own + 1e-6 > best_other  # cleanlab's FLOATING_POINT_COMPARISON added to the own label
    return off_diagonal & ~own_is_argmax
