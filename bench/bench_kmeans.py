"""Benchmark: the pseudo-label k-means on each backend (faiss, scikit-learn, torch, numpy) against matmul.

The pseudo-label step (paper Sec. 2.2, :func:`cometa.core.pseudo_labels.kmeans`) at a tenth of the
paper's scale: 200 000 L2-normalised 192-D embeddings drawn from a Gaussian mixture, k = 2000,
20 Lloyd iterations. Every backend of :mod:`cometa.core.lloyd` starts from the same k-means++ centroids
(cometa's seeding, timed on its own) and runs all 20 iterations, so only the iterations are
compared; the backend ``kmeans(backend="auto")`` picks on this machine (:mod:`cometa.core.blas`) is
marked ``chosen``, and the seeding is set against its fit.

The machine comes first in the output: the CPU model and SIMD level, the BLAS core each library
runs (threadpoolctl: faiss's bundled OpenBLAS, numpy's and scipy's; torch's MKL) and
``OPENBLAS_CORETYPE``. faiss's figures depend on its core: issue 18 measured it at 17 % of numpy's
matmul on an AVX-512 Xeon where its OpenBLAS 0.3.15 fell back to 'Prescott' kernels.

FLOPs: each iteration's assignment is a (N, D) x (D, k) distance matmul, 2·N·k·D FLOPs; the
centroid update (N·D) is negligible. Each rate is set against the best of several float32 matmuls
of a similar shape on numpy and on torch, in the same process, threads as they are.

The fallback: a child process whose faiss is forced onto the generic ``Prescott`` kernels (the
variable is set while faiss's OpenBLAS loads, after numpy's and scipy's: the situation of a notebook
whose faiss does not know the CPU) runs the backend ``kmeans()`` picks *there* from the same start;
``fallback_over_native_faiss`` is faiss's time here (on its native kernels, when they are not
generic) over that time: >= 0.8 is issue 36's target.

scikit-learn is first timed on a tenth of the points; when that predicts more than
``sklearn_budget_s`` for all of them, the full figure is the subset's, scaled linearly in N (the
output says so). Run: ``python -m bench.bench_kmeans [--quick] [--n N] [--k K] [--backends ...]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cometa.core.blas import SIMD, blas_cores, cpu_info, faiss_is_generic, kmeans_backend, simd_level
from cometa.core.lloyd import lloyd
from cometa.core.pseudo_labels import kmeans_plus_plus, l2_normalise

BACKENDS = ("faiss", "sklearn", "torch", "numpy")


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


def matmul_gflops(rows: int, dim: int, k: int, *, repeats: int = 5, seed: int = 0, lib: str = "numpy") -> float:
    """Best-of-``repeats`` GFLOP/s of a float32 (rows, dim) @ (dim, k) matmul on numpy or torch."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, dim), dtype=np.float32)
    b = rng.standard_normal((dim, k), dtype=np.float32)
    if lib == "torch":
        import torch

        a, b = torch.from_numpy(a), torch.from_numpy(b)
    a @ b  # warm-up: thread pool start, page faults of the output
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * rows * dim * k / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# the child of :func:`generic_faiss_fallback`: numpy, scipy and torch load their BLAS first, then faiss
# loads its OpenBLAS under OPENBLAS_CORETYPE=Prescott; the backend auto picks then runs from the given start
_FALLBACK_CODE = """
import json, os, sys, time
import numpy, scipy.linalg, torch
os.environ["OPENBLAS_CORETYPE"] = "Prescott"
import faiss
del os.environ["OPENBLAS_CORETYPE"]
from cometa.core.blas import blas_cores, kmeans_backend
from cometa.core.lloyd import lloyd
x, init = numpy.load(sys.argv[1]), numpy.load(sys.argv[2])
choice = kmeans_backend(gpu=False)
t0 = time.perf_counter()
r = lloyd(x, init, niter=int(sys.argv[3]), backend=choice.backend)
print(json.dumps({"seconds": time.perf_counter() - t0, "backend": choice.backend, "reason": choice.reason,
                  "blas_cores": blas_cores(), "objective": r.objective / len(x)}))
"""


def generic_faiss_fallback(x: np.ndarray, init: np.ndarray, *, niter: int, timeout: float = 1800.0) -> dict:
    """The backend ``kmeans()`` falls back to when faiss's kernels are generic, timed in a child
    process whose faiss is forced onto ``Prescott`` (see the module docstring)."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        np.save(Path(tmp) / "init.npy", init)
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        proc = subprocess.run([sys.executable, "-c", _FALLBACK_CODE, str(Path(tmp) / "x.npy"),
                               str(Path(tmp) / "init.npy"), str(niter)], env=env, capture_output=True, text=True,
                              timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the generic-faiss child failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """CPU, SIMD level, each library's BLAS core, OPENBLAS_CORETYPE and the backend auto picks (CPU)."""
    import faiss
    import torch

    cpu = cpu_info()
    choice = kmeans_backend(gpu=False)
    return {"cpu": cpu.model, "vendor": cpu.vendor, "simd": SIMD[simd_level(cpu.flags)], "cpus": os.cpu_count(),
            "blas_cores": blas_cores(), "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": {"faiss": faiss.omp_get_max_threads(), "torch": torch.get_num_threads()},
            "faiss_version": faiss.__version__, "chosen": choice.backend, "chosen_reason": choice.reason}


def main(*, n: int = 200_000, dim: int = 192, k: int = 2000, niter: int = 20, seed: int = 0,
         seeding: str = "kmeans++", backends: tuple[str, ...] = BACKENDS, sklearn_budget_s: float = 180.0,
         subset_fraction: float = 0.1, quick: bool = False, fallback_check: bool = True) -> dict:
    """Run the comparison; print a summary and return the figures (seconds, GFLOP/s, ratios).

    ``seeding="random"`` starts every backend from k random points instead of cometa's k-means++;
    the iterations cost the same either way. ``quick=True`` (the suite's quick mode) shrinks the
    problem to 20 000 points, k = 200. The backend auto picks is always run. ``fallback_check``: also
    time the fallback of a process whose faiss is generic (:func:`generic_faiss_fallback`).
    """
    if quick:
        n, k = min(n, 20_000), min(k, 200)
    if seeding not in ("kmeans++", "random"):
        raise ValueError(f"seeding must be kmeans++|random, got {seeding!r}")
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"backends must be among {BACKENDS}, got {sorted(unknown)}")
    info = machine()
    backends = tuple(b for b in BACKENDS if b in backends or b == info["chosen"])
    load_before = os.getloadavg()[0]
    x = mixture(n, dim, k, seed=seed)  # (n, dim)
    t0 = time.perf_counter()
    if seeding == "kmeans++":
        init = kmeans_plus_plus(x, k, seed=seed)  # (k, dim), the seeding cometa.kmeans uses
    else:
        init = x[np.random.default_rng(seed).choice(n, k, replace=False)].copy()
    seeding_s = time.perf_counter() - t0
    matmul = {lib: matmul_gflops(min(n, 16_384), dim, k, seed=seed, lib=lib) for lib in ("numpy", "torch")}
    flops_per_iter = 2.0 * n * k * dim

    runs: dict[str, dict] = {}
    for b in backends:
        if b == "sklearn":  # a subset first, to decide whether the full run fits the budget
            n_sub = max(k, int(n * subset_fraction))
            sub = x[np.random.default_rng(seed + 1).choice(n, n_sub, replace=False)]
            t0 = time.perf_counter()
            r = lloyd(sub, init, niter=niter, backend=b)
            sub_s = time.perf_counter() - t0
            predicted_s = sub_s / r.iterations * niter * n / n_sub
            if predicted_s > sklearn_budget_s:
                runs[b] = {"seconds": predicted_s, "iterations": r.iterations, "objective": None,
                           "how": f"extrapolated linearly in N from {n_sub} points ({r.iterations} iterations, "
                                  f"{sub_s:.1f} s): a full run was predicted over the {sklearn_budget_s:.0f} s budget"}
                continue
        t0 = time.perf_counter()
        r = lloyd(x, init, niter=niter, backend=b, seed=seed)
        s = time.perf_counter() - t0
        # per-iteration time x niter: scikit-learn stops early only when the labels stop changing
        runs[b] = {"seconds": s / r.iterations * niter, "iterations": r.iterations, "objective": r.objective / n,
                   "how": f"measured on all {n} points ({r.iterations} iterations)"}
    fallback = generic_faiss_fallback(x, init, niter=niter) if fallback_check else None
    for fig in runs.values():
        fig["gflops"] = flops_per_iter * niter / fig["seconds"] / 1e9
        fig["fraction_of_numpy_matmul"] = fig["gflops"] / matmul["numpy"]
    chosen = runs[info["chosen"]]

    result = {
        "n": n, "dim": dim, "k": k, "niter": niter, **info,
        # spinning OpenMP threads (the default policy) lose badly when other jobs share the cores
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seeding": seeding, "seeding_s": round(seeding_s, 2),
        "seeding_fraction_of_chosen_fit": round(seeding_s / chosen["seconds"], 3),
        "matmul_gflops": {lib: round(v, 1) for lib, v in matmul.items()},
        "backends": {b: {key: (round(v, 5 if key == "objective" else 3) if isinstance(v, float) else v)
                         for key, v in fig.items()} for b, fig in runs.items()},
        "chosen_s": round(chosen["seconds"], 2), "chosen_gflops": round(chosen["gflops"], 1),
        "chosen_fraction_of_numpy_matmul": round(chosen["fraction_of_numpy_matmul"], 3),
    }
    if "sklearn" in runs:
        result["ratio_sklearn_over_chosen"] = round(runs["sklearn"]["seconds"] / chosen["seconds"], 2)
    if "faiss" in runs:
        result["ratio_faiss_over_chosen"] = round(runs["faiss"]["seconds"] / chosen["seconds"], 2)
    if fallback is not None:
        result["generic_faiss_fallback"] = {**fallback, "seconds": round(fallback["seconds"], 2),
                                            "gflops": round(flops_per_iter * niter / fallback["seconds"] / 1e9, 1)}
        if "faiss" in runs and not faiss_is_generic(flags=cpu_info().flags, faiss_core=info["blas_cores"]["faiss"]):
            result["fallback_over_native_faiss"] = round(runs["faiss"]["seconds"] / fallback["seconds"], 2)
    others = ", ".join(f"{b} {fig['seconds']:.1f} s" for b, fig in runs.items() if b != info["chosen"])
    result["headline"] = (f"k-means {n}x{dim} k={k} {niter} it on {info['cpu']} ({info['simd']}; faiss's OpenBLAS "
                          f"{info['blas_cores'].get('faiss')}): kmeans() -> {info['chosen']} "
                          f"{chosen['seconds']:.1f} s, "
                          f"{chosen['gflops']:.0f} GFLOP/s = {100 * chosen['fraction_of_numpy_matmul']:.0f} % of numpy "
                          f"matmul ({matmul['numpy']:.0f}); {others}; seeding {seeding_s:.1f} s = "
                          f"{100 * result['seeding_fraction_of_chosen_fit']:.0f} % of the fit")
    if fallback is not None:
        fb = result["generic_faiss_fallback"]
        result["headline"] += (f"; with faiss forced to Prescott, kmeans() -> {fb['backend']} {fb['seconds']:.1f} s"
                               + (f" = x{result['fallback_over_native_faiss']:.2f} native faiss's speed"
                                  if "fallback_over_native_faiss" in result else ""))
    _print(result, runs)
    return result


def _print(result: dict, runs: dict) -> None:
    cores = ", ".join(f"{lib} {core}" for lib, core in result["blas_cores"].items())
    print(f"CPU: {result['cpu']} ({result['vendor']}, {result['simd']}, {result['cpus']} CPUs); "
          f"OPENBLAS_CORETYPE {result['OPENBLAS_CORETYPE'] or 'unset'}; torch ATen {result['torch_cpu_capability']}")
    print(f"BLAS cores: {cores}")
    print(f"kmeans(backend='auto') on the CPU: {result['chosen']} ({result['chosen_reason']})")
    print(f"k-means {result['n']} x {result['dim']}, k = {result['k']}, {result['niter']} iterations, threads "
          f"{result['threads']}, OMP_WAIT_POLICY {result['omp_wait_policy']}")
    gflops = result["matmul_gflops"]
    print(f"  matmul: numpy {gflops['numpy']:.1f} GFLOP/s, torch {gflops['torch']:.1f}")
    for b, fig in runs.items():
        mark = "  <- chosen" if b == result["chosen"] else ""
        obj = "" if fig["objective"] is None else f", mean sq. distance {fig['objective']:.5f}"
        print(f"  {b:8s}{fig['seconds']:8.2f} s  {fig['gflops']:6.1f} GFLOP/s = "
              f"{100 * fig['fraction_of_numpy_matmul']:3.0f} % of numpy matmul  ({fig['how']}{obj}){mark}")
    print(f"  {result['seeding']} seeding: {result['seeding_s']} s = "
          f"{100 * result['seeding_fraction_of_chosen_fit']:.0f} % of the chosen backend's fit")
    if "generic_faiss_fallback" in result:
        fb = result["generic_faiss_fallback"]
        ratio = result.get("fallback_over_native_faiss")
        print(f"  faiss forced to Prescott (a child): kmeans() -> {fb['backend']} {fb['seconds']:.2f} s "
              f"{fb['gflops']:.1f} GFLOP/s" + (f" = x{ratio:.2f} faiss's speed on its native kernels" if ratio else "")
              + f" ({fb['reason']})")
    print(f"  1-min load average before/after: {result['load_avg_1min_before_after']} on {result['cpus']} CPUs")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 000 points, k = 200")
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--k", type=int, default=2000)
    ap.add_argument("--niter", type=int, default=20)
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--sklearn-budget-s", type=float, default=180.0)
    ap.add_argument("--no-fallback", action="store_true", help="skip the generic-faiss child")
    args = ap.parse_args()
    main(n=args.n, k=args.k, niter=args.niter, backends=tuple(args.backends), quick=args.quick,
         sklearn_budget_s=args.sklearn_budget_s, fallback_check=not args.no_fallback)
