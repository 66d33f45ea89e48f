"""Stage II: rounds of pseudo labels + training both encoders with a strategy (Algorithm 1)."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cometa.config.bounds import bounded
from cometa.models.augment import AudioAugmenter, build_eval_transform, build_visual_transform
from cometa.data.datasets import PairedSamples, epoch_batches
from cometa.models.distributed import broadcast_module, is_main, param_divergence, shard_batches, world_size
from cometa.core.ensemble import align, consensus, joint_embeddings
from cometa.core.label_quality import flip_rate, label_quality
from cometa.core.pseudo_labels import ClusteringConfig, cluster
from cometa.core.schedules import LRScheduleConfig, keep_ratio_in_epoch, lr_schedule
from cometa.core.strategies import Batch, SpeakerClassifier, build_strategy
from cometa.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, write_progress


@dataclass
class Stage2Config:
    """Algorithm 1's inputs: tau, E_k, alpha, beta; relabelling every ``epochs_per_round`` epochs."""

    strategies: list[str] = field(default_factory=lambda: ["baseline", "coteaching_plus", "cometa"])
    rounds: int = bounded(20, ge=1)  # relabellings; E_max = rounds * epochs_per_round (paper: 200)
    epochs_per_round: int = bounded(10, ge=1)  # Algorithm 1 line 14: relabel when e mod 10 = 0
    batch_size: int = bounded(128, ge=2)
    tau: float = bounded(0.2, ge=0, lt=1)  # estimated noise rate
    e_k: int = bounded(10, ge=1)  # epochs over which lambda(e) ramps from 1 to 1 - tau
    alpha: float = bounded(0.01, gt=0)  # inner (support) step size, lines 5-6
    beta: float = bounded(0.001, gt=0)  # outer step size (Adam), lines 10-11; also the baseline's Adam lr
    second_order: bool = True  # differentiate through the inner step (False = first-order MAML)
    margin: float = bounded(0.2, ge=0, lt=1.5707963)  # AAM-softmax, radians
    scale: float = bounded(32.0, gt=0)
    # schedule of the outer (Adam, β) rate within each round: the heads and Adam start afresh with
    # each relabelling, so every round warms up and decays again
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)


# ---------------------------------------------------------------------------------------------
# pseudo labels of a round (Sec. 2.2: clustering per view -> ensemble -> consensus)


def make_round_labels(keys, speakers, audio_emb: np.ndarray, visual_emb: np.ndarray | None, *,
                      clustering: ClusteringConfig, seed: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """Cluster each view and vote: the round's labelling table and the vote counts.

    With no visual embeddings (round 1: the visual encoder has no Stage I) the consensus is the
    audio clustering, as in the paper. Columns: key, speaker (true identity, for diagnosis only),
    audio, visual, joint, consensus (-1 = dropped by the vote), kept; audio and visual ids are
    aligned onto the joint (reference) ids. Utterances whose visual row is not finite (no face
    frames, ``corpus.missing_faces: audio_only``) get visual -1: the visual clustering runs on the
    others, and their joint view is their voice alone (see :func:`cometa.core.ensemble.joint_embeddings`).
    """
    audio = cluster(audio_emb, clustering, seed=seed)
    if visual_emb is None:
        n = len(audio)
        table = pd.DataFrame({"key": list(keys), "speaker": list(speakers), "audio": audio,
                              "visual": np.full(n, -1, dtype=np.int64), "joint": audio,
                              "consensus": audio, "kept": np.ones(n, dtype=bool)})
        return table, {"all_agree": n, "two_agree": 0, "all_differ": 0}
    has_face = np.isfinite(visual_emb).all(axis=1)
    visual = np.full(len(audio), -1, dtype=np.int64)
    visual[has_face] = cluster(visual_emb[has_face], clustering, seed=seed + 1)
    joint = cluster(joint_embeddings(audio_emb, visual_emb), clustering, seed=seed + 2)
    labels, kept, counts = consensus(joint, audio, visual, policy=clustering.vote_policy)
    table = pd.DataFrame({"key": list(keys), "speaker": list(speakers), "audio": align(joint, audio),
                          "visual": align(joint, visual), "joint": joint, "consensus": labels, "kept": kept})
    return table, counts


def label_metrics(table: pd.DataFrame, previous: pd.DataFrame | None) -> list[dict]:
    """Label quality per view against the true identities, and the flip rate vs the last round."""
    rows = []
    truth = pd.factorize(table["speaker"])[0]
    for view in ("audio", "visual", "joint", "consensus"):
        pred = table[view].to_numpy()
        if (pred < 0).all():
            continue
        for name, value in label_quality(truth, pred).items():
            rows.append(dict(name=name, value=float(value), modality=view))
    if previous is not None:
        prev = previous.set_index("key")["consensus"].reindex(table["key"]).to_numpy()
        cur = table["consensus"].to_numpy()
        ok = (prev >= 0) & (cur >= 0)
        rows.append(dict(name="flip_rate", value=float(flip_rate(prev[ok], cur[ok])), modality="consensus"))
    return rows


def wrong_label_mask(speakers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """True where a sample's pseudo label is wrong: its cluster's majority true identity differs
    from its own (the ground truth the embedded corpus knows)."""
    df = pd.DataFrame({"s": speakers, "c": labels})
    majority = df.groupby("c")["s"].agg(lambda s: s.value_counts().index[0])
    return (df["c"].map(majority) != df["s"]).to_numpy()


def centroids(embeddings: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, D) L2-normalised mean embedding of each cluster 0..k-1 (the new heads' initial rows)."""
    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    c = np.zeros((k, e.shape[1]), dtype=np.float64)
    np.add.at(c, labels, e)
    return (c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)).astype(np.float32)


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


# ---------------------------------------------------------------------------------------------
# training one round (Algorithm 1 lines 1-13 for epochs_per_round epochs)

STEP_NAMES = ("loss_support", "disagreement_frac", "lambda")


def _epoch_rows(acc: dict, *, n_batches: int, lam: float) -> list[dict]:
    """Per-epoch metrics (DESIGN.md's vocabulary) from the summed step statistics."""
    n, d = max(acc["n"], 1), acc["n_disagree"]
    rows = [dict(name="lambda", value=lam),
            dict(name="disagreement_frac", value=d / n),
            dict(name="empty_disagreement_batches", value=float(acc["empty"])),
            dict(name="disagreement_noisy_frac", value=acc["n_disagree_noisy"] / d if d else float("nan")),
            dict(name="selection_overlap", value=acc["n_overlap"] / acc["n_union"] if acc["n_union"] else float("nan"))]
    for m in ("audio", "visual"):
        sel = acc[f"n_selected_{m}"]
        left, left_noisy = d - sel, acc["n_disagree_noisy"] - acc[f"n_selected_noisy_{m}"]  # D̄' minus the selection
        rows += [dict(name=f"selected_frac_{m}", value=sel / n),
                 dict(name="selected_noisy_frac", modality=m,
                      value=acc[f"n_selected_noisy_{m}"] / sel if sel else float("nan")),
                 dict(name="dropped_noisy_frac", modality=m, value=left_noisy / left if left else float("nan")),
                 dict(name="loss_support", modality=m, value=acc[f"loss_support_{m}"] / max(n_batches, 1)),
                 dict(name="loss_query", modality=m,
                      value=acc[f"loss_query_{m}"] / acc[f"q_{m}"] if acc[f"q_{m}"] else float("nan"))]
    return rows


def train_round(cfg, strategy_name: str, round_: int, audio_model: nn.Module, visual_model: nn.Module,
                table: pd.DataFrame, audio_bank, frame_bank, *, audio_emb: np.ndarray, visual_emb: np.ndarray,
                store, out_dir: str | Path, device: torch.device, progress: bool = True,
                stop_after_epoch: int | None = None) -> tuple[SpeakerClassifier, SpeakerClassifier]:
    """Train both encoders on the round's consensus labels with the named strategy.

    Resumable: the state after every epoch goes to ``out_dir/train_state.pt``; a rerun continues
    with the next epoch and reproduces an uninterrupted run. Returns the two classifiers.
    """
    s2: Stage2Config = cfg.stage2
    out_dir = Path(out_dir)
    kept = table["kept"].to_numpy()
    # paired samples need a face: audio-only utterances (corpus.missing_faces = audio_only) and
    # samples the vote dropped sit this round out
    has_face = np.array([frame_bank.has_frames(i) for i in range(len(table))], dtype=bool)
    rows = np.flatnonzero(kept & has_face)
    labels, uniques = pd.factorize(table["consensus"].to_numpy()[rows], sort=True)
    k = len(uniques)
    noisy = wrong_label_mask(table["speaker"].to_numpy()[rows], labels)
    torch.manual_seed(cfg.seed * 1000 + round_)
    audio = SpeakerClassifier(audio_model, cfg.audio_encoder.embed_dim, k, margin=s2.margin, scale=s2.scale)
    visual = SpeakerClassifier(visual_model, cfg.visual_encoder.embed_dim, k, margin=s2.margin, scale=s2.scale)
    start_heads(audio, visual, audio_emb[rows], visual_emb[rows], labels, visual_trained=round_ > 1)
    audio.to(device), visual.to(device)
    broadcast_module(audio), broadcast_module(visual)
    strategy = build_strategy(strategy_name, audio, visual, lr=s2.beta, alpha=s2.alpha, second_order=s2.second_order)

    first_epoch = (round_ - 1) * s2.epochs_per_round + 1
    start = first_epoch
    state_path = out_dir / "train_state.pt"
    state = load_checkpoint(state_path, map_location=device)
    if state is not None:
        audio.load_state_dict(state["audio"])
        visual.load_state_dict(state["visual"])
        strategy.load_state_dict(state["strategy"])
        set_rng_state(state["rng"])
        start = int(state["epoch"]) + 1
    if is_main():
        store.delete_scalars(strategy=strategy_name, stage="train", round=round_, min_epoch=start)

    n_samples = int(round(cfg.features.crop_seconds * cfg.features.sample_rate))
    augmenter = AudioAugmenter(cfg.augment, sample_rate=cfg.features.sample_rate, seed=cfg.seed + 7) \
        if cfg.augment.stage2_audio else None
    vis_tf = build_visual_transform(cfg.augment, cfg.visual_encoder.image_size) if cfg.augment.stage2_visual \
        else build_eval_transform(cfg.visual_encoder.image_size)
    ds = PairedSamples(audio_bank, frame_bank, rows, labels, noisy, n_samples=n_samples, visual_transform=vis_tf,
                       audio_augmenter=augmenter, seed=cfg.seed)
    last_epoch = first_epoch + s2.epochs_per_round - 1
    steps_per_epoch = len(shard_batches(epoch_batches(len(ds), s2.batch_size, (cfg.seed, 10_000 + first_epoch))))
    sched = s2.lr_schedule
    lrs = lr_schedule(s2.beta, epochs=s2.epochs_per_round, steps_per_epoch=steps_per_epoch, kind=sched.kind,
                      warmup_epochs=sched.warmup_epochs, final_ratio=sched.final_ratio)
    for epoch in range(start, last_epoch + 1):
        # line 13 runs after each epoch: epoch e trains with λ(e - 1), epoch 1 with λ = 1
        lam = keep_ratio_in_epoch(epoch, tau=s2.tau, e_k=s2.e_k)
        ds.set_epoch(epoch)
        # line 2: shuffle D into mini-batches, drawn from (seed, epoch)
        batches = shard_batches(epoch_batches(len(ds), s2.batch_size, (cfg.seed, 10_000 + epoch)))
        loader = DataLoader(ds, batch_sampler=batches, num_workers=cfg.num_workers)
        audio.train(), visual.train()
        acc = defaultdict(float)
        step_rows = []
        t0 = time.time()
        bar = tqdm(loader, desc=f"{strategy_name} round {round_} epoch {epoch}/{last_epoch}", disable=not progress,
                   leave=False)
        for b, (wave, image, y, nz, idx) in enumerate(bar):
            strategy.set_lr(float(lrs[(epoch - first_epoch) * steps_per_epoch + b]))
            batch = Batch(wave, image, y, nz, idx).to(device)
            st = strategy.step(batch, keep_ratio=lam)
            for f in ("n", "n_disagree", "n_disagree_noisy", "n_selected_audio", "n_selected_visual",
                      "n_selected_noisy_audio", "n_selected_noisy_visual", "n_overlap", "n_union"):
                acc[f] += getattr(st, f)
            acc["empty"] += st.empty
            for m in ("audio", "visual"):
                acc[f"loss_support_{m}"] += st.__dict__[f"loss_support_{m}"]
                q = st.__dict__[f"loss_query_{m}"]
                if q == q:  # not NaN (no query loss on a batch without disagreement)
                    acc[f"loss_query_{m}"] += q
                    acc[f"q_{m}"] += 1
            step = (epoch - 1) * len(batches) + b + 1
            step_rows += [dict(name="disagreement_frac", value=st.n_disagree / max(st.n, 1), step=step),
                          dict(name="loss_support", modality="audio", value=st.loss_support_audio, step=step),
                          dict(name="loss_support", modality="visual", value=st.loss_support_visual, step=step)]
            bar.set_postfix(d=f"{st.n_disagree}/{st.n}", la=f"{st.loss_support_audio:.2f}",
                            lv=f"{st.loss_support_visual:.2f}")
        epoch_rows = _epoch_rows(acc, n_batches=len(batches), lam=lam)
        epoch_rows += [dict(name="epoch_seconds", value=time.time() - t0),
                       dict(name="lr", value=strategy.opt_audio.param_groups[0]["lr"])]
        if world_size() > 1:
            # parameters agree by construction (all-reduced gradients); BatchNorm statistics are
            # per rank, so rank 0's are shared before the checkpoint, as DDP's broadcast_buffers does
            for m in (audio, visual):
                for b in m.buffers():
                    torch.distributed.broadcast(b, src=0)
            epoch_rows.append(dict(name="ddp_param_divergence",
                                   value=max(param_divergence(audio), param_divergence(visual))))
        if is_main():
            store.log_many([dict(r, strategy=strategy_name, stage="train", round=round_, epoch=epoch)
                            for r in epoch_rows + step_rows])
            save_checkpoint(state_path, {"audio": audio.state_dict(), "visual": visual.state_dict(),
                                         "strategy": strategy.state_dict(), "rng": rng_state(), "epoch": epoch})
            write_progress(out_dir, done=epoch - first_epoch + 1, total=s2.epochs_per_round,
                           desc=f"{strategy_name} round {round_}: epoch {epoch} (λ={lam:.3f})")
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    return audio, visual
