"""Label-quality measures against hand cases and scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from cometa.label_quality import cluster_sizes, flip_rate, inverse_purity, label_quality, n_clusters, nmi, ari, purity


def test_purity_and_inverse_purity_by_hand():
    true = [0, 0, 0, 1, 1, 2]
    pred = [5, 5, 7, 7, 7, 7]  # cluster 5: {0,0} pure; cluster 7: {0,1,1,2} majority 1 (2)
    assert purity(true, pred) == pytest.approx((2 + 2) / 6)
    # speaker 0 mostly in 5 (2), speaker 1 in 7 (2), speaker 2 in 7 (1)
    assert inverse_purity(true, pred) == pytest.approx((2 + 2 + 1) / 6)
    assert n_clusters(pred) == 2 and cluster_sizes(pred).tolist() == [4, 2]


@pytest.mark.parametrize("seed", range(5))
def test_nmi_ari_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 30, 500)
    pred = np.where(rng.random(500) < 0.6, true * 3 + 11, rng.integers(0, 40, 500))
    assert nmi(true, pred) == pytest.approx(normalized_mutual_info_score(true, pred), abs=1e-10)
    assert ari(true, pred) == pytest.approx(adjusted_rand_score(true, pred), abs=1e-10)


def test_negative_ids_are_excluded():
    true = np.array([0, 0, 1, 1, 2])
    pred = np.array([3, 3, 4, 4, -1])
    q = label_quality(true, pred)
    assert q["purity"] == 1.0 and q["nmi"] == pytest.approx(1.0) and q["ari"] == pytest.approx(1.0)
    assert q["n_clusters"] == 2
    assert set(q) == {"purity", "inverse_purity", "nmi", "ari", "n_clusters", "cluster_size_min",
                      "cluster_size_median", "cluster_size_max"}


def test_flip_rate_ignores_renaming_and_counts_changes():
    prev = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    assert flip_rate(prev, np.array([7, 7, 5, 5, 9, 9, 9, 1])) == 0.0
    cur = np.array([7, 7, 5, 9, 9, 9, 9, 1])  # one sample moved from cluster "1" to "2"
    assert flip_rate(prev, cur) == pytest.approx(1 / 8)
    # a split: cluster 2 becomes two clusters, the smaller part is unmatched -> flips
    assert flip_rate(np.array([0, 0, 0, 0]), np.array([1, 1, 1, 2])) == pytest.approx(1 / 4)
