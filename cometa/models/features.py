"""Audio features: 80-dim log-mel spectrogram, 25 ms window, 10 ms hop, 16 kHz (paper Sec. 4.4.1),
and the crops of Sec. 2.1 / 4.4.1: random training crops, two non-overlapping segments per
utterance for the contrastive views, fixed evenly spaced crops for embedding extraction."""
from __future__ import annotations

from dataclasses import dataclass

from cometa.config.bounds import bounded

import numpy as np
import torch
import torchaudio
from torch import nn


@dataclass
class FeatureConfig:
    """Log-mel front end and crop lengths."""

    sample_rate: int = bounded(16000, gt=0)
    n_mels: int = bounded(80, ge=1)
    win_ms: float = bounded(25.0, gt=0)
    hop_ms: float = bounded(10.0, gt=0)
    n_fft: int = bounded(512, ge=16)
    crop_seconds: float = bounded(1.8, gt=0)  # random training crop (paper: 1.8 s)
    eval_seconds: float = bounded(0.0, ge=0)  # 0 = whole utterance for embeddings; > 0 = mean of fixed crops of this length


# ---------------------------------------------------------------------------------------------
# log-mel front end


class LogMel(nn.Module):
    """Waveform (B, T) -> log-mel spectrogram (B, n_mels, frames) with per-utterance mean normalisation.

    Hamming window of ``win_ms`` (25 ms), hop ``hop_ms`` (10 ms), ``center=True`` so that a clip of
    T samples gives ``1 + T // hop`` frames (101 for 1 s at 16 kHz). ``log(mel + 1e-6)``, then the
    mean over time of each mel band is subtracted (CMN). Mel bands span ``f_min``..``f_max``
    (20-7600 Hz as in voxceleb_trainer; the top of a 16 kHz band carries little speech energy).

    No parameters; the window and filterbank are buffers, so the module follows ``.to(device)``
    and the input's device. Computed in float32 even under autocast.
    """

    def __init__(self, *, sample_rate: int = 16000, n_mels: int = 80, win_ms: float = 25.0, hop_ms: float = 10.0,
                 n_fft: int = 512, f_min: float = 20.0, f_max: float | None = 7600.0):
        super().__init__()
        win = int(round(win_ms * sample_rate / 1000))
        hop = int(round(hop_ms * sample_rate / 1000))
        if win > n_fft:
            raise ValueError(f"window of {win} samples ({win_ms} ms) exceeds n_fft={n_fft}")
        if f_max is not None:
            f_max = min(f_max, sample_rate / 2)
        self.hop_length = hop
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=win, hop_length=hop, f_min=f_min, f_max=f_max,
            n_mels=n_mels, window_fn=torch.hamming_window, center=True, power=2.0)

    @classmethod
    def from_config(cls, cfg: FeatureConfig) -> "LogMel":
        return cls(sample_rate=cfg.sample_rate, n_mels=cfg.n_mels, win_ms=cfg.win_ms, hop_ms=cfg.hop_ms,
                   n_fft=cfg.n_fft)

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` input samples (``center=True``)."""
        return 1 + n_samples // self.hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 2:
            raise ValueError(f"LogMel expects a (B, T) waveform, got shape {tuple(wave.shape)}")
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = self.mel(wave.float())  # (B, n_mels, frames)
            x = torch.log(x + 1e-6)
            return x - x.mean(dim=-1, keepdim=True)  # CMN over time


# ---------------------------------------------------------------------------------------------
# crops (arrays in, arrays out; randomness from the caller's generator)


def _check_wave(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave)
    if wave.ndim != 1 or len(wave) == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {wave.shape}")
    return wave


def random_crop(wave: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``(n_samples,)`` window of ``wave``; a shorter wave is padded by wrapping
    (repeated from its start), as voxceleb_trainer does. Longer waves give a view into ``wave``."""
    wave = _check_wave(wave)
    if len(wave) < n_samples:
        return np.resize(wave, n_samples)  # cyclic repetition
    start = int(rng.integers(0, len(wave) - n_samples + 1))
    return wave[start:start + n_samples]


def two_segment_starts(length: int, n_samples: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """Start indices ``(s1, s2)`` and common length ``n`` of two non-overlapping segments of a
    ``length``-sample utterance (Sec. 2.1).

    ``n = min(n_samples, length // 2)``: an utterance shorter than ``2 * n_samples`` gives two
    segments of ``length // 2`` samples (the caller pads them up by wrapping). The pair is drawn
    uniformly over all non-overlapping placements: the free samples ``length - 2n`` are split at
    two sorted uniform cut points; which of the two segments comes first is a coin flip.
    """
    n = min(n_samples, length // 2)
    if n < 1:
        raise ValueError(f"an utterance of {length} samples is too short for two non-overlapping segments")
    slack = length - 2 * n
    u1, u2 = sorted(int(v) for v in rng.integers(0, slack + 1, size=2))
    left, right = u1, u2 + n  # right - left >= n: no overlap
    if rng.random() < 0.5:
        left, right = right, left
    return left, right, n


def two_segments(wave: np.ndarray, n_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two non-overlapping segments of equal length from one utterance (paper Sec. 2.1).

    Each is ``n_samples`` long when ``len(wave) >= 2 * n_samples``; otherwise both shrink to
    ``len(wave) // 2`` samples (no overlap is kept over length) and the caller pads them to
    ``n_samples`` with :func:`random_crop` (wrapping). Returns views into ``wave``.
    """
    wave = _check_wave(wave)
    s1, s2, n = two_segment_starts(len(wave), n_samples, rng)
    return wave[s1:s1 + n], wave[s2:s2 + n]


def eval_crops(wave: np.ndarray, n_samples: int, *, n_crops: int = 10) -> np.ndarray:
    """(K, n_samples) fixed crops at evenly spaced starts over the utterance (for embeddings with
    ``eval_seconds > 0``: the utterance embedding is the mean of the K crop embeddings).

    ``K = n_crops`` (10, as voxceleb_trainer) unless the utterance leaves fewer distinct start
    positions; an utterance no longer than ``n_samples`` gives one wrap-padded crop.
    """
    wave = _check_wave(wave)
    if n_crops < 1:
        raise ValueError("n_crops must be >= 1")
    if len(wave) <= n_samples:
        return np.resize(wave, n_samples)[None]
    starts = np.unique(np.round(np.linspace(0, len(wave) - n_samples, n_crops)).astype(np.int64))
    return np.stack([wave[s:s + n_samples] for s in starts])


__all__ = ["FeatureConfig", "LogMel", "random_crop", "two_segment_starts", "two_segments", "eval_crops"]
