"""faiss k-means against scikit-learn on separable blobs; dispatch, clamping and errors."""
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from cometa.pseudo_labels import ClusteringConfig, agglomerative, cluster, kmeans, kmeans_plus_plus, l2_normalise


def _blobs(n_centres=20, dim=32, per=100, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(n_centres), per)
    x = centres[truth] + 0.05 * rng.normal(size=(len(truth), dim))
    return x.astype(np.float32), truth


def test_faiss_and_sklearn_both_recover_blobs():
    x, truth = _blobs()
    ours = kmeans(x, 20, seed=0)  # k-means++ seeding, like scikit-learn's
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    theirs = KMeans(20, n_init=4, random_state=0).fit_predict(xn)
    assert normalized_mutual_info_score(truth, ours) >= 0.99
    assert normalized_mutual_info_score(truth, theirs) >= 0.99
    assert ours.dtype == np.int64 and ours.shape == truth.shape


def _overlapping(n=3000, dim=24, k=25, seed=0, spread=1.5):
    """Unit vectors around k random directions, noise ``spread`` times the signal: Lloyd still moves at 20."""
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((k, dim)))
    noise = rng.standard_normal((n, dim)) * spread / np.sqrt(dim)
    return l2_normalise(centres[rng.integers(k, size=n)] + noise)


def test_kmeans_plus_plus_matches_a_direct_greedy_seeding():
    x = _overlapping(n=400, dim=8, k=12, seed=4)
    k, seed = 12, 7
    got = kmeans_plus_plus(x, k, seed=seed)
    # the same random draws, the greedy rule written out in float64 (n <= 20000: no subsample)
    rng = np.random.default_rng(seed)
    rng.choice(len(x), 20_000, replace=False) if len(x) > 20_000 else None
    x64 = x.astype(np.float64)
    centres = [x64[int(rng.integers(len(x)))]]
    d2 = ((x64 - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        cand = np.searchsorted(np.cumsum(d2), rng.random(2 + int(np.log(k))) * d2.sum(), side="right")
        pots = [np.minimum(d2, ((x64 - x64[c]) ** 2).sum(1)).sum() for c in cand]
        best = cand[int(np.argmin(pots))]
        centres.append(x64[best])
        d2 = np.minimum(d2, ((x64 - x64[best]) ** 2).sum(1))
    np.testing.assert_array_equal(got, np.array(centres, dtype=np.float32))
    assert len({tuple(c) for c in got}) == k  # never the same point twice


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_kmeans_is_deterministic_for_a_seed(init):
    x, _ = _blobs(seed=1)
    x = x + np.random.default_rng(5).normal(size=x.shape).astype(np.float32)  # overlapping: seed matters
    first = kmeans(x, 15, seed=3, init=init)
    assert np.array_equal(first, kmeans(x, 15, seed=3, init=init))
    assert not np.array_equal(first, kmeans(x, 15, seed=4, init=init))  # the seed is used


def test_errors_name_the_problem():
    x, _ = _blobs(n_centres=2, per=5)
    with pytest.raises(ValueError, match="k must be"):
        kmeans(x, 11, seed=0)
    with pytest.raises(ValueError, match="k must be"):
        kmeans(x, 0, seed=0)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        kmeans(x[0], 2, seed=0)
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kmeans(bad, 2, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        agglomerative(bad, 2)
    with pytest.raises(ValueError, match="method"):
        cluster(x, ClusteringConfig(method="spectral"), seed=0)


def test_agglomerative_and_dispatch_with_clamp():
    x, truth = _blobs(n_centres=5, per=20)
    assert normalized_mutual_info_score(truth, agglomerative(x, 5)) >= 0.99
    labels = cluster(x[:7], ClusteringConfig(k=50), seed=0)  # k clamped to N = 7: one point each
    assert sorted(labels.tolist()) == list(range(7))
    assert cluster(x[:1], ClusteringConfig(method="agglomerative", k=50), seed=0).tolist() == [0]
    assert normalized_mutual_info_score(truth, cluster(x, ClusteringConfig(k=5), seed=0)) >= 0.99
    assert normalized_mutual_info_score(truth, cluster(x, ClusteringConfig(method="agglomerative", k=5), seed=0)) >= 0.99
