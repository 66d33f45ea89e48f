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

Pure functions: arrays in, arrays out (no file I/O); sklearn and cleanlab are imported when called.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SCORE_METHODS", "out_of_sample_probs", "label_issue_scores", "flag_label_issues", "ranking_quality"]

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
