"""faiss k-means against scikit-learn on separable blobs; dispatch, clamping and errors."""
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from cometa.pseudo_labels import ClusteringConfig, agglomerative, cluster, kmeans


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
