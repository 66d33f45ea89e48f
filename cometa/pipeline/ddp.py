"""Running a training step on several processes: ``torchrun`` + DistributedDataParallel.

A step notebook calls :func:`cometa.pipeline.steps.stage1_step` or :func:`cometa.pipeline.steps.round_step`; when
the config asks for ``nproc_per_node > 1`` that function calls :func:`launch`, which starts
``torchrun --standalone --nproc_per_node N -m cometa.pipeline.ddp <step> ...``. Every rank then runs the
same step function with the process group initialised (gloo on CPU, nccl on GPUs):

- Stage I wraps the audio model in DistributedDataParallel (its hooks all-reduce the gradients);
- Stage II strategies take gradients with ``torch.autograd.grad`` (the meta step), which DDP's hooks
  never see, so every strategy all-reduces its explicit gradients (:mod:`cometa.models.distributed`);
  disagreement and small-loss selection happen per rank on the rank's share of each mini-batch;
- embedding extraction is sharded over ranks and gathered; clustering, evaluation and every write
  to the run store happen on rank 0, and the other ranks read rank 0's labels.
"""
from __future__ import annotations

import argparse
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
           "-m", "cometa.pipeline.ddp", step, "--run-dir", str(run_dir)]
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
        for line in proc.stdout:  # stream through (the notebook shows it) and keep the tail for errors
            tail.append(line)
            sys.stdout.write(line)
        rc = proc.wait()
    if rc != 0:
        raise DistributedStepError(f"torchrun ({nproc} processes) for step {step!r} exited with {rc}:\n"
                                   + "".join(tail))


def main(argv: list[str] | None = None) -> int:
    """The torchrun entry point: one rank of a Stage I or Stage II round step."""
    import torch.distributed as dist

    from cometa.pipeline import steps
    from cometa.config import load_run_config
    from cometa.models.distributed import init_from_env
    from cometa.models.build import resolve_device

    p = argparse.ArgumentParser(prog="python -m cometa.pipeline.ddp")
    p.add_argument("step", choices=["stage1", "round"])
    p.add_argument("--run-dir", required=True)
    p.add_argument("--strategy")
    p.add_argument("--round", type=int)
    p.add_argument("--stop-after-epoch", type=int)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    cfg = load_run_config(Path(args.run_dir) / "config.yaml")
    init_from_env(resolve_device(cfg.device))
    progress = not args.quiet and int(os.environ.get("RANK", "0")) == 0
    try:
        if args.step == "stage1":
            steps.stage1_step(args.run_dir, progress=progress, stop_after_epoch=args.stop_after_epoch)
        else:
            steps.round_step(args.run_dir, args.strategy, args.round, progress=progress,
                             stop_after_epoch=args.stop_after_epoch)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
