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
#   4. the paper preset's GPU plan, measured (what `run --preset paper --dry-run` prints from an assumed
#      utilisation): one training step of both paper encoders (batch 128, 1.8 s crops, 224 px faces,
#      bf16 autocast) timed on the GPU, the FLOP rate it reaches, and from it FLOPs per step, epoch time
#      and GPU-hours per strategy at VoxCeleb2 dev size; k-means of one view at paper size (1,092,009 x
#      192, k = 6000, 20 iterations) on the GPU; with COMETA_DATA=<prepared root>, the data loader
#      measured on its files and "loader workers per GPU: N".
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

echo "== 4. the paper preset's GPU plan, measured"
"$PY" - <<'PY'
import os, sys, time
from pathlib import Path

import numpy as np
import torch

if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device")
from cometa.config import load_config
from cometa.core.pseudo_labels import kmeans
from cometa.models.build import build_audio_model, build_visual_model
from cometa.pipeline.dryrun import PASSES, forward_flops
from cometa.pipeline.gpu_plan import GPU_PEAK_FLOPS, UTILISATION, loader_workers, measure_loader, strategy_plans

cfg = load_config("paper")
n_train, batch, dev = 1_092_009, cfg.stage2.batch_size, torch.device("cuda")
crop, size = int(cfg.features.crop_seconds * cfg.features.sample_rate), cfg.visual_encoder.image_size
fa = forward_flops(build_audio_model(cfg), torch.zeros(1, crop))
fv = forward_flops(build_visual_model(cfg), torch.zeros(2, 3, size, size)) / 2
audio, visual = build_audio_model(cfg).to(dev).train(), build_visual_model(cfg).to(dev).train()
opt = torch.optim.Adam([*audio.parameters(), *visual.parameters()], lr=1e-3)
wav, img = torch.randn(batch, crop, device=dev), torch.rand(batch, 3, size, size, device=dev)


def step():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = audio(wav).float().pow(2).mean() + visual(img).float().pow(2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


for _ in range(3):
    step()  # warm-up (cuDNN autotuning)
torch.cuda.synchronize()
t0, n = time.perf_counter(), 10
for _ in range(n):
    step()
torch.cuda.synchronize()
step_s = (time.perf_counter() - t0) / n
rate = batch * 3 * (fa + fv) / step_s  # forward + backward = 3 forwards' FLOPs
print(f"{torch.cuda.get_device_name(0)}: a training step of both paper encoders, batch {batch}: {step_s * 1000:.0f} ms"
      f" = {rate / 1e12:.0f} TFLOP/s ({rate / GPU_PEAK_FLOPS:.0%} of an H100 SXM's {GPU_PEAK_FLOPS / 1e12:.0f}; "
      f"the dry run assumes {UTILISATION:.0%})")
plans = strategy_plans(cfg, n_train, fa, fv, PASSES, flops_per_s=rate)
print(f"{'strategy':<16} {'TFLOP/step':>11} {'steps/epoch':>12} {'epoch h':>8} {'GPU-hours':>10} {'samples/s':>10}")
for p in plans:
    print(f"{p.strategy:<16} {p.flops_per_step / 1e12:>11.2f} {p.steps_per_epoch:>12} {p.epoch_s / 3600:>8.2f} "
          f"{p.gpu_hours:>10.0f} {p.samples_per_s:>10.0f}")
x = np.random.default_rng(0).standard_normal((n_train, 192), dtype=np.float32)
t0 = time.perf_counter()
kmeans(x, 6000, seed=0, niter=20, gpu=True)
print(f"k-means of one view at paper size (1,092,009 x 192, k = 6000, 20 it) on the GPU: "
      f"{time.perf_counter() - t0:.0f} s (k-means++ seeding on the CPU included)")
data = os.environ.get("COMETA_DATA")
if data:
    lr = measure_loader(cfg, Path(data) / "train")
    fastest = max(plans, key=lambda p: p.samples_per_s)
    print(f"data loader: {lr.sample_ms:.1f} ms a sample on one core = {lr.samples_per_s:.0f} samples/s")
    print(f"loader workers per GPU: {loader_workers(fastest.samples_per_s, lr)}")
else:
    print("data loader: set COMETA_DATA=<prepared VoxCeleb root> to measure it here")
PY
