"""Label-issue scores: out-of-sample probabilities, cleanlab's scores against their equations, and the
ranking metrics against a direct computation, on seeded label noise with a known mask."""
import numpy as np
import pytest

from cometa.core.label_issues import flag_label_issues, label_issue_scores, out_of_sample_probs, ranking_quality


def _noisy_blobs(seed=0, n_per=40, k=4, flip=0.2):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, 8)) * 3
    true = np.repeat(np.arange(k), n_per)
    x = centers[true] + rng.normal(size=(true.size, 8))
    labels = true.copy()
    wrong = rng.random(true.size) < flip
    labels[wrong] = (true[wrong] + rng.integers(1, k, wrong.sum())) % k
    return x, labels, wrong


def test_scores_follow_their_equations_and_rank_the_wrong_labels_first():
    x, labels, wrong = _noisy_blobs()
    probs = out_of_sample_probs(x, labels, n_folds=5, seed=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    scores = label_issue_scores(labels, probs)
    own = probs[np.arange(labels.size), labels]
    np.testing.assert_allclose(scores["self_confidence"], own)  # P̂[i, y_i]
    other = np.where(np.eye(probs.shape[1], dtype=bool)[labels], -np.inf, probs).max(axis=1)
    np.testing.assert_allclose(scores["normalized_margin"], (own - other + 1) / 2)  # margin in [-1, 1] -> [0, 1]
    auroc, ap = ranking_quality(scores["self_confidence"], wrong)
    assert auroc > 0.9 and ap > 0.7  # separable blobs: the wrong labels come first
    flagged = flag_label_issues(labels, probs)
    assert (flagged & wrong).sum() / flagged.sum() > 0.8


def test_out_of_sample_means_each_row_from_a_model_that_did_not_see_it():
    # one sample of a class far from the rest: in sample it would get its label; out of sample it cannot
    x, labels, _ = _noisy_blobs(seed=1, flip=0.0)
    x = np.vstack([x, x[0]])
    labels = np.append(labels, 3 if labels[0] != 3 else 2)
    probs = out_of_sample_probs(x, labels, n_folds=4, seed=0)
    assert probs[-1, labels[-1]] < 0.2


def test_ranking_quality_matches_direct_auroc_and_ap():
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.2])
    wrong = np.array([True, False, True, False, False, False])
    auroc, ap = ranking_quality(scores, wrong)
    # direct AUROC: P(score of a wrong label < score of a right one) over all 2 x 4 pairs
    pairs = [(w, r) for w in scores[wrong] for r in scores[~wrong]]
    assert auroc == pytest.approx(sum(w < r for w, r in pairs) / len(pairs))
    # direct AP: ascending scores 0.1 (wrong), 0.2, 0.35 (wrong): precision at the hits 1/1 and 2/3
    assert ap == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(ranking_quality(scores, np.zeros(6, bool))[0])
    with pytest.raises(ValueError, match="labels"):
        label_issue_scores(np.array([0, -1]), np.full((2, 2), 0.5))
