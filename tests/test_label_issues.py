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
    """Random labels on noise with more dimensions than samples: a regression that has seen a sample
    memorises its label (checked here: in sample, P̂[i, y_i] is high), one that has not can only
    guess (about 1/K on average)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    k, n = 4, 60
    x, labels = rng.normal(size=(n, 200)), np.repeat(np.arange(k), n // k)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    in_sample = LogisticRegression(max_iter=200, C=10.0).fit(unit, labels).predict_proba(unit)
    assert in_sample[np.arange(n), labels].mean() > 0.6  # what an in-sample P̂ would give
    probs = out_of_sample_probs(x, labels, n_folds=5, seed=0)
    assert probs[np.arange(n), labels].mean() < 1.5 / k


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_clean_clusters_never_get_zero_probability_for_their_label(seed):
    """Clean, well-separated clusters of mixed sizes, some of two members, 5 folds: every member is
    scored by a model that saw a cluster-mate (stratified folds), so no clean label gets P̂ = 0 (with
    unstratified folds ~17 % did, issue 34)."""
    rng = np.random.default_rng(seed)
    sizes = [2] * 12 + [3] * 4 + [7, 12, 20]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centers = rng.normal(size=(len(sizes), 16))
    x = centers[labels] + 0.01 * rng.normal(size=(labels.size, 16))
    probs = out_of_sample_probs(x, labels, n_folds=5, seed=seed)
    own = probs[np.arange(labels.size), labels]
    assert (own > 0).all(), f"{(own == 0).sum()} clean labels got P̂ = 0"
    assert (probs.argmax(axis=1) == labels).mean() > 0.9  # and they are mostly recognised


def test_a_singleton_cluster_gets_zero_and_too_many_folds_are_refused():
    """The stated rule for clusters smaller than the folds: a singleton's label is never seen by the
    model that scores it (P̂ = 0); folds beyond the largest cluster cannot be stratified."""
    x, labels, _ = _noisy_blobs(seed=2, flip=0.0)
    x = np.vstack([x, np.full((1, x.shape[1]), 5.0)])
    labels = np.append(labels, labels.max() + 1)
    probs = out_of_sample_probs(x, labels, n_folds=5, seed=0)
    assert probs[-1, labels[-1]] == 0.0 and np.isclose(probs[-1].sum(), 1.0)
    with pytest.raises(ValueError, match="largest cluster"):
        out_of_sample_probs(x[:6], np.array([0, 0, 1, 1, 2, 2]), n_folds=3, seed=0)


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


def test_table4_says_what_round_one_audio_scores_measure():
    from cometa.results.strategy_tables import table4_markdown

    md = table4_markdown({"rows": [{"strategy": "cometa", "round": 1}], "n_seeds": 1}, {})
    assert "k-means cells of the very embeddings the regression is fitted on" in md
