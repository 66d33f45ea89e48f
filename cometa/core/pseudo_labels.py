"""Pseudo labels by clustering L2-normalised embeddings (paper Sec. 2.2): k-means (k-means++ seeding,
then Lloyd's iterations on faiss, scikit-learn or torch: :mod:`cometa.core.lloyd`) or agglomerative;
and the mean embedding of each cluster (:func:`centroids`).

:func:`truth_labels` is the controlled experiment beside them (``clustering.method: truth``): the
true identities with a known fraction moved elsewhere, utterance by utterance or video by video, to
random identities or to the ones Stage I's audio encoder confuses them with."""
from __future__ import annotations

import os

import numpy as np

from cometa.config.sections import NOISE_TARGETS, NOISE_UNITS, ClusteringConfig
from cometa.core.blas import SIMD, blas_cores, cpu_info, kmeans_backend, simd_level
from cometa.core.lloyd import lloyd

__all__ = ["ClusteringConfig", "l2_normalise", "kmeans_plus_plus", "random_init", "kmeans", "agglomerative",
           "clustering_backend", "cluster", "centroids", "truth_labels", "NOISE_UNITS",
           "NOISE_TARGETS"]



def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32 (k-means on them approximates cosine clustering)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _check(embeddings: np.ndarray, k: int) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"embeddings contain NaN or inf ({int((~np.isfinite(x)).any(axis=1).sum())} rows)")
    if not 1 <= k <= len(x):
        raise ValueError(f"k must be in [1, N={len(x)}], got {k}")
    return l2_normalise(x)


def kmeans_plus_plus(x: np.ndarray, k: int, *, seed: int, max_points: int | None = None) -> np.ndarray:
    """(k, D) initial centroids by greedy k-means++ seeding (Arthur & Vassilvitskii 2007).

    Each step draws 2 + ⌊ln k⌋ candidates with probability proportional to the squared distance to
    the nearest centre so far and keeps the one that lowers the potential most (the greedy variant
    scikit-learn uses: plain k-means++ often puts two centres in one speaker). On more than
    ``max_points`` rows (default max(16·k, 20000)) the seeding runs on a random subsample of that size.

    Each of the k steps reads every sampled point once: one (T, D) @ (D, m) matmul of the candidates
    against the points stored transposed (a wide, BLAS-friendly shape; the (m, D) @ (D, T) one ran
    at a few GFLOP/s), then three in-place passes over the (T, m) result. At k = 2000 on 200k points
    that is about a tenth of the 20 Lloyd iterations (it was as long as all of them, issue 18).
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    cap = max_points or max(16 * k, 20_000)
    pts = x[np.sort(rng.choice(n, cap, replace=False))] if n > cap else x
    pts = np.ascontiguousarray(pts, dtype=np.float32)  # (m, D)
    pts_t = np.ascontiguousarray(pts.T)  # (D, m)
    m = len(pts)
    sq = np.einsum("ij,ij->i", pts, pts)  # (m,) |p|²
    trials = 2 + int(np.log(k))
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    first = int(rng.integers(m))
    centres[0] = pts[first]
    d2 = np.maximum(sq - 2 * (pts @ pts[first]) + sq[first], 0)  # (m,) to the nearest centre
    cand2 = np.empty((trials, x.shape[1]), dtype=np.float32)  # (T, D) 2·candidates
    g = np.empty((trials, m), dtype=np.float32)
    for c in range(1, k):
        cum = np.cumsum(d2, dtype=np.float64)  # float64: its last entry is the total
        if cum[-1] > 0:
            cand = np.searchsorted(cum, rng.random(trials) * cum[-1], side="right").clip(0, m - 1)
        else:
            cand = rng.integers(m, size=trials)
        np.multiply(pts[cand], 2, out=cand2)
        np.matmul(cand2, pts_t, out=g)  # (T, m): 2 c·p
        g -= sq[cand][:, None]  # |p|² − |p − c|²
        np.maximum(g, sq - d2, out=g)  # |p|² − min(d2, |p − c|²): the new distance, mirrored
        best = int(np.argmax(g.sum(1)))  # the lowest potential Σ min(d2, |p − c|²)
        centres[c] = pts[cand[best]]
        d2 = np.maximum(sq - g[best], 0)
    return centres


def random_init(x: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """(k, D) initial centroids: k distinct rows of ``x`` drawn at random (faiss's own default)."""
    return np.ascontiguousarray(x[np.sort(np.random.default_rng(seed).choice(len(x), k, replace=False))],
                                dtype=np.float32)


def kmeans(embeddings: np.ndarray, k: int, *, seed: int, niter: int = 20, nredo: int = 1, init: str = "kmeans++",
           gpu: str | bool = "auto", backend: str = "auto") -> np.ndarray:
    """(N,) int64 cluster ids from k-means on the L2-normalised embeddings.

    Parameters
    ----------
    embeddings : (N, D) array; rows are L2-normalised here.
    k : clusters, 1 <= k <= N.
    seed : seeds the initial centroids (and faiss's split of empty clusters); the same seed gives
        the same labels on the same machine and backend (tested on CPU).
    niter : Lloyd iterations, all of them run (see :mod:`cometa.core.lloyd`).
    nredo : restarts, each from its own initial centroids; the lowest objective wins.
    init : "kmeans++" (:func:`kmeans_plus_plus`; faiss alone starts from k random points, which on
        speaker-like data often leaves two centres in one speaker and none in another) or "random"
        (:func:`random_init`).
    gpu : "auto" (a GPU when one is visible), True, False.
    backend : "auto" | "faiss" | "sklearn" | "torch" | "numpy". "auto" picks faiss unless its bundled
        OpenBLAS runs generic kernels on this CPU (then a chunked Lloyd on numpy's BLAS,
        :func:`cometa.core.lloyd.numpy_lloyd`), and faiss's GPU k-means or torch on CUDA on a GPU:
        :func:`cometa.core.blas.choose_kmeans_backend`.
    """
    if init not in ("kmeans++", "random"):
        raise ValueError(f"init must be kmeans++|random, got {init!r}")
    if nredo < 1:
        raise ValueError(f"nredo must be >= 1, got {nredo}")
    x = _check(embeddings, k)
    choice = kmeans_backend(backend=backend, gpu=gpu)
    best = None
    for r in range(nredo):
        s = seed + 7919 * r
        start = kmeans_plus_plus(x, k, seed=s) if init == "kmeans++" else random_init(x, k, seed=s)
        result = lloyd(x, start, niter=niter, backend=choice.backend, device=choice.device, seed=s)
        if best is None or result.objective < best.objective:
            best = result
    assert best is not None  # (nredo >= 1)
    return best.labels


def agglomerative(embeddings: np.ndarray, k: int) -> np.ndarray:
    """(N,) cluster ids from agglomerative clustering (average linkage on cosine distance).

    Average linkage on cosine distance (Ward would need Euclidean distance; on the unit vectors
    both follow the angle between embeddings). O(N²) memory: meant for corpora up to a few tens of
    thousands of utterances.
    """
    from sklearn.cluster import AgglomerativeClustering  # scikit-learn loads in seconds: only when used

    x = _check(embeddings, k)
    if k == 1:  # scikit-learn refuses a single sample
        return np.zeros(len(x), dtype=np.int64)
    return AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(x).astype(np.int64)


def clustering_backend(cfg: ClusteringConfig, *, gpu: str | bool = "auto") -> dict:
    """Where :func:`cluster` runs in this process, as plain data for the run store: the method, the
    k-means backend, device and reason (:func:`cometa.core.blas.kmeans_backend`), the CPU, each library's
    BLAS core and ``OPENBLAS_CORETYPE``."""
    cpu = cpu_info()
    out = {"method": cfg.method, "cpu": cpu.model, "simd": SIMD[simd_level(cpu.flags)], "blas_cores": blas_cores(),
           "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    if cfg.method == "kmeans":
        choice = kmeans_backend(backend=cfg.backend, gpu=gpu)
        out.update(backend=choice.backend, device=choice.device, reason=choice.reason)
    elif cfg.method == "truth":
        out.update(backend="none", device="cpu", reason=f"labels of known noise: the true identities, "
                   f"{cfg.truth_noise:g} moved by {cfg.truth_noise_unit} to {cfg.truth_noise_target} "
                   "(a controlled experiment; nothing clustered)")
    else:
        out.update(backend="sklearn", device="cpu", reason=f"{cfg.method} clustering runs on scikit-learn")
    return out


def cluster(embeddings: np.ndarray, cfg: ClusteringConfig, *, seed: int) -> np.ndarray:
    """Pseudo labels by the configured method; k is clamped to N (a tiny corpus with k > N)."""
    k = min(cfg.k, len(embeddings))
    if cfg.method == "kmeans":
        return kmeans(embeddings, k, seed=seed, niter=cfg.niter, nredo=cfg.nredo, init=cfg.init, backend=cfg.backend)
    if cfg.method == "agglomerative":
        return agglomerative(embeddings, k)
    if cfg.method == "truth":
        raise ValueError("clustering.method: truth clusters nothing: its labels come from truth_labels "
                         "(cometa.core.ensemble.make_round_labels)")
    raise ValueError(f"clustering.method must be kmeans|agglomerative|truth, got {cfg.method!r}")


def truth_labels(speakers, sessions, *, noise: float, unit: str, seed: int, target: str = "uniform",
                 embeddings: np.ndarray | None = None) -> np.ndarray:
    """(N,) int64 labels of known noise: each sample's true identity (0..S-1, in sorted order of
    ``speakers``), then about ``noise`` × N samples moved to another identity.

    ``unit``: what moves as one.

    - ``"utterance"``: exactly ``round(noise × N)`` samples, each moved on its own (scattered noise);
    - ``"video"``: whole sessions (``sessions``: each sample's video, one identity per video) until
      they hold ``round(noise × N)`` samples or more, each moved as one to one identity: the noise
      the demo's k-means makes (README, "Labels of known noise").

    ``target``: which units move, and where to.

    - ``"uniform"``: units drawn at random (``seed``), each to ``(identity + d) mod S`` with d uniform
      in 1..S-1, so a wrong label is uniform over the other identities (the symmetric noise of the
      co-teaching papers);
    - ``"audio_nearest"``: the units ``embeddings`` (N, D; Stage I's audio embeddings) confuse most,
      each to the identity it is nearest to. A unit's embedding is the L2-normalised mean of its
      samples' L2-normalised rows, an identity's is its :func:`centroids` row; units are taken in
      order of margin (cosine to their own identity minus cosine to the nearest other, smallest
      first, ties by index) and each goes to that nearest other identity: the kind of error k-means
      makes on these embeddings, at a known rate, with every other label true. ``seed`` is unused.
    """
    speakers, sessions = np.asarray(speakers), np.asarray(sessions)
    if len(speakers) != len(sessions):
        raise ValueError(f"speakers and sessions differ in length: {len(speakers)} and {len(sessions)}")
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"clustering.truth_noise must be in [0, 1), got {noise!r}")
    if unit not in NOISE_UNITS:
        raise ValueError(f"clustering.truth_noise_unit must be one of {'|'.join(NOISE_UNITS)}, got {unit!r}")
    if target not in NOISE_TARGETS:
        raise ValueError(f"clustering.truth_noise_target must be one of {'|'.join(NOISE_TARGETS)}, got {target!r}")
    names, labels = np.unique(speakers, return_inverse=True)
    labels = labels.astype(np.int64)
    n_ids, n_target = len(names), int(round(noise * len(labels)))
    if n_target == 0:
        return labels
    if n_ids < 2:
        raise ValueError("clustering.truth_noise > 0 needs at least 2 identities to move labels between")
    # the units: each sample on its own, or each video as one
    if unit == "utterance":
        unit_of = np.arange(len(labels))
    else:
        unit_of = np.unique(sessions, return_inverse=True)[1]
    n_units = int(unit_of.max()) + 1
    unit_identity = np.zeros(n_units, dtype=np.int64)
    unit_identity[unit_of] = labels
    if not np.array_equal(unit_identity[unit_of], labels):
        raise ValueError("clustering.truth_noise_unit: video needs one identity per video; some video has several")
    sizes = np.bincount(unit_of, minlength=n_units)
    if target == "uniform":
        chosen, destination = _uniform_moves(unit_identity, sizes, n_target, n_ids, by_unit=unit == "video", seed=seed)
    else:
        if embeddings is None:
            raise ValueError("clustering.truth_noise_target: audio_nearest needs the Stage I audio embeddings")
        chosen, destination = _nearest_moves(embeddings, labels, unit_of, unit_identity, sizes, n_target,
                                             by_unit=unit == "video")
    moved = unit_identity.copy()
    moved[chosen] = destination
    return moved[unit_of]


def _first_reaching(order: np.ndarray, sizes: np.ndarray, n_target: int) -> np.ndarray:
    """The shortest prefix of ``order`` (unit ids) whose units hold ``n_target`` samples or more."""
    return order[: int(np.searchsorted(np.cumsum(sizes[order]), n_target)) + 1]


def _uniform_moves(unit_identity, sizes, n_target: int, n_ids: int, *, by_unit: bool, seed: int):
    """:func:`truth_labels`' ``uniform`` target: (units moved, their new identities)."""
    rng = np.random.default_rng(seed)
    if not by_unit:  # single samples: exactly n_target, drawn without replacement
        chosen = rng.choice(len(unit_identity), size=n_target, replace=False)
    else:
        chosen = _first_reaching(rng.permutation(len(unit_identity)), sizes, n_target)
    return chosen, (unit_identity[chosen] + rng.integers(1, n_ids, size=len(chosen))) % n_ids


def _nearest_moves(embeddings, labels, unit_of, unit_identity, sizes, n_target: int, *, by_unit: bool):
    """:func:`truth_labels`' ``audio_nearest`` target: (units moved, their new identities)."""
    x = l2_normalise(embeddings)
    if len(x) != len(labels) or not np.all(np.isfinite(x)):
        raise ValueError(f"truth_noise_target audio_nearest: embeddings must be ({len(labels)}, D) and finite, "
                         f"got shape {x.shape}")
    n_units = len(unit_identity)
    units = np.zeros((n_units, x.shape[1]), dtype=np.float64)
    np.add.at(units, unit_of, x)
    sim = l2_normalise(units) @ centroids(x, labels, int(labels.max()) + 1).T  # (units, identities)
    mine = sim[np.arange(n_units), unit_identity]
    sim[np.arange(n_units), unit_identity] = -np.inf
    nearest = np.argmax(sim, axis=1)
    order = np.argsort(mine - sim[np.arange(n_units), nearest], kind="stable")
    chosen = _first_reaching(order, sizes, n_target) if by_unit else order[:n_target]
    return chosen, nearest[chosen]


def centroids(embeddings: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, D) float32: the L2-normalised mean of the L2-normalised ``embeddings`` (N, D) of each
    cluster 0..k-1 of ``labels`` (N,); a cluster without members gets a zero row. (A new round's
    AAM-softmax heads start from these rows, :func:`cometa.train.stage2.start_heads`.)"""
    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    c = np.zeros((k, e.shape[1]), dtype=np.float64)
    np.add.at(c, labels, e)
    return (c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)).astype(np.float32)
