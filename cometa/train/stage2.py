"""Stage II: training both encoders on a round's pseudo labels with a strategy (Algorithm 1).

The round's labels come from :func:`cometa.core.ensemble.make_round_labels`; :func:`train_round`
runs Algorithm 1 lines 1-13 for ``epochs_per_round`` epochs, resumable after every epoch.

Options of the cross-lingual transfer paper: ``stage2.train: adapters`` (only the adapters and the
heads train, :func:`set_trainable`) and ``stage2.distill`` (a frozen teacher's embeddings of the
round's samples, :func:`distillation`). Every epoch logs ``trainable_params`` per modality.

``stage2.optimizer_scope: stage`` starts each round's Adam, from round 2 on, with the encoders'
moments of the previous round's end (:func:`adam_moments`, :func:`carry_moments`): the third of the
three restarts a relabelling makes (heads, schedule, optimiser) that can be switched off.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cometa.config.sections import Stage2Config
from cometa.core.label_quality import majority_identity, wrong_label_mask
from cometa.core.pseudo_labels import centroids
from cometa.core.schedules import keep_ratio_in_epoch, lr_schedule
from cometa.core.strategies import (
    Batch,
    Distillation,
    EpochStats,
    GatedStrategy,
    SpeakerClassifier,
    Strategy,
    build_strategy,
)
from cometa.data.datasets import PairedSamples, epoch_batches
from cometa.models.adapters import freeze_for_adapters, trainable_parameters
from cometa.models.augment import AudioAugmenter, build_eval_transform, build_visual_transform
from cometa.models.distributed import broadcast_module, is_main, param_divergence, shard_batches, world_size
from cometa.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, write_progress

__all__ = ["Stage2Config", "RoundSamples", "round_samples", "round_lr_schedule", "start_heads", "set_trainable",
           "distillation", "adam_moments", "carry_moments", "TrainedRound", "train_round"]


@dataclass
class RoundSamples:
    """Who trains this round: rows of the round's table, their labels 0..k-1 and wrong-label mask."""

    rows: np.ndarray  # (M,) rows of the table (and of the banks)
    labels: np.ndarray  # (M,) consensus labels renumbered 0..k-1
    noisy: np.ndarray  # (M,) bool: the pseudo label is wrong (instrumentation only)
    k: int  # classes of the heads


def round_samples(table: pd.DataFrame, has_face: np.ndarray) -> RoundSamples:
    """The samples of the round: kept by the vote and with a face (paired samples need one; audio-only
    utterances, ``corpus.missing_faces: audio_only``, sit the round out)."""
    rows = np.flatnonzero(table["kept"].to_numpy() & has_face)
    labels, uniques = pd.factorize(table["consensus"].to_numpy()[rows], sort=True)
    noisy = wrong_label_mask(table["speaker"].to_numpy()[rows], labels)
    return RoundSamples(rows=rows, labels=labels, noisy=noisy, k=len(uniques))


def _label_judge(table: pd.DataFrame, samples: RoundSamples):
    """(index (B,), labels (B,)) -> (B,) bool: sample ``index`` (a row of ``samples``) with label
    ``labels`` is wrong, i.e. the label's cluster has another majority identity (as
    :func:`~cometa.core.label_quality.wrong_label_mask`). Ground truth, for the instrumentation only."""
    speakers, _ = pd.factorize(table["speaker"].to_numpy()[samples.rows])
    majority = torch.from_numpy(majority_identity(speakers, samples.labels, samples.k))  # (k,)
    own = torch.from_numpy(speakers)  # (M,)

    def judge(index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (majority[labels.cpu()] != own[index.cpu()]).to(labels.device)

    return judge


def start_heads(audio: SpeakerClassifier, visual: SpeakerClassifier, audio_emb: np.ndarray, visual_emb: np.ndarray,
                labels: np.ndarray, *, visual_trained: bool) -> None:
    """Set each AAM-softmax head's rows to the clusters' mean embeddings (rows of ``labels``, 0..k-1)
    under a trained encoder: the new head starts where the encoder already puts each cluster.

    The visual encoder of round 1 has had no training (no Stage I): the means of its random
    embeddings are nearly parallel (cosine ~0.999), which would start every class at the same row.
    With ``visual_trained=False`` its head keeps AAM-softmax's own random initialisation.
    """
    k = audio.head.n_classes
    with torch.no_grad():
        audio.head.weight.copy_(torch.from_numpy(centroids(audio_emb, labels, k)))
        if visual_trained:
            visual.head.weight.copy_(torch.from_numpy(centroids(visual_emb, labels, k)))


def _carried(name: str, p: nn.Parameter) -> bool:
    """Whether an optimiser state of parameter ``name`` may continue into the next round: every
    trainable one but the head's, whose rows are the next round's (new) clusters, and the distillation
    map's, which :func:`_classifiers` re-creates from a random initialisation every round (its old
    moments would belong to another parameter)."""
    return p.requires_grad and not name.startswith(("head.", "distill_map."))


def adam_moments(model: SpeakerClassifier, opt: torch.optim.Optimizer) -> dict[str, dict[str, torch.Tensor]]:
    """``opt``'s state of each of ``model``'s parameters that may carry over (:func:`_carried`), by
    name, copied to the CPU: Adam's ``step``, ``exp_avg`` and ``exp_avg_sq``. A parameter that has
    not been stepped yet has no state and is left out."""
    out = {}
    for name, p in model.named_parameters():
        if _carried(name, p) and opt.state.get(p):
            out[name] = {k: v.detach().to("cpu", copy=True) for k, v in opt.state[p].items()}
    return out


def carry_moments(model: SpeakerClassifier, opt: torch.optim.Optimizer,
                  moments: dict[str, dict[str, torch.Tensor]]) -> int:
    """Start ``opt``'s state of every parameter of ``model`` that may carry over and is named in
    ``moments`` (from :func:`adam_moments` of the previous round) from that state; the others (the
    head, a parameter new to this round) start empty, as Adam's do. Returns how many parameter values
    (elements) were carried: the ``adam_carried_params`` row.

    Adam's ``step`` stays on the CPU, where Adam keeps it (neither fused nor capturable); the
    moments go to the parameter's device.
    """
    n = 0
    for name, p in model.named_parameters():
        saved = moments.get(name)
        if saved is None or not _carried(name, p):
            continue
        if saved["exp_avg"].shape != p.shape:
            raise ValueError(f"Adam moments of {name}: shape {tuple(saved['exp_avg'].shape)}, the parameter's "
                             f"{tuple(p.shape)}")
        opt.state[p] = {k: v.clone() if k == "step" else v.to(p.device, copy=True) for k, v in saved.items()}
        n += p.numel()
    return n


def _classifiers(cfg, round_: int, audio_model: nn.Module, visual_model: nn.Module, samples: RoundSamples, *,
                 audio_emb: np.ndarray, visual_emb: np.ndarray,
                 device: torch.device) -> tuple[SpeakerClassifier, SpeakerClassifier]:
    """Both encoders with new heads of ``samples.k`` rows, seeded per (seed, round), on ``device``;
    with a peer teacher, each model that has one (:func:`distillation`) gets a new distillation map."""
    s2: Stage2Config = cfg.stage2
    torch.manual_seed(cfg.seed * 1000 + round_)
    peer = s2.distill.teacher == "peer"  # each model sees its peer's embeddings through a learned map
    d_a, d_v = cfg.audio_encoder.embed_dim, cfg.visual_encoder.embed_dim
    audio = SpeakerClassifier(audio_model, d_a, samples.k, margin=s2.margin, scale=s2.scale,
                              teacher_dim=d_v if peer and round_ > 1 else None)  # round 1: no audio teacher
    visual = SpeakerClassifier(visual_model, d_v, samples.k, margin=s2.margin, scale=s2.scale,
                               teacher_dim=d_a if peer else None)
    rows = samples.rows
    start_heads(audio, visual, audio_emb[rows], visual_emb[rows], samples.labels, visual_trained=round_ > 1)
    audio.to(device)
    visual.to(device)
    broadcast_module(audio)
    broadcast_module(visual)
    return audio, visual


def set_trainable(train: str, round_: int, audio: SpeakerClassifier, visual: SpeakerClassifier) -> dict[str, int]:
    """``stage2.train``: ``full`` trains everything; ``adapters`` freezes the audio encoder (Stage I's)
    but for its adapters, and the visual encoder from round 2 on (round 1's has had no training yet,
    so it trains fully). Heads (and distillation maps) always train. Returns the trainable parameter
    count per modality (``trainable_params``)."""
    if train == "adapters":
        freeze_for_adapters(audio.encoder)
        if round_ > 1:
            freeze_for_adapters(visual.encoder)
    elif train != "full":
        raise ValueError(f"stage2.train must be 'full' or 'adapters', got {train!r}")
    return {"audio": trainable_parameters(audio), "visual": trainable_parameters(visual)}


def distillation(cfg, samples: RoundSamples, *, round_: int, audio_emb: np.ndarray, visual_emb: np.ndarray,
                 stage1_emb: np.ndarray | None, device: torch.device) -> Distillation | None:
    """The frozen teachers of ``stage2.distill`` as embeddings of the round's samples (rows of
    ``samples``): ``stage1``: Stage I's audio embeddings, for the audio model; ``peer``: the other
    modality's embeddings from the encoders as they were at the start of the round (``audio_emb``,
    ``visual_emb``: those the round clustered). None for ``teacher: none``.

    In round 1 the visual encoder is freshly initialised (there is no Stage I for faces), so its
    embeddings teach nothing: the peer teacher of round 1 teaches the visual model only (as
    :func:`start_heads` leaves round 1's visual head alone), the audio model from round 2 on."""
    d = cfg.stage2.distill
    if d.teacher == "none":
        return None

    def rows(emb: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(emb, dtype=np.float32)[samples.rows], device=device)

    if d.teacher == "stage1":
        if stage1_emb is None:
            raise ValueError("stage2.distill.teacher 'stage1' needs Stage I's embeddings (stage1/embeddings.npz)")
        return Distillation(d.weight, audio=rows(stage1_emb))
    if d.teacher == "peer":
        return Distillation(d.weight, audio=rows(visual_emb) if round_ > 1 else None, visual=rows(audio_emb))
    raise ValueError(f"stage2.distill.teacher must be none, stage1 or peer, got {d.teacher!r}")


def _paired_samples(cfg, audio_bank, frame_bank, samples: RoundSamples) -> PairedSamples:
    """The round's dataset: audio crops (augmented when ``augment.stage2_audio``) and face frames."""
    n_samples = int(round(cfg.features.crop_seconds * cfg.features.sample_rate))
    augmenter = AudioAugmenter(cfg.augment, sample_rate=cfg.features.sample_rate, seed=cfg.seed + 7) \
        if cfg.augment.stage2_audio else None
    vis_tf = build_visual_transform(cfg.augment, cfg.visual_encoder.image_size) if cfg.augment.stage2_visual \
        else build_eval_transform(cfg.visual_encoder.image_size)
    return PairedSamples(audio_bank, frame_bank, samples.rows, samples.labels, samples.noisy, n_samples=n_samples,
                         visual_transform=vis_tf, audio_augmenter=augmenter, seed=cfg.seed)


def _resume(path: Path, device: torch.device, audio: SpeakerClassifier, visual: SpeakerClassifier,
            strategy: Strategy, *, first_epoch: int) -> int:
    """Load the state after the last finished epoch, if any; the epoch to train next."""
    state = load_checkpoint(path, map_location=device)
    if state is None:
        return first_epoch
    audio.load_state_dict(state["audio"])
    visual.load_state_dict(state["visual"])
    strategy.load_state_dict(state["strategy"])
    set_rng_state(state["rng"])
    return int(state["epoch"]) + 1


@dataclass
class EpochResult:
    stats: EpochStats  # the steps' statistics, summed
    step_rows: list[dict]  # per-step scalars for the store
    n_batches: int
    seconds: float


def _train_epoch(strategy: Strategy, ds: PairedSamples, cfg, *, epoch: int, lam: float, lrs: np.ndarray,
                 lr_offset: int, device: torch.device, desc: str, progress: bool) -> EpochResult:
    """One epoch of Algorithm 1 lines 2-12: every mini-batch through ``strategy.step`` with λ = ``lam``
    and the schedule's rate ``lrs[lr_offset + b]`` for batch b."""
    ds.set_epoch(epoch)
    # line 2: shuffle D into mini-batches, drawn from (seed, epoch)
    batches = shard_batches(epoch_batches(len(ds), cfg.stage2.batch_size, (cfg.seed, 10_000 + epoch)))
    loader = DataLoader(ds, batch_sampler=batches, num_workers=cfg.num_workers)
    strategy.audio.train(), strategy.visual.train()
    acc, step_rows = EpochStats(), []
    t0 = time.time()
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for b, (wave, image, y, nz, idx) in enumerate(bar):
        strategy.set_lr(float(lrs[lr_offset + b]))
        st = strategy.step(Batch(wave, image, y, nz, idx).to(device), keep_ratio=lam)
        acc.add(st)
        step = (epoch - 1) * len(batches) + b + 1
        step_rows += [dict(name="disagreement_frac", value=st.n_disagree / max(st.n, 1), step=step),
                      dict(name="loss_support", modality="audio", value=st.loss_support_audio, step=step),
                      dict(name="loss_support", modality="visual", value=st.loss_support_visual, step=step)]
        distill = (("audio", st.loss_distill_audio), ("visual", st.loss_distill_visual))
        step_rows += [dict(name="loss_distill", modality=m, value=v, step=step)  # stage2.distill only
                      for m, v in distill if not math.isnan(v)]
        bar.set_postfix(d=f"{st.n_disagree}/{st.n}", la=f"{st.loss_support_audio:.2f}",
                        lv=f"{st.loss_support_visual:.2f}")
    return EpochResult(acc, step_rows, len(batches), time.time() - t0)


def _share_buffers(audio: SpeakerClassifier, visual: SpeakerClassifier) -> float:
    """Under DDP: rank 0's BatchNorm statistics to every rank (parameters agree by construction, the
    gradients being all-reduced; buffers are per rank), as DDP's broadcast_buffers does; returns the
    largest parameter difference between the ranks (0.0 when they agree)."""
    for m in (audio, visual):
        for buf in m.buffers():
            torch.distributed.broadcast(buf, src=0)
    return max(param_divergence(audio), param_divergence(visual))


def round_lr_schedule(s2: Stage2Config, round_: int, steps_per_epoch: int) -> np.ndarray:
    """(epochs_per_round · steps_per_epoch,) outer rate (β, lines 10-11) of every step of the round.

    ``lr_scope: round``: ``lr_schedule`` over the round's epochs, the same in every round (it
    restarts with the relabelling, as the heads and Adam do). ``stage``: round r's slice of one
    schedule over all ``rounds · epochs_per_round`` epochs (one warm-up, one decay).
    """
    sched, n = s2.lr_schedule, s2.epochs_per_round * steps_per_epoch
    stage = s2.lr_scope == "stage"
    lrs = lr_schedule(s2.beta, epochs=s2.epochs_per_round * (s2.rounds if stage else 1),
                      steps_per_epoch=steps_per_epoch, kind=sched.kind, warmup_epochs=sched.warmup_epochs,
                      final_ratio=sched.final_ratio)
    return lrs[(round_ - 1) * n:round_ * n] if stage else lrs


class TrainedRound(NamedTuple):
    """What :func:`train_round` returns: both classifiers, and with ``stage2.optimizer_scope: stage``
    the Adam moments the next round starts from (modality -> :func:`adam_moments`), else None."""

    audio: SpeakerClassifier
    visual: SpeakerClassifier
    moments: dict[str, dict[str, dict[str, torch.Tensor]]] | None


def train_round(cfg, strategy_name: str, round_: int, audio_model: nn.Module, visual_model: nn.Module,
                table: pd.DataFrame, audio_bank, frame_bank, *, audio_emb: np.ndarray, visual_emb: np.ndarray,
                store, out_dir: str | Path, device: torch.device, progress: bool = True,
                stop_after_epoch: int | None = None,
                stage1_emb: np.ndarray | None = None,
                moments: dict[str, dict[str, dict[str, torch.Tensor]]] | None = None) -> TrainedRound:
    """Train both encoders on the round's consensus labels with the named strategy.

    Resumable: the state after every epoch goes to ``out_dir/train_state.pt``; a rerun continues
    with the next epoch and reproduces an uninterrupted run. ``stage1_emb`` (N, D): Stage I's
    embeddings of the table's rows, the teacher of ``stage2.distill.teacher: stage1``. ``moments``:
    the previous round's :attr:`TrainedRound.moments`, which ``stage2.optimizer_scope: stage``
    needs from round 2 on.
    """
    s2: Stage2Config = cfg.stage2
    out_dir = Path(out_dir)
    samples = round_samples(table, np.array([frame_bank.has_frames(i) for i in range(len(table))], dtype=bool))
    audio, visual = _classifiers(cfg, round_, audio_model, visual_model, samples, audio_emb=audio_emb,
                                 visual_emb=visual_emb, device=device)
    n_trainable = set_trainable(s2.train, round_, audio, visual)
    distill = distillation(cfg, samples, round_=round_, audio_emb=audio_emb, visual_emb=visual_emb,
                           stage1_emb=stage1_emb, device=device)
    strategy = build_strategy(strategy_name, audio, visual, lr=s2.beta, alpha=s2.alpha, second_order=s2.second_order,
                              distill=distill, options=getattr(s2, strategy_name, None))
    if isinstance(strategy, GatedStrategy):  # instrumentation only: is a (corrected) training label wrong?
        strategy.label_is_wrong = _label_judge(table, samples)
    carry = s2.optimizer_scope == "stage"
    pairs = (("audio", audio, strategy.opt_audio), ("visual", visual, strategy.opt_visual))
    carried: dict[str, int] = {}
    if carry and round_ > 1:
        if moments is None:
            raise ValueError(f"stage2.optimizer_scope: stage: round {round_} needs round {round_ - 1}'s Adam moments")
        carried = {m: carry_moments(clf, opt, moments[m]) for m, clf, opt in pairs}
    first_epoch = (round_ - 1) * s2.epochs_per_round + 1
    state_path = out_dir / "train_state.pt"
    start = _resume(state_path, device, audio, visual, strategy, first_epoch=first_epoch)
    if is_main():
        store.delete_scalars(strategy=strategy_name, stage="train", round=round_, min_epoch=start)
    ds = _paired_samples(cfg, audio_bank, frame_bank, samples)
    last_epoch = first_epoch + s2.epochs_per_round - 1
    steps_per_epoch = len(shard_batches(epoch_batches(len(ds), s2.batch_size, (cfg.seed, 10_000 + first_epoch))))
    lrs = round_lr_schedule(s2, round_, steps_per_epoch)
    for epoch in range(start, last_epoch + 1):
        # line 13 runs after each epoch: epoch e trains with λ(e - 1), epoch 1 with λ = 1
        lam = keep_ratio_in_epoch(epoch, tau=s2.tau, e_k=s2.e_k)
        res = _train_epoch(strategy, ds, cfg, epoch=epoch, lam=lam, lrs=lrs,
                           lr_offset=(epoch - first_epoch) * steps_per_epoch, device=device, progress=progress,
                           desc=f"{strategy_name} round {round_} epoch {epoch}/{last_epoch}")
        epoch_rows = res.stats.rows(n_batches=res.n_batches, lam=lam) + strategy.epoch_rows()
        strategy.end_epoch()
        epoch_rows += [dict(name="epoch_seconds", value=res.seconds),
                       dict(name="lr", value=strategy.opt_audio.param_groups[0]["lr"])]
        epoch_rows += [dict(name="trainable_params", modality=m, value=float(n)) for m, n in n_trainable.items()]
        epoch_rows += [dict(name="adam_carried_params", modality=m, value=float(n)) for m, n in carried.items()]
        if world_size() > 1:
            epoch_rows.append(dict(name="ddp_param_divergence", value=_share_buffers(audio, visual)))
        if is_main():
            store.log_many([dict(r, strategy=strategy_name, stage="train", round=round_, epoch=epoch)
                            for r in epoch_rows + res.step_rows])
            save_checkpoint(state_path, {"audio": audio.state_dict(), "visual": visual.state_dict(),
                                         "strategy": strategy.state_dict(), "rng": rng_state(), "epoch": epoch})
            write_progress(out_dir, done=epoch - first_epoch + 1, total=s2.epochs_per_round,
                           desc=f"{strategy_name} round {round_}: epoch {epoch} (λ={lam:.3f})")
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    return TrainedRound(audio, visual, {m: adam_moments(clf, opt) for m, clf, opt in pairs} if carry else None)
