"""Lloyd's iterations of the pseudo-label k-means (paper Sec. 2.2) on three backends that agree.

From the same initial centroids each backend runs exactly ``niter`` iterations (assign every point
to its nearest centroid, move each centroid to the mean of its points) and then assigns once more
with the final centroids, so that labels and centroids match:

- ``faiss``: ``faiss.Kmeans`` on faiss's BLAS (CPU) or its GPU build;
- ``sklearn``: scikit-learn's Lloyd with ``tol=0`` on scipy's BLAS (it stops before ``niter`` only
  when the labels no longer change, where further iterations would change nothing);
- ``torch``: a plain loop whose assignment step is a chunked matmul on torch's own BLAS (MKL on x86)
  or on CUDA;
- ``numpy``: the same loop on numpy's BLAS, written as scikit-learn's Lloyd is: the points in chunks of
  a few hundred rows, each chunk's (rows, k) scores computed and reduced to the nearest centroid while
  they are still in the core's cache, the chunks spread over a thread pool whose threads each run a
  single-threaded matmul. This is the fallback when faiss's bundled OpenBLAS runs generic kernels
  (:mod:`cometa.core.blas`): numpy's own OpenBLAS recognises the CPU.

Empty clusters: faiss splits the largest cluster; scikit-learn and the torch and numpy loops move an
empty centroid onto the point farthest from its centroid. Which backend runs is decided in
:mod:`cometa.core.blas`; this module only runs them. Unlike the rest of the pseudo-label code it holds
device code (the torch loop on CUDA).
"""
from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["LloydResult", "lloyd", "faiss_lloyd", "sklearn_lloyd", "torch_lloyd", "numpy_lloyd"]

CHUNK_ROWS = 256  # points per assignment chunk: (256, k) float32 scores stay in L2 for k up to ~2000


@dataclass
class LloydResult:
    """``labels`` (N,) int64, ``centroids`` (k, D) float32, ``objective`` = Σ_i ‖x_i − c_{labels_i}‖²
    (float, over all N points), ``iterations`` run (≤ niter only for scikit-learn's converged stop)."""

    labels: np.ndarray
    centroids: np.ndarray
    objective: float
    iterations: int


def lloyd(x: np.ndarray, init: np.ndarray, *, niter: int, backend: str, device: str = "cpu",
          seed: int = 0) -> LloydResult:
    """``niter`` Lloyd iterations of ``x`` (N, D) float32 from ``init`` (k, D) on ``backend``.

    ``device`` is "cpu" or "cuda" (faiss and torch); ``seed`` feeds faiss's split of empty clusters.
    """
    if niter < 1:
        raise ValueError(f"niter must be >= 1, got {niter}")
    if init.ndim != 2 or init.shape[1] != x.shape[1] or not 1 <= len(init) <= len(x):
        raise ValueError(f"init must be (k, D={x.shape[1]}) with 1 <= k <= N={len(x)}, got {init.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    init = np.ascontiguousarray(init, dtype=np.float32)
    if backend == "faiss":
        return faiss_lloyd(x, init, niter=niter, seed=seed, gpu=device == "cuda")
    if backend == "sklearn":
        if device != "cpu":
            raise ValueError(f"the sklearn backend runs on the CPU only, got device {device!r}")
        return sklearn_lloyd(x, init, niter=niter)
    if backend == "torch":
        return torch_lloyd(x, init, niter=niter, device=device)
    if backend == "numpy":
        if device != "cpu":
            raise ValueError(f"the numpy backend runs on the CPU only, got device {device!r}")
        return numpy_lloyd(x, init, niter=niter)
    raise ValueError(f"k-means backend must be faiss|sklearn|torch|numpy, got {backend!r}")


def faiss_lloyd(x: np.ndarray, init: np.ndarray, *, niter: int, seed: int = 0, gpu: bool = False) -> LloydResult:
    """faiss k-means from ``init``; every point takes part (faiss would otherwise subsample to 256
    points per centroid)."""
    # each backend's library is loaded when that backend runs (faiss, scikit-learn, torch: seconds each)
    import faiss

    k = len(init)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=1, seed=int(seed) % (2**31), verbose=False, gpu=gpu,
                      max_points_per_centroid=max(256, -(-len(x) // k)), min_points_per_centroid=1)
    km.train(x, init_centroids=init)
    dist, assign = km.index.search(x, 1)  # (N, 1) squared distances and ids
    return LloydResult(assign.ravel().astype(np.int64), np.asarray(km.centroids, dtype=np.float32),
                       float(dist.sum(dtype=np.float64)), niter)


def sklearn_lloyd(x: np.ndarray, init: np.ndarray, *, niter: int) -> LloydResult:
    """scikit-learn's Lloyd k-means from ``init`` with ``tol=0``."""
    # loaded when this backend runs (see faiss_lloyd); torch only for its thread budget
    import torch
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    km = KMeans(len(init), init=init, n_init=1, max_iter=niter, tol=0.0, algorithm="lloyd", random_state=0)
    # the process's thread budget, which cometa.pipeline.steps.set_threads gives torch and faiss
    with warnings.catch_warnings(), threadpool_limits(limits=torch.get_num_threads()):
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k: the labels say so
        km.fit(x)
    return LloydResult(km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32), float(km.inertia_),
                       int(km.n_iter_))


def torch_lloyd(x: np.ndarray, init: np.ndarray, *, niter: int, device: str = "cpu") -> LloydResult:
    """Exactly ``niter`` Lloyd iterations in torch on ``device``: the assignment is a chunked
    ``|c|² − 2 x·cᵀ`` matmul (torch's BLAS), the update an ``index_add_`` of the points."""
    import torch  # loaded when this backend runs (see faiss_lloyd)

    dev = torch.device(device)
    xt = torch.from_numpy(x).to(dev)  # (N, D)
    c = torch.from_numpy(init).to(dev).clone()  # (k, D)
    k = len(c)
    for _ in range(niter):
        labels, d2 = _assign(xt, c)  # (N,), (N,)
        sums = torch.zeros_like(c).index_add_(0, labels, xt)  # (k, D)
        counts = torch.bincount(labels, minlength=k).to(c.dtype)  # (k,)
        empty = torch.nonzero(counts == 0).ravel()
        if len(empty):  # as scikit-learn: the farthest points become the empty clusters' centroids
            far = torch.topk(d2, len(empty)).indices
            sums.index_add_(0, labels[far], -xt[far])
            counts.index_add_(0, labels[far], -torch.ones_like(far, dtype=c.dtype))
            sums[empty], counts[empty] = xt[far], 1.0
        c = sums / counts.clamp_min(1.0)[:, None]
    labels, d2 = _assign(xt, c)
    return LloydResult(labels.cpu().numpy().astype(np.int64), c.cpu().numpy().astype(np.float32),
                       float(d2.sum(dtype=torch.float64)), niter)


def _assign(xt, c, *, chunk_elems: int = 1 << 24):
    """(N,) int64 nearest centroid and (N,) squared distance, in chunks of ``chunk_elems`` distances."""
    import torch  # loaded when the torch backend runs (see faiss_lloyd)

    n, k = len(xt), len(c)
    rows = max(256, chunk_elems // k) * (8 if xt.is_cuda else 1)
    csq = (c * c).sum(1)  # (k,)
    labels = torch.empty(n, dtype=torch.int64, device=xt.device)
    d2 = torch.empty(n, dtype=xt.dtype, device=xt.device)
    for s in range(0, n, rows):
        xb = xt[s:s + rows]  # (B, D)
        dist = torch.addmm(csq, xb, c.T, beta=1, alpha=-2)  # (B, k): |c|² − 2 x·c
        mn, labels[s:s + rows] = dist.min(1)
        d2[s:s + rows] = (mn + (xb * xb).sum(1)).clamp_min_(0)
    return labels, d2


def numpy_lloyd(x: np.ndarray, init: np.ndarray, *, niter: int, threads: int | None = None,
                chunk_rows: int = CHUNK_ROWS) -> LloydResult:
    """Exactly ``niter`` Lloyd iterations on numpy's BLAS (see the module docstring).

    ``threads``: the thread pool's size (default: the process's thread budget, ``torch.get_num_threads()``,
    which ``cometa.pipeline.steps.set_threads`` gives torch and faiss); every BLAS call inside runs on
    one thread, so that the pool's threads do not each start more.
    """
    # scipy.sparse and threadpoolctl: only this backend needs them (loaded when it runs)
    import scipy.sparse
    from threadpoolctl import threadpool_limits

    if threads is None:
        import torch  # only for the thread budget, as sklearn_lloyd

        threads = torch.get_num_threads()
    n, k = len(x), len(init)
    xsq = np.einsum("ij,ij->i", x, x)  # (N,) |x|²
    rows = np.arange(n)
    c = init.copy()
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max(1, threads)) as pool:
        for _ in range(niter):
            labels, d2 = _assign_numpy(x, xsq, c, pool, chunk_rows)  # (N,), (N,)
            # (k, N) one-hot as a sparse matrix: the sums of each cluster's points in one product
            member = scipy.sparse.csr_matrix((np.ones(n, dtype=np.float32), (labels, rows)), shape=(k, n))
            sums = np.asarray(member @ x, dtype=np.float32)  # (k, D)
            counts = np.bincount(labels, minlength=k).astype(np.float32)  # (k,)
            empty = np.flatnonzero(counts == 0)
            if len(empty):  # as scikit-learn: the farthest points become the empty clusters' centroids
                far = np.argsort(d2, kind="stable")[::-1][:len(empty)]
                np.subtract.at(sums, labels[far], x[far])
                np.subtract.at(counts, labels[far], 1.0)
                sums[empty], counts[empty] = x[far], 1.0
            c = sums / np.maximum(counts, 1.0)[:, None]
        labels, d2 = _assign_numpy(x, xsq, c, pool, chunk_rows)
    return LloydResult(labels, c.astype(np.float32), float(d2.sum(dtype=np.float64)), niter)


def _assign_numpy(x: np.ndarray, xsq: np.ndarray, c: np.ndarray, pool: ThreadPoolExecutor,
                  chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) int64 nearest centroid and (N,) float32 squared distance, chunk by chunk on ``pool``.

    The nearest centroid maximises x·c − |c|²/2 (|x − c|² = |x|² − 2 (x·c − |c|²/2)): one matmul
    into a per-thread (rows, k) buffer, one subtraction, one argmax, all while the chunk is in cache.
    """
    n, k = len(x), len(c)
    ct = np.ascontiguousarray(c.T, dtype=np.float32)  # (D, k)
    half_csq = (0.5 * np.einsum("ij,ij->i", c, c)).astype(np.float32)  # (k,)
    labels = np.empty(n, dtype=np.int64)
    d2 = np.empty(n, dtype=np.float32)
    local = threading.local()

    def work(start: int) -> None:
        xb = x[start:start + chunk_rows]  # (b, D)
        b = len(xb)
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty((chunk_rows, k), dtype=np.float32)
        scores = np.matmul(xb, ct, out=buf[:b])  # (b, k) x·c
        scores -= half_csq
        best = scores.argmax(axis=1)  # (b,)
        labels[start:start + b] = best
        d2[start:start + b] = np.maximum(xsq[start:start + b] - 2.0 * scores[np.arange(b), best], 0.0)

    for _ in pool.map(work, range(0, n, chunk_rows)):
        pass  # (re-raises a worker's exception)
    return labels, d2
