"""Handcrafted, training-free verification baselines: how hard is a corpus before any learning?

Audio: mean and standard deviation of a 40-band log-mel spectrogram over the utterance's loudest
frames (a crude energy VAD), level-normalised, centred over the embedded set. Face: the mean over an
utterance's frames of the central crop of its pixels downsampled to ``size x size``, standardised per
dimension over the embedded set. Both are scored with cosine similarity; on the embedded corpus they
are the calibration target of the generator (EER roughly 10-35 % on the O-like list).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from cometa.evaluation.metrics import eer

__all__ = ["baseline_eers", "audio_baseline_embeddings", "face_baseline_embeddings", "log_mel"]

SAMPLE_RATE = 16000
_N_FFT, _WIN, _HOP, _N_MELS = 512, 400, 160, 40  # 25 ms windows, 10 ms hop
_ACTIVE_QUANTILE = 0.7  # keep the 30 % loudest frames: silence and noise-only frames carry the channel


def _mel_filterbank(n_mels: int = _N_MELS, n_fft: int = _N_FFT, sr: int = SAMPLE_RATE,
                    fmin: float = 20.0, fmax: float = 7600.0) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters equally spaced on the HTK mel scale."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)))


_MEL = _mel_filterbank()


def log_mel(wav: np.ndarray) -> np.ndarray:
    """(n,) waveform at 16 kHz -> (T, 40) log-mel energies (T >= 1)."""
    wav = np.pad(np.asarray(wav, np.float64), (0, max(0, _WIN - len(wav))))
    frames = np.lib.stride_tricks.sliding_window_view(wav, _WIN)[::_HOP] * np.hamming(_WIN)  # (T, 400)
    power = np.abs(np.fft.rfft(frames, n=_N_FFT, axis=1)) ** 2  # (T, 257)
    return np.log(power @ _MEL.T + 1e-8)


def _standardise(x: np.ndarray) -> np.ndarray:
    """Per-dimension z-score over the rows (a constant dimension stays 0)."""
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 1e-12, sd, 1.0)


def audio_baseline_embeddings(wav_paths: list[Path]) -> np.ndarray:
    """(N, 80) [mean - level, std] over the loudest frames of each file's (T, 40) log-mel spectrogram,
    centred over the N files (no per-dimension scaling: it would inflate the noisiest bands)."""
    out = []
    for path in wav_paths:
        wav, sr = sf.read(str(path), dtype="float64", always_2d=True)
        if sr != SAMPLE_RATE:
            raise ValueError(f"{path}: sample rate {sr}, expected {SAMPLE_RATE}")
        lm = log_mel(wav.mean(1))  # (T, 40)
        energy = lm.mean(1)
        active = lm[energy >= np.quantile(energy, _ACTIVE_QUANTILE)]
        mean = active.mean(0)
        out.append(np.concatenate([mean - mean.mean(), active.std(0)]))  # level-normalised: gain-free
    x = np.array(out).reshape(len(out), 2 * _N_MELS)
    return x - x.mean(0)


def face_baseline_embeddings(frame_dirs: list[Path], *, size: int = 16, crop: float = 0.625) -> np.ndarray:
    """(N, size * size * 3) mean over each directory's ``*.jpg`` frames of the central ``crop``
    fraction (per side) of every frame, downsampled to ``size x size``, standardised per dimension.

    The crop keeps the inner face; the border is mostly background, which changes with the session.
    """
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop must be in (0, 1], got {crop}")
    out = []
    for d in frame_dirs:
        files = sorted(Path(d).glob("*.jpg"))
        if not files:
            raise FileNotFoundError(f"{d}: no *.jpg face frames")
        frames = []
        for f in files:
            im = Image.open(f).convert("RGB")
            w, h = im.size
            dx, dy = round(w * (1 - crop) / 2), round(h * (1 - crop) / 2)
            im = im.crop((dx, dy, w - dx, h - dy)).resize((size, size), Image.Resampling.BOX)
            frames.append(np.asarray(im, np.float64) / 255.0)
        out.append(np.mean(frames, axis=0).reshape(-1))
    return _standardise(np.array(out).reshape(len(out), size * size * 3))


def read_trials(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """A VoxCeleb trial list ``label enroll test`` -> ((M,) int labels, enroll paths, test paths)."""
    labels, enroll, test = [], [], []
    for no, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or fields[0] not in ("0", "1"):
            raise ValueError(f"{path}:{no}: expected 'label enroll test' with label 0|1, got {line!r}")
        labels.append(int(fields[0]))
        enroll.append(fields[1])
        test.append(fields[2])
    return np.array(labels, int), enroll, test


def cosine_scores(emb: np.ndarray, enroll_idx: np.ndarray, test_idx: np.ndarray) -> np.ndarray:
    """(M,) cosine similarity between rows ``enroll_idx`` and ``test_idx`` of ``emb`` (N, D)."""
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return np.einsum("md,md->m", unit[enroll_idx], unit[test_idx])


def baseline_eers(root: Path, *, trials: str = "veri_test2.txt") -> dict[str, float]:
    """{"audio": eer, "face": eer} (fractions) of the two baselines on ``root/trials/<trials>``."""
    root = Path(root)
    labels, enroll, test = read_trials(root / "trials" / trials)
    utts = sorted(set(enroll) | set(test))
    index = {u: i for i, u in enumerate(utts)}
    e_idx = np.array([index[u] for u in enroll])
    t_idx = np.array([index[u] for u in test])
    audio = audio_baseline_embeddings([root / "test" / "wav" / u for u in utts])
    face = face_baseline_embeddings([root / "test" / "faces" / u[: -len(".wav")] for u in utts])
    return {name: float(eer(cosine_scores(emb, e_idx, t_idx), labels)[0])
            for name, emb in (("audio", audio), ("face", face))}
