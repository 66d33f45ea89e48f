"""Stage I: contrastive pretraining of the audio encoder (paper Sec. 2.1, Eq. 1-2)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cometa.config.sections import Stage1Config
from cometa.core.schedules import lr_schedule
from cometa.data.datasets import AudioBank, ContrastivePairs, epoch_batches
from cometa.models.augment import AudioAugmenter
from cometa.models.build import build_audio_model, resolve_device
from cometa.models.distributed import (
    all_reduce_grads,
    is_distributed,
    is_main,
    param_divergence,
    shard_batches,
    world_size,
)
from cometa.models.losses import AugmentationDiscriminator, contrastive_loss, discriminator_loss
from cometa.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, write_progress

__all__ = ["Stage1Config", "train_stage1"]


@dataclass
class Stage1Models:
    model: nn.Module  # the audio encoder
    disc: AugmentationDiscriminator | None  # the augmentation discriminator (``stage1.discriminator``)
    opt: torch.optim.Optimizer  # Adam over both
    net: nn.Module  # the encoder as trained: wrapped in DistributedDataParallel under torchrun


def _models(cfg, device: torch.device) -> Stage1Models:
    """The encoder (seeded with ``cfg.seed``), the discriminator when asked for, and their optimiser."""
    s1: Stage1Config = cfg.stage1
    torch.manual_seed(cfg.seed)
    model = build_audio_model(cfg, adapters=False).to(device)  # Stage I has no adapters
    disc = AugmentationDiscriminator(cfg.audio_encoder.embed_dim).to(device) if s1.discriminator else None
    params = list(model.parameters()) + (list(disc.parameters()) if disc is not None else [])
    opt = torch.optim.Adam(params, lr=s1.lr)
    if is_distributed():  # DDP's hooks all-reduce the encoder's gradients in backward()
        net: nn.Module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        net = model
    return Stage1Models(model, disc, opt, net)


def _resume(path: Path, device: torch.device, m: Stage1Models) -> int:
    """Load the state after the last finished epoch, if any; the epoch to train next."""
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt is None:
        return 1
    m.model.load_state_dict(ckpt["model"])
    m.opt.load_state_dict(ckpt["optimizer"])
    if m.disc is not None and "discriminator" in ckpt:
        m.disc.load_state_dict(ckpt["discriminator"])
    set_rng_state(ckpt["rng"])
    return int(ckpt["epoch"]) + 1


def _train_epoch(m: Stage1Models, ds: ContrastivePairs, cfg, *, epoch: int, lrs: np.ndarray, steps_per_epoch: int,
                 device: torch.device, progress: bool) -> tuple[dict[str, float], int, float]:
    """One epoch of contrastive training: the summed losses, the number of batches and the seconds."""
    s1: Stage1Config = cfg.stage1
    ds.set_epoch(epoch)
    batches = shard_batches(epoch_batches(len(ds), s1.batch_size, (cfg.seed, epoch)))
    loader = DataLoader(ds, batch_sampler=batches, num_workers=cfg.num_workers)
    m.model.train()
    if m.disc is not None:
        m.disc.train()
    t0 = time.time()
    sums = {"loss_csl": 0.0, "loss_disc": 0.0}
    bar = tqdm(loader, desc=f"stage I epoch {epoch}/{s1.epochs}", disable=not progress, leave=False)
    for b, (v1, v2, a1, a2) in enumerate(bar):
        for group in m.opt.param_groups:
            group["lr"] = float(lrs[(epoch - 1) * steps_per_epoch + b])
        v1, v2 = v1.to(device), v2.to(device)
        emb = m.net(torch.cat([v1, v2]))  # (2N, D): one pass, BatchNorm sees both views
        e1, e2 = emb.chunk(2)
        loss = contrastive_loss(e1, e2, temperature=s1.temperature)
        sums["loss_csl"] += float(loss.detach())
        if m.disc is not None:
            d_loss = discriminator_loss(m.disc, e1, e2, (a1 == a2).to(device))
            sums["loss_disc"] += float(d_loss.detach())
            loss = loss + s1.discriminator_weight * d_loss
        m.opt.zero_grad(set_to_none=True)
        loss.backward()
        if m.disc is not None:
            all_reduce_grads(m.disc.parameters())  # (the encoder's are all-reduced by DDP)
        m.opt.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    return sums, len(batches), t0


def _epoch_rows(m: Stage1Models, sums: dict[str, float], *, n_batches: int, t0: float) -> list[dict]:
    """The epoch's scalars: mean losses, the learning rate, seconds (and the DDP divergence)."""
    n_b = max(1, n_batches)
    rows = [dict(name="loss_csl", value=sums["loss_csl"] / n_b),
            dict(name="lr", value=m.opt.param_groups[0]["lr"]),
            dict(name="epoch_seconds", value=time.time() - t0)]
    if world_size() > 1:
        rows.append(dict(name="ddp_param_divergence", value=param_divergence(m.model)))
    if m.disc is not None:
        rows.append(dict(name="loss_disc", value=sums["loss_disc"] / n_b))
    return rows


def train_stage1(cfg, corpus, store, *, out_dir: str | Path, bank: AudioBank | None = None, progress: bool = True,
                 stop_after_epoch: int | None = None) -> nn.Module:
    """Contrastive pretraining of the audio encoder (Eq. 1-2), resumable from ``out_dir/checkpoint.pt``.

    Each epoch ends with a checkpoint (model, optimiser, discriminator, RNG, epoch); a rerun
    continues after the last completed epoch and reaches the same weights as an uninterrupted run
    (batches and augmentations are drawn from (seed, epoch, index)). ``stop_after_epoch`` ends the
    call early (tests of resume use it).
    """
    out_dir = Path(out_dir)
    s1: Stage1Config = cfg.stage1
    device = resolve_device(cfg.device)
    m = _models(cfg, device)
    ckpt_path = out_dir / "checkpoint.pt"
    start = _resume(ckpt_path, device, m)
    if is_main():  # rows of epochs that will be (re)trained now are replaced, not duplicated
        store.delete_scalars(strategy=None, stage="stage1", min_epoch=start)
    bank = bank or AudioBank(corpus.train, sample_rate=cfg.features.sample_rate, cache=cfg.cache_data)
    n_samples = int(round(cfg.features.crop_seconds * cfg.features.sample_rate))
    augmenter = AudioAugmenter(cfg.augment, sample_rate=cfg.features.sample_rate, seed=cfg.seed)
    ds = ContrastivePairs(bank, n_samples=n_samples, augmenter=augmenter, seed=cfg.seed)
    steps_per_epoch = len(shard_batches(epoch_batches(len(ds), s1.batch_size, (cfg.seed, 1))))
    lrs = lr_schedule(s1.lr, epochs=s1.epochs, steps_per_epoch=steps_per_epoch, kind=s1.lr_schedule.kind,
                      warmup_epochs=s1.lr_schedule.warmup_epochs, final_ratio=s1.lr_schedule.final_ratio)
    for epoch in range(start, s1.epochs + 1):
        sums, n_batches, t0 = _train_epoch(m, ds, cfg, epoch=epoch, lrs=lrs, steps_per_epoch=steps_per_epoch,
                                           device=device, progress=progress)
        rows = [dict(r, stage="stage1", round=0, epoch=epoch) for r in _epoch_rows(m, sums, n_batches=n_batches, t0=t0)]
        if is_main():
            store.log_many(rows)
            state = {"model": m.model.state_dict(), "optimizer": m.opt.state_dict(), "rng": rng_state(), "epoch": epoch}
            if m.disc is not None:
                state["discriminator"] = m.disc.state_dict()
            save_checkpoint(ckpt_path, state)
            write_progress(out_dir, done=epoch, total=s1.epochs, desc=f"stage I epoch {epoch}/{s1.epochs}")
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    return m.model
