"""The torchrun entry point of a distributed step: ``python -m cometa.pipeline.ddp_worker <step> ...``.

:func:`cometa.pipeline.ddp.launch` starts one process per rank with this module; each initialises
the process group (gloo on CPU, nccl on GPUs) and runs the same step function of
:mod:`cometa.pipeline.steps` as a single process would (see :mod:`cometa.pipeline.ddp`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch.distributed as dist

from cometa.config import load_run_config
from cometa.models.build import resolve_device
from cometa.models.distributed import init_from_env
from cometa.pipeline import steps


def main(argv: list[str] | None = None) -> int:
    """One rank of a Stage I or Stage II round step."""
    p = argparse.ArgumentParser(prog="python -m cometa.pipeline.ddp_worker")
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
