"""k-means (every backend) against scikit-learn on separable blobs; the backends against each other and
a direct Lloyd computation; the vectorised k-means++ against a direct one; dispatch, clamping, errors."""
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from cometa.core.lloyd import lloyd
from cometa.core.pseudo_labels import (
    ClusteringConfig,
    agglomerative,
    centroids,
    cluster,
    clustering_backend,
    kmeans,
    kmeans_plus_plus,
    l2_normalise,
    truth_labels,
)

BACKENDS = ("faiss", "sklearn", "torch")


def _blobs(n_centres=20, dim=32, per=100, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(n_centres), per)
    x = centres[truth] + 0.05 * rng.normal(size=(len(truth), dim))
    return x.astype(np.float32), truth


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_backend_recovers_separable_blobs(seed, backend):
    x, truth = _blobs()  # the k-means seed varies, the blobs do not
    ours = kmeans(x, 20, seed=seed, backend=backend)  # k-means++ seeding, like scikit-learn's
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    theirs = KMeans(20, n_init=4, random_state=seed).fit_predict(xn)
    assert normalized_mutual_info_score(truth, ours) >= 0.99
    assert normalized_mutual_info_score(truth, theirs) >= 0.99
    assert ours.dtype == np.int64 and ours.shape == truth.shape


def _overlapping(n=3000, dim=24, k=25, seed=0, spread=1.5):
    """Unit vectors around k random directions, noise ``spread`` times the signal: Lloyd still moves at 20."""
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((k, dim)))
    noise = rng.standard_normal((n, dim)) * spread / np.sqrt(dim)
    return l2_normalise(centres[rng.integers(k, size=n)] + noise)


def _direct_lloyd(x, init, niter):
    """Lloyd's iterations in float64, written out: the reference for the backends."""
    x, c = x.astype(np.float64), init.astype(np.float64)
    for _ in range(niter):
        labels = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        c = np.stack([x[labels == j].mean(0) for j in range(len(c))])  # no cluster empties on this data
    return ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1), c


def test_backends_reach_the_same_objective_from_the_same_start():
    x = _overlapping()
    init = kmeans_plus_plus(x, 25, seed=0)
    results = {b: lloyd(x, init, niter=20, backend=b) for b in BACKENDS}
    x64 = x.astype(np.float64)
    for b, r in results.items():
        direct = ((x64 - r.centroids[r.labels].astype(np.float64)) ** 2).sum()  # Σ ‖x − c_label‖²
        assert r.objective == pytest.approx(direct, rel=1e-5), b
        d = ((x64[:, None, :] - r.centroids[None].astype(np.float64)) ** 2).sum(-1)
        assert np.mean(r.labels == d.argmin(1)) > 0.999, b  # labels are the final centroids' nearest
        assert r.labels.dtype == np.int64 and r.centroids.shape == (25, x.shape[1])
    ref = results["faiss"].objective
    for b in ("sklearn", "torch"):
        assert abs(results[b].objective - ref) <= 1e-4 * ref, (b, results[b].objective, ref)
    assert results["torch"].iterations == results["faiss"].iterations == 20
    assert results["sklearn"].iterations <= 20  # tol=0: an earlier stop means the labels stopped changing
    assert results["faiss"].objective < ((x64 - init.astype(np.float64)[results["faiss"].labels]) ** 2).sum()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("niter", [1, 3])
def test_backends_run_exactly_niter_iterations(backend, niter):
    x = _overlapping(n=600, dim=8, k=6, seed=3)
    init = x[:6].copy()
    labels, centroids = _direct_lloyd(x, init, niter)
    r = lloyd(x, init, niter=niter, backend=backend)
    np.testing.assert_allclose(r.centroids, centroids, atol=1e-5)
    assert np.array_equal(r.labels, labels)


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


def test_gpu_true_without_a_gpu_and_unknown_backend_are_errors():
    x, _ = _blobs(n_centres=3, per=10)
    with pytest.raises(ValueError, match="gpu=True but no GPU"):
        kmeans(x, 3, seed=0, gpu=True)
    with pytest.raises(ValueError, match="backend must be"):
        kmeans(x, 3, seed=0, backend="blas")
    with pytest.raises(ValueError, match="k-means backend must be"):
        cluster(x, ClusteringConfig(k=3, backend="blas"), seed=0)


def test_clustering_backend_names_what_runs():
    rec = clustering_backend(ClusteringConfig(backend="sklearn"))
    assert (rec["method"], rec["backend"], rec["device"]) == ("kmeans", "sklearn", "cpu")
    auto = clustering_backend(ClusteringConfig())
    assert auto["backend"] in BACKENDS and "faiss" in auto["blas_cores"] and auto["cpu"]
    assert clustering_backend(ClusteringConfig(method="agglomerative"))["method"] == "agglomerative"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_kmeans_is_deterministic_for_a_seed(init, backend):
    x, _ = _blobs(seed=1)
    x = x + np.random.default_rng(5).normal(size=x.shape).astype(np.float32)  # overlapping: seed matters
    first = kmeans(x, 15, seed=3, init=init, backend=backend)
    assert np.array_equal(first, kmeans(x, 15, seed=3, init=init, backend=backend))
    assert not np.array_equal(first, kmeans(x, 15, seed=4, init=init, backend=backend))  # the seed is used


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
    labels = cluster(x, ClusteringConfig(method="agglomerative", k=5), seed=0)
    assert normalized_mutual_info_score(truth, labels) >= 0.99


# ------------------------------------------------------------------------------- cluster means
def test_centroids_are_normalised_means_of_normalised_rows():
    """Rows [3, 0], [0, 2] (cluster 0) and [1, 1] (cluster 1) normalise to e1, e2 and (e1 + e2)/√2:
    both clusters' means point along (1, 1)/√2; cluster 2 has no member and stays zero."""
    emb = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    c = centroids(emb, np.array([0, 0, 1]), 3)
    half = np.sqrt(0.5)
    np.testing.assert_allclose(c, [[half, half], [half, half], [0.0, 0.0]], atol=1e-7)
    assert c.dtype == np.float32 and c.shape == (3, 2)


def test_centroids_weigh_each_member_once_whatever_its_norm():
    emb = np.array([[100.0, 0.0], [0.0, 0.01], [0.0, 0.01]])  # one long row, two short ones
    (c,) = centroids(emb, np.array([0, 0, 0]), 1)
    np.testing.assert_allclose(c, np.array([1.0, 2.0]) / np.sqrt(5.0), atol=1e-7)  # (e1 + 2 e2) / √5


# --- labels of known noise (clustering.method: truth) ---------------------------------------------

def _speakers_sessions(n_ids=10, videos=6, per_video=5):
    """(speakers, sessions) of a corpus laid out like the embedded one: ids x videos x utterances."""
    speakers = np.repeat([f"id{i:02d}" for i in range(n_ids)], videos * per_video)
    sessions = np.array([f"{s}/v{j // per_video}" for s, j in zip(speakers, np.tile(np.arange(videos * per_video),
                                                                                     n_ids))])
    return speakers, sessions


def test_truth_labels_without_noise_are_the_identities():
    speakers, sessions = _speakers_sessions()
    got = truth_labels(speakers, sessions, noise=0.0, unit="video", seed=0)
    np.testing.assert_array_equal(got, np.repeat(np.arange(10), 30))


def test_truth_labels_by_utterance_move_exactly_the_fraction_each_to_another_identity():
    speakers, sessions = _speakers_sessions()
    true = np.repeat(np.arange(10), 30)
    got = truth_labels(speakers, sessions, noise=0.3, unit="utterance", seed=1)
    assert (got != true).sum() == 90  # round(0.3 x 300)
    assert got.min() >= 0 and got.max() <= 9
    np.testing.assert_array_equal(got, truth_labels(speakers, sessions, noise=0.3, unit="utterance", seed=1))
    assert not np.array_equal(got, truth_labels(speakers, sessions, noise=0.3, unit="utterance", seed=2))
    # two identities: a moved label is the other one
    two = truth_labels(np.repeat(["a", "b"], 50), np.repeat(["a/v", "b/v"], 50), noise=0.5, unit="utterance", seed=0)
    assert (two != np.repeat([0, 1], 50)).sum() == 50
    # the wrong label is uniform over the other identities: each offset 1..4 of 5, 10,000 draws
    big = np.repeat([f"s{i}" for i in range(5)], 4000)
    moved = truth_labels(big, big, noise=0.5, unit="utterance", seed=3)
    offset = (moved - np.repeat(np.arange(5), 4000)) % 5
    counts = np.bincount(offset[offset > 0], minlength=5)[1:]
    assert counts.sum() == 10_000 and np.abs(counts - 2500).max() < 4 * np.sqrt(10_000 * 0.25 * 0.75)


def test_truth_labels_by_video_move_whole_videos_as_one():
    """Checked with the session measures of cometa.core.label_quality (their own computation): every
    wrong label sits in a video that is wrong as a whole under one label, and every video is one label;
    scattered noise of the same rate almost never makes a whole video wrong."""
    from cometa.core.label_quality import session_coherence, wrong_whole_session_frac

    speakers, sessions = _speakers_sessions()
    true = np.repeat(np.arange(10), 30)
    got = truth_labels(speakers, sessions, noise=0.3, unit="video", seed=4)
    wrong = got != true
    assert 90 <= wrong.sum() < 95  # whole 5-utterance videos until 90 are reached
    assert wrong.sum() % 5 == 0
    assert session_coherence(sessions, got) == 1.0
    assert wrong_whole_session_frac(true, sessions, got) == 1.0
    scattered = truth_labels(speakers, sessions, noise=0.3, unit="utterance", seed=4)
    assert session_coherence(sessions, scattered) < 0.9
    assert wrong_whole_session_frac(true, sessions, scattered) < 0.05


def _at(degrees):
    return np.stack([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))], axis=1)


def test_truth_labels_audio_nearest_move_the_most_confused_to_the_nearest_identity():
    """Hand-checked in 2-D. Three identities of four utterances: a at 0, 0, 0, 25 degrees, b at 30, 30,
    30, 5, c at 120 (far from both). Centroids: a near 6, b near 24 degrees, so a's 25-degree
    utterance sounds like b and b's 5-degree one like a: at 2 of 12 those two swap, and nothing goes to
    the uniform draw's c. By video (two videos of two per identity, a's second at 25 and 35 degrees):
    that whole video goes to b."""
    speakers = np.repeat(["a", "b", "c"], 4)
    sessions = np.array([f"{s}/v{j // 2}" for s, j in zip(speakers, np.tile(np.arange(4), 3))])
    emb = _at([0, 0, 0, 25, 30, 30, 30, 5, 120, 120, 120, 120])
    got = truth_labels(speakers, sessions, noise=2 / 12, unit="utterance", seed=0, target="audio_nearest",
                       embeddings=emb)
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 1, 1, 1, 0, 2, 2, 2, 2])
    # the seed draws nothing: the most confused units and their destinations are fixed by the embeddings
    np.testing.assert_array_equal(got, truth_labels(speakers, sessions, noise=2 / 12, unit="utterance", seed=7,
                                                    target="audio_nearest", embeddings=3.0 * emb))
    by_video = truth_labels(speakers, sessions, noise=2 / 12, unit="video", seed=0, target="audio_nearest",
                            embeddings=_at([0, 0, 25, 35, 30, 30, 30, 30, 120, 120, 120, 120]))
    np.testing.assert_array_equal(by_video, [0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2])


def test_truth_labels_audio_nearest_against_a_direct_computation():
    """Random embeddings of 10 identities x 30: the moved utterances are exactly the round(0.2 x 300)
    of smallest margin (cosine to the own identity's mean direction minus the best other's), each at
    its best other identity, computed here one utterance and one identity at a time."""
    speakers, sessions = _speakers_sessions()
    true = np.repeat(np.arange(10), 30)
    rng = np.random.default_rng(5)
    emb = rng.normal(size=(300, 8)) + 1.5 * rng.normal(size=(10, 8))[true]
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    means = [unit[true == s].mean(axis=0) for s in range(10)]
    means = [m / np.linalg.norm(m) for m in means]
    margin, nearest = [], []
    for i in range(300):
        others = [(float(unit[i] @ means[s]), s) for s in range(10) if s != true[i]]
        best = max(others)
        margin.append(float(unit[i] @ means[true[i]]) - best[0])
        nearest.append(best[1])
    moved = set(np.argsort(margin)[:60].tolist())
    got = truth_labels(speakers, sessions, noise=0.2, unit="utterance", seed=0, target="audio_nearest",
                       embeddings=emb)
    assert set(np.flatnonzero(got != true).tolist()) == moved
    assert all(got[i] == nearest[i] for i in moved)


def test_truth_labels_refuse_what_they_cannot_do():
    speakers, sessions = _speakers_sessions()
    with pytest.raises(ValueError, match="truth_noise"):
        truth_labels(speakers, sessions, noise=1.0, unit="utterance", seed=0)
    with pytest.raises(ValueError, match="truth_noise_unit"):
        truth_labels(speakers, sessions, noise=0.1, unit="speaker", seed=0)
    with pytest.raises(ValueError, match="truth_noise_target"):
        truth_labels(speakers, sessions, noise=0.1, unit="video", seed=0, target="nearest")
    with pytest.raises(ValueError, match="audio_nearest needs the Stage I audio embeddings"):
        truth_labels(speakers, sessions, noise=0.1, unit="video", seed=0, target="audio_nearest")
    with pytest.raises(ValueError, match=r"embeddings must be \(300, D\)"):
        truth_labels(speakers, sessions, noise=0.1, unit="video", seed=0, target="audio_nearest",
                     embeddings=np.ones((299, 4)))
    with pytest.raises(ValueError, match="one identity per video"):
        truth_labels(np.array(["a", "b"] * 5), np.repeat(["v"], 10), noise=0.2, unit="video", seed=0)
    with pytest.raises(ValueError, match="2 identities"):
        truth_labels(np.repeat(["a"], 10), np.repeat(["a/v"], 10), noise=0.5, unit="utterance", seed=0)
    with pytest.raises(ValueError, match="clusters nothing"):
        cluster(np.eye(4, dtype=np.float32), ClusteringConfig(method="truth", k=2), seed=0)
