"""Torch datasets over a manifest: Stage I view pairs and Stage II paired audio-visual samples.

Randomness is drawn from ``np.random.default_rng([seed, epoch, index])`` per sample, so a batch is
the same whatever the number of workers and after a resume from a checkpoint.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cometa.data.crops import random_crop, two_segments
from cometa.data.voxceleb import load_audio, load_frames


class AudioBank:
    """Waveforms of a manifest's utterances, read on demand and optionally kept in memory.

    ``cache=True`` suits the embedded corpora; VoxCeleb-sized runs read each file when it is
    needed. A cached waveform that came from 16-bit PCM is kept as its int16 samples (half the
    memory of float32: the demo's train split is ~170 MB) and handed out as exactly the float32
    values soundfile reads (sample / 32768).
    """

    def __init__(self, manifest: pd.DataFrame, *, sample_rate: int = 16000, cache: bool = True):
        self.paths = manifest["audio_path"].tolist()
        self.sample_rate = sample_rate
        self.cache = cache
        self._store: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        if self.cache and i in self._store:
            kept = self._store[i]
            return kept.astype(np.float32) / np.float32(32768) if kept.dtype == np.int16 else kept
        wave = load_audio(self.paths[i], sample_rate=self.sample_rate)
        if self.cache:
            self._store[i] = _compact(wave)
        return wave


def _compact(wave: np.ndarray) -> np.ndarray:
    """int16 samples when ``wave`` is exactly 16-bit PCM scaled by 1/32768, else ``wave`` itself."""
    q = np.clip(np.rint(wave * np.float32(32768)), -32768, 32767).astype(np.int16)
    return q if np.array_equal(q.astype(np.float32) / np.float32(32768), wave) else wave


class FrameBank:
    """Face frames of a manifest's utterances as uint8 (F, S, S, 3), optionally cached."""

    def __init__(self, manifest: pd.DataFrame, *, size: int, cache: bool = True):
        self.frame_paths = manifest["frame_paths"].tolist()
        self.size = size
        self.cache = cache
        self._store: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.frame_paths)

    def has_frames(self, i: int) -> bool:
        return len(self.frame_paths[i]) > 0

    def __getitem__(self, i: int) -> np.ndarray:
        if self.cache and i in self._store:
            return self._store[i]
        frames = load_frames(list(self.frame_paths[i]), size=self.size)
        if self.cache:
            self._store[i] = frames
        return frames


def epoch_batches(n: int, batch_size: int, key: Sequence[int]) -> list[np.ndarray]:
    """Shuffle 0..n-1 with ``np.random.default_rng(key)`` and cut it into mini-batches; a last batch
    of fewer than 2 is dropped (BatchNorm and contrastive negatives need two)."""
    order = np.random.default_rng(list(key)).permutation(n)
    return [b for b in (order[i:i + batch_size] for i in range(0, n, batch_size)) if len(b) >= 2]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


class ContrastivePairs(Dataset):
    """Stage I (Sec. 2.1): two non-overlapping equal-length segments of one utterance, each
    augmented independently. Items: (view1 (T,), view2 (T,), aug1, aug2)."""

    def __init__(self, bank: AudioBank, *, n_samples: int, augmenter=None, seed: int = 0):
        self.bank, self.n_samples, self.augmenter, self.seed = bank, n_samples, augmenter, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.bank)

    def __getitem__(self, i: int):
        rng = sample_rng(self.seed, self.epoch, i)
        s1, s2 = two_segments(self.bank[i], self.n_samples, rng)
        s1, s2 = random_crop(s1, self.n_samples, rng), random_crop(s2, self.n_samples, rng)
        a1 = a2 = 0
        if self.augmenter is not None:
            s1, a1 = self.augmenter(s1, rng)
            s2, a2 = self.augmenter(s2, rng)
        return (torch.from_numpy(np.ascontiguousarray(s1, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(s2, dtype=np.float32)), int(a1), int(a2))


class PairedSamples(Dataset):
    """Stage II: the audio crop and one face frame of the same utterance, sharing one pseudo label.

    Parameters
    ----------
    rows : (M,) rows of the banks that take part this round (consensus label kept).
    labels : (M,) consensus pseudo labels, contiguous 0..K-1.
    noisy : (M,) bool, label wrong w.r.t. the true identity (instrumentation only).
    """

    def __init__(self, audio: AudioBank, frames: FrameBank, rows: Sequence[int] | np.ndarray, labels: np.ndarray,
                 noisy: np.ndarray, *, n_samples: int, visual_transform, audio_augmenter=None, seed: int = 0):
        self.audio, self.frames = audio, frames
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.noisy = np.asarray(noisy, dtype=bool)
        self.n_samples, self.visual_transform = n_samples, visual_transform
        self.augmenter, self.seed = audio_augmenter, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, j: int):
        row = int(self.rows[j])
        rng = sample_rng(self.seed, self.epoch, row)
        wave = random_crop(self.audio[row], self.n_samples, rng)
        if self.augmenter is not None:
            wave, _ = self.augmenter(wave, rng)
        frames = self.frames[row]
        frame = frames[int(rng.integers(len(frames)))]  # (S, S, 3) uint8
        # torchvision's random transforms draw from torch's global CPU generator: seed it per sample
        # and restore it afterwards, so that the training loop's own torch RNG stream is left
        # untouched (the generator's own manual_seed: torch.manual_seed costs ~1 ms a call)
        gen = torch.default_generator
        state = gen.get_state()
        try:
            gen.manual_seed(int(rng.integers(2**31)))
            image = self.visual_transform(frame)
        finally:
            gen.set_state(state)
        return (torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), image,
                int(self.labels[j]), bool(self.noisy[j]), j)
