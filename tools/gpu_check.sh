#!/usr/bin/env bash
# GPU check: run on a machine with a GPU. Creates (or reuses) cometa's venv from requirements.txt,
# then runs each check below and prints what it found. Exit status 1 when a check fails.
#   1. k-means (issue 18): which backend kmeans() picks on the GPU (faiss's GPU k-means when the faiss
#      build has GPU support, else torch on CUDA), a small k-means on it, and the same start on the
#      CPU reaching the same objective.
#   2. the tiny preset's corpus, Stage I and one Co-Meta round through the real pipeline (papermill
#      notebooks) with device=cuda (k-means on faiss's GPU build when present, else torch on CUDA):
#      each step's seconds, the EERs, purity and where k-means ran.
#   3. the Stage II step-time bench (bench/bench_steps.py) at the demo preset on the GPU: seconds per
#      step and the ratios to the baseline strategy.
# Each python part exits with "gpu_check: torch sees no CUDA device" (status 1) on a machine without
# one. Within 10 minutes on one GPU (the venv's first install aside: ~3 minutes).
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

echo "== 2. Stage I and one round of the tiny preset on cuda"
work="$(mktemp -d)"
COMETA_CACHE="$work/cache" "$PY" - "$work/tiny_cuda" <<'PY'
import json, sys, time
from pathlib import Path

import torch

if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device")
from cometa.pipeline.run import run_pipeline
from cometa.runs import RunStore

run_dir = Path(sys.argv[1])
steps = ["corpus", "stage1", "cometa/round_1"]  # not the report: its static export needs Chromium
t0 = time.time()
outcome = run_pipeline("tiny", run_dir=run_dir, strategies=["cometa"], rounds=1, progress=False, only=steps,
                       overrides=["device=cuda", "projection.enabled=false"])
print(f"tiny on {torch.cuda.get_device_name(0)}: {outcome} in {time.time() - t0:.1f} s")
for step in steps:
    done = json.loads((run_dir / step / "done.json").read_text())
    print(f"  {step}: {done['seconds']:.1f} s")
backend = json.loads((run_dir / "cometa" / "round_1" / "clustering_backend.json").read_text())
print(f"  k-means ran {backend['backend']} on {backend['device']}: {backend['reason']}")
store = RunStore(run_dir)
eer = store.scalars(stage="eval/O", name="eer")
for r in eer.itertuples():
    print(f"  EER O-like, {'Stage I' if r.round == 0 else f'round {r.round}'} {r.modality}: {100 * r.value:.2f} %")
purity = store.scalars(stage="labels", name="purity", modality="consensus")["value"]
print(f"  round 1 consensus purity: {purity.iloc[-1]:.3f}")
if backend["device"] == "cpu":
    sys.exit("gpu_check: k-means ran on the CPU although a GPU is visible")
if not (eer["value"] < 0.5).all():
    sys.exit("gpu_check: an EER at or above chance after training on the GPU")
print("Stage I and a round on the GPU: ok")
PY
rm -rf "$work"

echo "== 3. Stage II step time on the GPU (bench/bench_steps.py, demo preset)"
"$PY" - <<'PY'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device")
from bench.bench_steps import main

result = main("demo", repeats=9, device="cuda")
print(result["headline"])
PY
