"""The crops of Sec. 2.1 / 4.4.1: random training crops, two non-overlapping segments per utterance
for the contrastive views, fixed evenly spaced crops for embedding extraction.

Arrays in, arrays out; randomness from the caller's generator. (Re-exported by
:mod:`cometa.models.features`, beside the log-mel front end that reads the crops.)
"""
from __future__ import annotations

import numpy as np

__all__ = ["random_crop", "two_segment_starts", "two_segments", "eval_crops"]


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
