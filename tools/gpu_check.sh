#!/usr/bin/env bash
# GPU check: run on a machine with a GPU. Creates (or reuses) cometa's venv from requirements.txt,
# then runs each check below and prints what it found. Exit status 1 when a check fails.
#   1. k-means (issue 18): which backend kmeans() picks on the GPU (faiss's GPU k-means when the faiss
#      build has GPU support, else torch on CUDA), a small k-means on it, and the same start on the
#      CPU reaching the same objective.
# Later checks (Stage I, a round) go below as further numbered sections.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
COMETA_NO_APT=1 bash "$here/tools/setup_env.sh" >&2
PY="${COMETA_VENV:-$("$here/tools/venv_path.sh")}/bin/python"
cd "$here"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"

echo "== 1. k-means backend on the GPU"
"$PY" - <<'PY'
import json, sys, time

import numpy as np
import torch

from bench.bench_kmeans import mixture
from cometa.core.blas import blas_report, kmeans_backend
from cometa.core.lloyd import lloyd
from cometa.core.pseudo_labels import kmeans, kmeans_plus_plus

print(json.dumps(blas_report(), indent=2))
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device")
print("GPU:", torch.cuda.get_device_name(0))
choice = kmeans_backend(gpu=True)
print(f"kmeans(gpu=True) runs {choice.backend} on {choice.device}: {choice.reason}")
n, k, niter = 200_000, 2000, 20
x = mixture(n, 192, k, seed=0)
init = kmeans_plus_plus(x, k, seed=0)
lloyd(x[:5000], init[:100], niter=1, backend=choice.backend, device=choice.device)  # warm-up
t0 = time.perf_counter()
gpu = lloyd(x, init, niter=niter, backend=choice.backend, device=choice.device)
gpu_s = time.perf_counter() - t0
print(f"{choice.backend} on {choice.device}: {n}x192, k={k}, {niter} it in {gpu_s:.2f} s "
      f"({2 * n * k * 192 * niter / gpu_s / 1e9:.0f} GFLOP/s), objective {gpu.objective:.3f}")
others = {"torch"} | ({"faiss"} if choice.backend == "faiss" else set())
for b in sorted(others):  # the other GPU backend where there is one
    if b != choice.backend:
        t0 = time.perf_counter()
        r = lloyd(x, init, niter=niter, backend=b, device="cuda")
        print(f"{b} on cuda: {time.perf_counter() - t0:.2f} s, objective {r.objective:.3f}")
sub = x[:20_000]
cpu = lloyd(sub, init[:200], niter=niter, backend="faiss", device="cpu")
dev = lloyd(sub, init[:200], niter=niter, backend=choice.backend, device=choice.device)
rel = abs(dev.objective - cpu.objective) / cpu.objective
print(f"same start, 20000 points, k=200: CPU faiss {cpu.objective:.4f}, {choice.backend}/{choice.device} "
      f"{dev.objective:.4f} (relative difference {rel:.1e})")
labels = kmeans(x[:20_000], 200, seed=0, gpu=True)
assert labels.dtype == np.int64 and len(np.unique(labels)) > 150
if rel > 1e-4:
    sys.exit(f"gpu_check: GPU and CPU k-means differ by {rel:.1e} relative (> 1e-4)")
print("k-means on the GPU: ok")
PY
