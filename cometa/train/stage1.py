"""Stage I: contrastive pretraining of the audio encoder (paper Sec. 2.1, Eq. 1-2)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cometa.config.bounds import bounded
from cometa.models.augment import AudioAugmenter
from cometa.data.datasets import AudioBank, ContrastivePairs, epoch_batches
from cometa.models.distributed import all_reduce_grads, is_distributed, is_main, shard_batches, world_size
from cometa.models.losses import AugmentationDiscriminator, contrastive_loss, discriminator_loss
from cometa.models.build import build_audio_model, resolve_device
from cometa.core.schedules import LRScheduleConfig, lr_schedule
from cometa.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, write_progress


@dataclass
class Stage1Config:
    epochs: int = bounded(50, ge=1)
    batch_size: int = bounded(128, ge=2)  # N utterances per mini-batch (2N views)
    lr: float = bounded(1e-3, gt=0)  # Adam, initial rate (paper Sec. 4.4.1)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)  # warm-up + decay, per step
    temperature: float = bounded(1.0, gt=0)  # of the contrastive loss; the paper sets none ("we do not set the temperature")
    discriminator: bool = False  # augmentation adversarial term of Huh et al. (ref. [6])
    discriminator_weight: float = bounded(1.0, ge=0)


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
    torch.manual_seed(cfg.seed)
    model = build_audio_model(cfg).to(device)
    emb_dim = cfg.audio_encoder.embed_dim
    disc = AugmentationDiscriminator(emb_dim).to(device) if s1.discriminator else None
    params = list(model.parameters()) + (list(disc.parameters()) if disc is not None else [])
    opt = torch.optim.Adam(params, lr=s1.lr)
    if is_distributed():  # DDP's hooks all-reduce the encoder's gradients in backward()
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        net = model
    start = 1
    ckpt_path = out_dir / "checkpoint.pt"
    ckpt = load_checkpoint(ckpt_path, map_location=device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if disc is not None and "discriminator" in ckpt:
            disc.load_state_dict(ckpt["discriminator"])
        set_rng_state(ckpt["rng"])
        start = int(ckpt["epoch"]) + 1
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
        ds.set_epoch(epoch)
        batches = shard_batches(epoch_batches(len(ds), s1.batch_size, (cfg.seed, epoch)))
        loader = DataLoader(ds, batch_sampler=batches, num_workers=cfg.num_workers)
        model.train()
        if disc is not None:
            disc.train()
        t0 = time.time()
        sums = {"loss_csl": 0.0, "loss_disc": 0.0}
        bar = tqdm(loader, desc=f"stage I epoch {epoch}/{s1.epochs}", disable=not progress, leave=False)
        for b, (v1, v2, a1, a2) in enumerate(bar):
            for group in opt.param_groups:
                group["lr"] = float(lrs[(epoch - 1) * steps_per_epoch + b])
            v1, v2 = v1.to(device), v2.to(device)
            emb = net(torch.cat([v1, v2]))  # (2N, D): one pass, BatchNorm sees both views
            e1, e2 = emb.chunk(2)
            loss = contrastive_loss(e1, e2, temperature=s1.temperature)
            sums["loss_csl"] += float(loss.detach())
            if disc is not None:
                same = (a1 == a2).to(device)
                d_loss = discriminator_loss(disc, e1, e2, same)
                sums["loss_disc"] += float(d_loss.detach())
                loss = loss + s1.discriminator_weight * d_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if disc is not None:
                all_reduce_grads(disc.parameters())  # (the encoder's are all-reduced by DDP)
            opt.step()
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        n_b = max(1, len(batches))
        rows = [dict(name="loss_csl", value=sums["loss_csl"] / n_b, stage="stage1", round=0, epoch=epoch),
                dict(name="lr", value=opt.param_groups[0]["lr"], stage="stage1", round=0, epoch=epoch),
                dict(name="epoch_seconds", value=time.time() - t0, stage="stage1", round=0, epoch=epoch)]
        if world_size() > 1:
            from cometa.models.distributed import param_divergence

            rows.append(dict(name="ddp_param_divergence", value=param_divergence(model), stage="stage1", round=0,
                             epoch=epoch))
        if disc is not None:
            rows.append(dict(name="loss_disc", value=sums["loss_disc"] / n_b, stage="stage1", round=0, epoch=epoch))
        if is_main():
            store.log_many(rows)
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(), "epoch": epoch}
            if disc is not None:
                state["discriminator"] = disc.state_dict()
            save_checkpoint(ckpt_path, state)
            write_progress(out_dir, done=epoch, total=s1.epochs, desc=f"stage I epoch {epoch}/{s1.epochs}")
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    return model
