"""Running a training step on several processes: ``torchrun`` + DistributedDataParallel.

A step notebook calls :func:`cometa.pipeline.steps.stage1_step` or
:func:`cometa.pipeline.steps.round_step`; when the config asks for ``nproc_per_node > 1`` that
function calls :func:`launch`, which starts ``torchrun --standalone --nproc_per_node N -m
cometa.pipeline.ddp_worker <step> ...`` (:mod:`cometa.pipeline.ddp_worker`). Every rank then runs the
same step function with the process group initialised (gloo on CPU, nccl on GPUs):

- Stage I wraps the audio model in DistributedDataParallel (its hooks all-reduce the gradients);
- Stage II strategies take gradients with ``torch.autograd.grad`` (the meta step), which DDP's hooks
  never see, so every strategy all-reduces its explicit gradients (:mod:`cometa.models.distributed`);
  disagreement and small-loss selection happen per rank on the rank's share of each mini-batch;
- embedding extraction is sharded over ranks and gathered; clustering, evaluation and every write
  to the run store happen on rank 0, and the other ranks read rank 0's labels.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from cometa.core.blas import apply_openblas_coretype


class DistributedStepError(RuntimeError):
    """A torchrun-launched step failed; the message carries the tail of its output."""


def launch(step: str, run_dir: str | Path, *, nproc: int, strategy: str | None = None, round_: int | None = None,
           stop_after_epoch: int | None = None, progress: bool = True) -> None:
    """Run ``step`` ("stage1" or "round") on ``nproc`` processes with torchrun; raise on failure."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "cometa.pipeline.ddp_worker", step, "--run-dir", str(run_dir)]
    if strategy is not None:
        cmd += ["--strategy", strategy, "--round", str(round_)]
    if stop_after_epoch is not None:
        cmd += ["--stop-after-epoch", str(stop_after_epoch)]
    if not progress:
        cmd.append("--quiet")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    apply_openblas_coretype(env)  # faiss's OpenBLAS at the CPU's speed in the workers (kept if already set)
    root = str(Path(__file__).resolve().parents[2])  # the checkout holding cometa/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None  # (stdout=PIPE)
        for line in proc.stdout:  # stream through (the notebook shows it) and keep the tail for errors
            tail.append(line)
            sys.stdout.write(line)
        rc = proc.wait()
    if rc != 0:
        raise DistributedStepError(f"torchrun ({nproc} processes) for step {step!r} exited with {rc}:\n"
                                   + "".join(tail))
