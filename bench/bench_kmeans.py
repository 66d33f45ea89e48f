"""Benchmark: faiss k-means against scikit-learn's Lloyd k-means, and faiss's rate against matmul.

The pseudo-label step (paper Sec. 2.2, :func:`cometa.pseudo_labels.kmeans`) at a tenth of the
paper's scale: 200 000 L2-normalised 192-D embeddings drawn from a Gaussian mixture, k = 2000,
20 Lloyd iterations. Both libraries start from the same k-means++ centroids (cometa's seeding,
timed on its own), so only the iterations are compared; faiss's own ``train`` is used with the
settings of ``cometa.pseudo_labels._faiss_kmeans``.

FLOPs: each iteration's assignment is a (N, D) x (D, k) distance matmul, 2·N·k·D FLOPs; the
centroid update (N·D) is negligible. faiss's GFLOP/s is set against the best of several numpy
float32 matmuls of a similar shape on the same machine, threads as they are.

scikit-learn is first timed on a tenth of the points; when that predicts more than
``sklearn_budget_s`` for all of them, the full figure is the subset's, scaled linearly in N (the
output says so). Run: ``python bench/bench_kmeans.py``.
"""
from __future__ import annotations

import os
import time

import numpy as np

from cometa.pseudo_labels import kmeans_plus_plus, l2_normalise


def mixture(n: int, dim: int, n_sources: int, *, seed: int, spread: float = 3.0) -> np.ndarray:
    """(n, dim) float32 unit vectors: ``n_sources`` random directions plus isotropic noise.

    ``spread`` is the noise norm relative to the source norm. At 3 the sources overlap heavily and
    Lloyd is still moving after 20 iterations; with well-separated sources scikit-learn stops
    after a handful (unchanged labels), which would compare unequal amounts of work.
    """
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((n_sources, dim), dtype=np.float32))
    which = rng.integers(n_sources, size=n)
    noise = rng.standard_normal((n, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
    return l2_normalise(centres[which] + noise)


def matmul_gflops(rows: int, dim: int, k: int, *, repeats: int = 5, seed: int = 0) -> float:
    """Best-of-``repeats`` GFLOP/s of a numpy float32 (rows, dim) @ (dim, k) matmul."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, dim), dtype=np.float32)
    b = rng.standard_normal((dim, k), dtype=np.float32)
    a @ b  # warm-up: thread pool start, page faults of the output
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * rows * dim * k / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _objective(x: np.ndarray, centroids: np.ndarray) -> float:
    """Mean squared distance of each point to its nearest centroid (one definition for both)."""
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return float(index.search(x, 1)[0].mean())


def faiss_lloyd(x: np.ndarray, init: np.ndarray, *, niter: int, seed: int) -> tuple[float, np.ndarray]:
    """(seconds, (k, D) centroids) of faiss k-means from ``init``, exactly ``niter`` iterations."""
    import faiss

    k = len(init)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False, gpu=False,
                      max_points_per_centroid=max(256, -(-len(x) // k)), min_points_per_centroid=1)
    t0 = time.perf_counter()
    km.train(x, init_centroids=init)
    return time.perf_counter() - t0, km.centroids


def sklearn_lloyd(x: np.ndarray, init: np.ndarray, *, niter: int) -> tuple[float, int, np.ndarray]:
    """(seconds, iterations run, centroids) of scikit-learn's Lloyd k-means from ``init``.

    ``tol=0`` so that only identical labels in two successive iterations stop it before ``niter``.
    """
    from sklearn.cluster import KMeans

    km = KMeans(len(init), init=init, n_init=1, max_iter=niter, tol=0.0, algorithm="lloyd")
    t0 = time.perf_counter()
    km.fit(x)
    return time.perf_counter() - t0, int(km.n_iter_), km.cluster_centers_


def main(*, n: int = 200_000, dim: int = 192, k: int = 2000, niter: int = 20, seed: int = 0,
         seeding: str = "kmeans++", sklearn_budget_s: float = 180.0, subset_fraction: float = 0.1,
         quick: bool = False) -> dict:
    """Run the comparison; print a summary and return the figures (seconds, GFLOP/s, ratios).

    ``seeding="random"`` starts both from k random points instead of cometa's k-means++ (which
    at the default size takes minutes on two cores); the iterations cost the same either way.
    ``quick=True`` (the suite's quick mode) shrinks the problem to 20 000 points, k = 200.
    """
    import faiss
    import sklearn

    if quick:
        n, k = min(n, 20_000), min(k, 200)
    if seeding not in ("kmeans++", "random"):
        raise ValueError(f"seeding must be kmeans++|random, got {seeding!r}")
    load_before = os.getloadavg()[0]
    x = mixture(n, dim, k, seed=seed)  # (n, dim)
    t0 = time.perf_counter()
    if seeding == "kmeans++":
        init = kmeans_plus_plus(x, k, seed=seed)  # (k, dim), the seeding cometa.kmeans uses
    else:
        init = x[np.random.default_rng(seed).choice(n, k, replace=False)].copy()
    seeding_s = time.perf_counter() - t0

    faiss_s, faiss_centroids = faiss_lloyd(x, init, niter=niter, seed=seed)
    flops = 2.0 * n * k * dim * niter
    faiss_gflops = flops / faiss_s / 1e9
    matmul = matmul_gflops(min(n, 16_384), dim, k, seed=seed)

    # scikit-learn: a subset first, to decide whether the full run fits the budget
    n_sub = max(k, int(n * subset_fraction))
    sub = x[np.random.default_rng(seed + 1).choice(n, n_sub, replace=False)]
    sub_s, sub_iter, _ = sklearn_lloyd(sub, init, niter=niter)
    predicted_s = sub_s / sub_iter * niter * n / n_sub
    if predicted_s <= sklearn_budget_s:
        sk_s, sk_iter, sk_centroids = sklearn_lloyd(x, init, niter=niter)
        sklearn_s = sk_s / sk_iter * niter  # per-iteration time x niter, in case it stopped early
        sklearn_how = f"measured on all {n} points ({sk_iter} iterations)"
        objective_sklearn = _objective(x, sk_centroids)
    else:
        sklearn_s = predicted_s
        sklearn_how = (f"extrapolated linearly in N from {n_sub} points ({sub_iter} iterations, "
                       f"{sub_s:.1f} s): a full run was predicted over the {sklearn_budget_s:.0f} s budget")
        objective_sklearn = None

    result = {
        "n": n, "dim": dim, "k": k, "niter": niter,
        "threads": faiss.omp_get_max_threads(), "cpus": os.cpu_count(),
        # spinning OpenMP threads (the default policy) lose badly when other jobs share the cores
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "faiss_version": faiss.__version__, "sklearn_version": sklearn.__version__,
        "seeding": seeding, "seeding_s": round(seeding_s, 2),
        "faiss_s": round(faiss_s, 2),
        "sklearn_s": round(sklearn_s, 2),
        "sklearn_how": sklearn_how,
        "sklearn_subset_s": round(sub_s, 2), "sklearn_subset_n": n_sub, "sklearn_subset_iter": sub_iter,
        "ratio_sklearn_over_faiss": round(sklearn_s / faiss_s, 2),
        "faiss_gflops": round(faiss_gflops, 1),
        "matmul_gflops": round(matmul, 1),
        "faiss_fraction_of_matmul": round(faiss_gflops / matmul, 3),
        "objective_init": round(_objective(x, init), 5),
        "objective_faiss": round(_objective(x, faiss_centroids), 5),
        "objective_sklearn": None if objective_sklearn is None else round(objective_sklearn, 5),
    }
    result["headline"] = (f"k-means {n}x{dim} k={k} {niter} it: faiss {result['faiss_s']} s, sklearn "
                          f"{result['sklearn_s']} s (x{result['ratio_sklearn_over_faiss']}), faiss "
                          f"{result['faiss_gflops']} GFLOP/s vs matmul {result['matmul_gflops']}")
    print(f"k-means {n} x {dim}, k = {k}, {niter} iterations, {result['threads']} threads, "
          f"OMP_WAIT_POLICY {result['omp_wait_policy']} ({seeding} seeding: {result['seeding_s']} s, not below)")
    print(f"  faiss   {result['faiss_s']:8.2f} s  {result['faiss_gflops']:.1f} GFLOP/s "
          f"= {100 * result['faiss_fraction_of_matmul']:.0f} % of numpy matmul ({result['matmul_gflops']:.1f} GFLOP/s)")
    print(f"  sklearn {result['sklearn_s']:8.2f} s  ({sklearn_how})")
    print(f"  ratio sklearn / faiss: {result['ratio_sklearn_over_faiss']:.2f}")
    print(f"  1-min load average before/after: {result['load_avg_1min_before_after']} on {result['cpus']} CPUs")
    print(f"  mean squared distance: init {result['objective_init']}, faiss {result['objective_faiss']}, "
          f"sklearn {result['objective_sklearn']}")
    return result


if __name__ == "__main__":
    print(main())
