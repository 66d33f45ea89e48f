"""Distributed helpers (torchrun + DistributedDataParallel; gloo on CPU, nccl on GPUs).

The meta step takes its gradients with ``torch.autograd.grad``, which DDP's backward hooks never
see, so every strategy writes explicit gradients and :func:`all_reduce_grads` averages them over
ranks before the optimiser step. With one process every function here is a no-op.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: torch.device) -> bool:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1). Returns whether it did."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def all_reduce_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Average ``p.grad`` over ranks (explicitly: autograd.grad bypasses DDP's hooks)."""
    if not is_distributed():
        return
    ws = world_size()
    for p in params:
        if p.grad is None:
            # keep the collective in lock-step on every rank: a missing grad counts as zeros
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(ws)


def shard_batches(batches: list) -> list:
    """Each rank's share of every global mini-batch (rows rank, rank + W, ...); batches too small
    to give every rank two samples are dropped on all ranks alike (BatchNorm and contrastive
    negatives need two). One process: the batches unchanged."""
    ws = world_size()
    if ws == 1:
        return batches
    r = rank()
    return [b[r::ws] for b in batches if len(b) >= 2 * ws]


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (identical starting points)."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)


def all_gather_numpy(array, *, dim: int = 0):
    """Gather equal-or-unequal-length numpy arrays from every rank, concatenated in rank order."""
    if not is_distributed():
        return array
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, array)
    return np.concatenate(parts, axis=dim)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def param_divergence(module: torch.nn.Module) -> float:
    """Largest absolute difference between this rank's parameters and rank 0's (0.0 when the ranks
    agree, as they must after every all-reduced step; always 0.0 with one process)."""
    if not is_distributed():
        return 0.0
    worst = torch.zeros(())
    for p in module.parameters():
        ref = p.detach().clone()
        dist.broadcast(ref, src=0)
        worst = torch.maximum(worst, (p.detach() - ref).abs().max().cpu())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)
