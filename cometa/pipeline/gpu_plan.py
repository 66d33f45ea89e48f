"""The GPU plan of a run: per strategy, FLOPs per optimiser step, epoch time and GPU-hours on one GPU,
and how many data-loader workers one GPU needs, from the data loader's throughput measured here.

The FLOPs are counted (:func:`cometa.pipeline.dryrun.forward_flops`, passes per sample as
:data:`cometa.pipeline.dryrun.PASSES`); the time assumes a stated GPU (:data:`GPU_PEAK_FLOPS`, an H100
SXM's dense bf16 peak) at a stated utilisation (:data:`UTILISATION`): both are assumptions, printed as
such. ``tools/gpu_check.sh`` measures the throughput on a real GPU and prints the same figures from it.

The loader's per-sample work is what :class:`cometa.data.datasets.PairedSamples` does in a worker:
read the wav, crop it, augment it (noise / reverb), decode the utterance's face frames (the
:class:`~cometa.data.datasets.FrameBank` reads all of them and one is used) and transform one; the
log-mel filterbank is the model's first layer (it runs on the GPU) and is timed apart.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cometa.config import Config
from cometa.data.datasets import AudioBank, FrameBank, PairedSamples
from cometa.data.voxceleb import frame_paths, iter_utterances, load_audio, load_frames
from cometa.models.augment import AudioAugmenter, build_eval_transform, build_visual_transform
from cometa.models.features import LogMel

__all__ = ["GPU_PEAK_FLOPS", "UTILISATION", "StrategyPlan", "strategy_plans", "LoaderRate", "measure_loader",
           "loader_workers"]

GPU_PEAK_FLOPS = 989e12  # NVIDIA H100 SXM, dense bf16 tensor-core peak (the datasheet's figure without sparsity)
UTILISATION = 0.2  # assumed model FLOP utilisation of these small-batch convnets (stated, not measured here)


@dataclass(frozen=True)
class StrategyPlan:
    """One strategy of Stage II on one GPU: FLOPs per optimiser step (both encoders, every pass),
    steps per epoch, epoch seconds and GPU-hours of all E_max epochs at ``flops_per_s``, and the
    training samples per second the GPU consumes."""

    strategy: str
    flops_per_step: float
    steps_per_epoch: int
    epoch_s: float
    gpu_hours: float
    samples_per_s: float


def strategy_plans(cfg: Config, n_train: int, audio_flops: float, visual_flops: float, passes: dict[str, float], *,
                   flops_per_s: float = GPU_PEAK_FLOPS * UTILISATION) -> list[StrategyPlan]:
    """:class:`StrategyPlan` of each of ``cfg.stage2.strategies`` for ``n_train`` utterances, with one
    forward of ``audio_flops`` + ``visual_flops`` a sample and ``passes[strategy]`` forwards' worth a sample
    (3 = forward + backward; 9 for Co-Meta's second-order step)."""
    batch = cfg.stage2.batch_size
    steps = max(math.ceil(n_train / batch), 1)
    e_max = cfg.stage2.rounds * cfg.stage2.epochs_per_round
    out = []
    for s in cfg.stage2.strategies:
        per_step = batch * passes.get(s, 3.0) * (audio_flops + visual_flops)
        step_s = per_step / flops_per_s
        epoch_s = steps * step_s
        out.append(StrategyPlan(s, per_step, steps, epoch_s, e_max * epoch_s / 3600, batch / step_s))
    return out


@dataclass(frozen=True)
class LoaderRate:
    """Milliseconds per training sample on one CPU core, per part, and the whole sample as the
    dataset makes it (``sample_ms``); ``n`` samples measured, ``frames`` face frames per utterance."""

    wav_read_ms: float
    crop_augment_ms: float
    jpeg_decode_ms: float  # one face frame, decoded and resized
    all_frames_ms: float  # every frame of the utterance, as FrameBank reads them
    visual_transform_ms: float
    fbank_ms: float  # on the GPU in training (LogMel is the model's first layer)
    sample_ms: float  # PairedSamples.__getitem__: what a loader worker does per sample
    n: int
    frames: float

    @property
    def samples_per_s(self) -> float:
        return 1000.0 / self.sample_ms


def _manifest(split_root, n: int) -> pd.DataFrame:
    """The first ``n`` utterances of a split that have face frames (no full scan of a large split)."""
    rows = []
    for spk, video, utt, path in iter_utterances(split_root):
        frames = frame_paths(f"{split_root}/faces/{spk}/{video}/{utt}")
        if frames:
            rows.append({"audio_path": path, "frame_paths": frames})
        if len(rows) == n:
            break
    if not rows:
        raise FileNotFoundError(f"{split_root}: no utterance with face frames to measure the data loader on")
    return pd.DataFrame(rows)


def _ms(fn, items) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return 1000 * (time.perf_counter() - t0) / max(len(items), 1), out


def measure_loader(cfg: Config, split_root, *, n: int = 24, seed: int = 0) -> LoaderRate:
    """Time the loader's per-sample work on ``n`` utterances of ``split_root`` on one thread (one core)."""
    m = _manifest(split_root, n)
    sr, crop = cfg.features.sample_rate, int(round(cfg.features.crop_seconds * cfg.features.sample_rate))
    size = cfg.visual_encoder.image_size
    augmenter = AudioAugmenter(cfg.augment, sample_rate=sr, seed=seed)
    vis_tf = build_visual_transform(cfg.augment, size) if cfg.augment.stage2_visual else build_eval_transform(size)
    fbank = LogMel.from_config(cfg.features)
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wav_ms, waves = _ms(lambda p: load_audio(p, sample_rate=sr), m["audio_path"])
        crops = [w[:crop] if len(w) >= crop else np.resize(w, crop) for w in waves]
        aug_ms, _ = _ms(lambda w: augmenter(w, rng), crops)
        jpeg_ms, firsts = _ms(lambda ps: load_frames([ps[0]], size=size)[0], m["frame_paths"])
        all_ms, _ = _ms(lambda ps: load_frames(list(ps), size=size), m["frame_paths"])
        tf_ms, _ = _ms(vis_tf, firsts)
        with torch.no_grad():
            fb_ms, _ = _ms(lambda w: fbank(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))[None]), crops)
        ds = PairedSamples(AudioBank(m, sample_rate=sr, cache=False), FrameBank(m, size=size, cache=False),
                           np.arange(len(m)), np.zeros(len(m), dtype=np.int64), np.zeros(len(m), dtype=bool),
                           n_samples=crop, visual_transform=vis_tf,
                           audio_augmenter=augmenter if cfg.augment.stage2_audio else None, seed=seed)
        sample_ms, _ = _ms(ds.__getitem__, range(len(m)))
    finally:
        torch.set_num_threads(threads)
    return LoaderRate(wav_ms, aug_ms, jpeg_ms, all_ms, tf_ms, fb_ms, sample_ms, len(m),
                      float(m["frame_paths"].map(len).mean()))


def loader_workers(samples_per_s: float, rate: LoaderRate) -> int:
    """Loader worker processes (one core each) that keep a GPU consuming ``samples_per_s`` fed."""
    return max(1, math.ceil(samples_per_s / rate.samples_per_s))
