"""Data augmentation (paper Sec. 4.2): MUSAN-style additive noise + RIR reverberation; visual transforms.

Audio (:class:`AudioAugmenter`): with probability ``p_reverb`` the waveform is convolved with a room
impulse response (aligned to its direct path, same length out as in); then, with probability
``p_noise``, one of the three MUSAN categories (noise, music, babble) is added at an SNR drawn
uniformly from that category's range. The sources are the MUSAN / RIRS_NOISES files when
``musan_dir`` / ``rir_dir`` are set (read lazily, a segment at a time), otherwise a bank the
project synthesises in memory, deterministically from a seed (see :func:`generate_bank`).

The augmentation applied is returned as an int code (:func:`aug_code`): 0 none, 1 noise, 2 music,
3 babble, plus 4 when reverberation was applied (so 4..7 are the reverberant versions). The
discriminator option of Stage I compares these codes between the two views.

Visual (:func:`build_visual_transform`): resize, then, with probability ``visual_p`` (0.6 in the
paper), SimCLR's chain: random resized crop, horizontal flip, colour distortion, greyscale and
Gaussian blur, each with SimCLR's own probability.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy import signal
from torchvision.transforms import v2

from cometa.config.sections import AugmentConfig

# ---------------------------------------------------------------------------------------------
# config and augmentation codes


CATEGORIES = ("noise", "music", "babble")  # codes 1, 2, 3
AUG_NONE, AUG_REVERB = 0, 4
BABBLE_SPEAKERS = (3, 7)  # babble = sum of 3..7 speech signals


def aug_code(category: str | None, reverb: bool) -> int:
    """0 none, 1 noise, 2 music, 3 babble; + 4 when reverberated."""
    base = 0 if category is None else CATEGORIES.index(category) + 1
    return base + (AUG_REVERB if reverb else 0)


def describe_aug(code: int) -> str:
    """Human-readable name of an augmentation code, e.g. ``"music+reverb"``."""
    base, reverb = code % 4, code >= AUG_REVERB
    name = "none" if base == 0 else CATEGORIES[base - 1]
    return ("reverb" if base == 0 else name + "+reverb") if reverb else name


@dataclass(frozen=True)
class AugInfo:
    """What :meth:`AudioAugmenter.augment` did to one waveform."""

    category: str | None  # "noise" | "music" | "babble" | None
    snr_db: float  # drawn SNR (nan when no noise was added)
    reverb: bool

    @property
    def code(self) -> int:
        return aug_code(self.category, self.reverb)


# ---------------------------------------------------------------------------------------------
# sources: the generated in-memory bank, or MUSAN / RIR files


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return (x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)).astype(np.float32)


def _wrap(x: np.ndarray, start: int, n: int) -> np.ndarray:
    """``n`` samples of ``x`` from ``start``, wrapping around its end."""
    return x[(start + np.arange(n)) % len(x)]


def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def _noise_clip(rng: np.random.Generator, kind: int, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    if kind < 3:  # white, pink, brown
        return _coloured(rng, n, float(kind))
    if kind == 3:  # mains hum with harmonics + band-limited noise
        f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
        hum = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
                  for k in range(1, 9))
        lo = rng.uniform(150, 1500)
        sos = signal.butter(4, [lo, min(lo * rng.uniform(1.5, 4.0), 0.45 * sr)], "bandpass", fs=sr, output="sos")
        return _unit_rms(hum) + rng.uniform(0.2, 1.0) * _unit_rms(signal.sosfilt(sos, rng.standard_normal(n)))
    # transient clicks: decaying noise bursts at random times over a faint white floor
    out = 0.05 * rng.standard_normal(n)
    for c in rng.integers(0, n, size=int(rng.uniform(2, 20) * n / sr)):
        m = int(rng.uniform(0.003, 0.03) * sr)
        burst = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 5)) * rng.uniform(0.5, 3.0)
        out[c:c + m] += burst[:n - c]
    return out


def _music_clip(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A melody and a bass line of harmonic notes that change on the beat, plus kick and hi-hat."""
    beat = 60.0 / rng.uniform(70, 160)  # seconds per beat
    scale = np.array([0, 2, 4, 5, 7, 9, 11]) + rng.integers(0, 12)
    out = np.zeros(n)
    for base_midi, sub, level in ((rng.integers(60, 72), rng.choice([1, 2]), 1.0), (rng.integers(36, 48), 1, 0.6)):
        step = int(beat / sub * sr)
        decay = rng.uniform(2.0, 8.0)  # 1/s
        rolloff = rng.uniform(0.4, 0.8)  # harmonic amplitude ratio
        for start in range(0, n, step):
            m = min(step, n - start)
            f0 = 440.0 * 2 ** ((base_midi + rng.choice(scale) - 69) / 12)
            tt = np.arange(m) / sr
            note = sum(rolloff ** k * np.sin(2 * np.pi * (k + 1) * f0 * tt) for k in range(6) if (k + 1) * f0 < sr / 2)
            env = np.minimum(tt / 0.01, 1.0) * np.exp(-decay * tt)
            out[start:start + m] += level * note * env
    step = int(beat * sr)
    for start in range(0, n, step):  # kick (falling 100->50 Hz thump) and hi-hat on the off-beat
        m = min(int(0.15 * sr), n - start)
        tt = np.arange(m) / sr
        out[start:start + m] += 1.5 * np.sin(2 * np.pi * (100 * tt - 170 * tt ** 2)) * np.exp(-tt / 0.04)
        h = start + step // 2
        if h < n:
            k = min(int(0.03 * sr), n - h)
            out[h:h + k] += 0.3 * rng.standard_normal(k) * np.exp(-np.arange(k) / (0.006 * sr))
    return out


def _speech_clip(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Speech-like source-filter signal: a glottal pulse train at a wandering F0 through 2-3 formant
    resonators whose frequencies change every syllable (120-300 ms), with syllabic envelopes and pauses."""
    t = np.arange(n) / sr
    f0 = rng.uniform(85, 240) * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t + rng.uniform(0, 6.3)))
    phase = np.cumsum(f0 / sr)
    excitation = np.diff(np.floor(phase), prepend=0.0) + 0.03 * rng.standard_normal(n)  # pulses + aspiration
    out = np.zeros(n)
    start = 0
    while start < n:
        m = min(int(rng.uniform(0.12, 0.3) * sr), n - start)
        if rng.random() > 0.2:  # else a pause
            seg = excitation[start:start + m]
            formants = [rng.uniform(300, 900), rng.uniform(900, 2500), rng.uniform(2300, 3400)]
            for f in formants[:rng.integers(2, 4)]:
                r = np.exp(-np.pi * rng.uniform(60, 150) / sr)  # pole radius from the bandwidth
                seg = signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r], seg)
            out[start:start + m] = seg * np.hanning(m)
        start += m
    return out


def _rir_clip(rng: np.random.Generator, sr: int) -> np.ndarray:
    """Exponentially decaying noise (RT60 0.2-0.8 s: -60 dB at RT60) after a unit direct-path peak
    at a small random delay; the tail is kept below the peak so that argmax|rir| is the direct path."""
    rt60 = rng.uniform(0.2, 0.8)
    delay = int(rng.integers(0, int(0.005 * sr) + 1))
    gap = int(rng.uniform(0.001, 0.005) * sr)  # before the first reflections
    m = int(rt60 * sr)
    tail = rng.standard_normal(m) * rng.uniform(0.1, 0.4) * np.exp(-6.908 * np.arange(m) / (rt60 * sr))
    rir = np.zeros(delay + gap + m)
    rir[delay] = 1.0
    rir[delay + gap:] = np.clip(tail, -0.9, 0.9)
    return rir


def generate_bank(seed: int, *, sample_rate: int = 16000, seconds: float = 3.0, n_noise: int = 10,
                  n_music: int = 6, n_speech: int = 12, n_rir: int = 12) -> dict[str, list[np.ndarray]]:
    """The project's own augmentation sources, deterministic in ``seed``: unit-RMS float32 clips of
    ``seconds`` under ``noise`` (white, pink, brown, hum, clicks in turn), ``music``, ``speech``
    (speech-like signals that babble sums), and unit-energy impulse responses under ``rir``."""
    n, sr = int(seconds * sample_rate), sample_rate
    rng = {k: np.random.default_rng([seed, i]) for i, k in enumerate(("noise", "music", "speech", "rir"))}
    return {
        "noise": [_unit_rms(_noise_clip(rng["noise"], i % 5, n, sr)) for i in range(n_noise)],
        "music": [_unit_rms(_music_clip(rng["music"], n, sr)) for _ in range(n_music)],
        "speech": [_unit_rms(_speech_clip(rng["speech"], n, sr)) for _ in range(n_speech)],
        "rir": [_unit_energy(_rir_clip(rng["rir"], sr)) for _ in range(n_rir)],
    }


def _unit_energy(rir: np.ndarray) -> np.ndarray:
    return (rir / max(float(np.sqrt(np.sum(rir ** 2))), 1e-12)).astype(np.float32)


class _MemorySource:
    """Clips held in memory; a segment is a random window, wrapping around the clip's end."""

    def __init__(self, clips: list[np.ndarray]):
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def clip(self, rng: np.random.Generator) -> np.ndarray:
        return self.clips[int(rng.integers(len(self.clips)))]

    def segment(self, n: int, rng: np.random.Generator) -> np.ndarray:
        c = self.clip(rng)
        return _wrap(c, int(rng.integers(len(c))), n)


class _FileSource:
    """Wav files under a folder (recursively), read a segment at a time with soundfile (mono mix,
    resampled to ``sample_rate`` when a file differs)."""

    def __init__(self, root: Path, sample_rate: int):
        self.paths = sorted(str(p) for p in Path(root).rglob("*.wav"))
        if not self.paths:
            raise FileNotFoundError(f"no .wav files under {root}")
        self.sample_rate = sample_rate
        self._frames: dict[str, tuple[int, int]] = {}  # path -> (frames, samplerate)

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, path: str, start: int = 0, frames: int = -1) -> np.ndarray:
        x, sr = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if sr != self.sample_rate:
            x = signal.resample_poly(x, self.sample_rate, sr).astype(np.float32)
        return x

    def _info(self, path: str) -> tuple[int, int]:
        if path not in self._frames:
            info = sf.info(path)
            self._frames[path] = (info.frames, info.samplerate)
        return self._frames[path]

    def clip(self, rng: np.random.Generator) -> np.ndarray:
        return self._read(self.paths[int(rng.integers(len(self.paths)))])

    def segment(self, n: int, rng: np.random.Generator) -> np.ndarray:
        path = self.paths[int(rng.integers(len(self.paths)))]
        frames, sr = self._info(path)
        need = int(np.ceil(n * sr / self.sample_rate)) + 1
        if frames > need:
            x = self._read(path, start=int(rng.integers(frames - need + 1)), frames=need)
            return _wrap(x, 0, n)
        x = self._read(path)
        if len(x) == 0:
            raise ValueError(f"empty audio file {path}")
        return _wrap(x, int(rng.integers(len(x))), n)


# ---------------------------------------------------------------------------------------------
# the audio augmenter


def add_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wave + g * noise`` with g such that 10 log10(P_wave / P_{g noise}) = ``snr_db``
    (P = mean square over the whole segment)."""
    p_s = float(np.mean(wave.astype(np.float64) ** 2))
    p_n = max(float(np.mean(noise.astype(np.float64) ** 2)), 1e-20)
    g = np.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0)))
    return (wave + g * noise).astype(np.float32)


def apply_rir(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Reverberate: convolve with the unit-energy ``rir`` and keep ``len(wave)`` samples starting at
    the direct path (argmax |rir|), so that the output is aligned with the input."""
    rir = _unit_energy(np.asarray(rir, dtype=np.float64))
    d = int(np.argmax(np.abs(rir)))
    return signal.fftconvolve(wave, rir, mode="full")[d:d + len(wave)].astype(np.float32)


class AudioAugmenter:
    """Reverberation and MUSAN-style additive noise for (T,) waveforms (paper Sec. 4.2).

    Parameters
    ----------
    cfg : probabilities, SNR ranges and the MUSAN / RIR folders ("" = the generated bank).
    sample_rate : of the waveforms (files at another rate are resampled).
    seed : seed of the generated bank (the bank is the same for every process with this seed);
        also of the generator used when ``__call__`` gets no ``rng``.
    """

    def __init__(self, cfg: AugmentConfig, *, sample_rate: int = 16000, seed: int = 0):
        for name in ("p_noise", "p_reverb"):
            if not 0.0 <= getattr(cfg, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(cfg, name)}")
        self.cfg, self.sample_rate = cfg, sample_rate
        self.snr = {"noise": cfg.snr_noise, "music": cfg.snr_music, "babble": cfg.snr_babble}
        bank = None
        self.sources: dict[str, _FileSource | _MemorySource]
        self.rirs: _FileSource | _MemorySource
        if cfg.musan_dir:
            root = Path(cfg.musan_dir)
            self.sources = {k: _FileSource(root / k, sample_rate) for k in ("noise", "music", "speech")}
        else:
            bank = generate_bank(seed, sample_rate=sample_rate)
            self.sources = {k: _MemorySource(bank[k]) for k in ("noise", "music", "speech")}
        if cfg.rir_dir:
            self.rirs = _FileSource(Path(cfg.rir_dir), sample_rate)
        else:
            self.rirs = _MemorySource((bank or generate_bank(seed, sample_rate=sample_rate))["rir"])
        self._rng = np.random.default_rng(seed)

    def noise(self, category: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n,) samples of one category; ``babble`` is the sum of 3-7 unit-RMS speech segments."""
        if category == "babble":
            k = int(rng.integers(BABBLE_SPEAKERS[0], BABBLE_SPEAKERS[1] + 1))
            return np.sum([_unit_rms(self.sources["speech"].segment(n, rng)) for _ in range(k)], axis=0)
        if category not in self.snr:
            raise ValueError(f"unknown noise category {category!r} (choose from {', '.join(CATEGORIES)})")
        return self.sources[category].segment(n, rng)

    def augment(self, wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, AugInfo]:
        """Reverberation (prob. ``p_reverb``), then one noise category (prob. ``p_noise``) at an SNR
        drawn uniformly from its range, measured against the (reverberant) speech."""
        out = np.asarray(wave, dtype=np.float32)
        reverb = bool(rng.random() < self.cfg.p_reverb)
        if reverb:
            out = apply_rir(out, self.rirs.clip(rng))
        category, snr = None, float("nan")
        if rng.random() < self.cfg.p_noise:
            category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            snr = float(rng.uniform(*self.snr[category]))
            out = add_at_snr(out, self.noise(category, len(out), rng), snr)
        return out, AugInfo(category, snr, reverb)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
        """(augmented (T,) float32, augmentation code); see :func:`aug_code`."""
        out, info = self.augment(wave, self._rng if rng is None else rng)
        return out, info.code


# ---------------------------------------------------------------------------------------------
# visual transforms


def build_visual_transform(cfg: AugmentConfig, image_size: int):
    """Training transform for one face frame: uint8 (H, W, 3) array or (3, H, W) tensor ->
    float32 (3, image_size, image_size) in [0, 1].

    Resize to ``image_size``; then, with probability ``cfg.visual_p`` (0.6 in the paper, Sec. 4.2:
    "the augmentation is performed at a probability of 0.6"), SimCLR's chain as in Cai et al.
    (ref. [14]): random resized crop (scale ``cfg.crop_scale``), horizontal flip (p 0.5), colour
    distortion (ColorJitter 0.4, 0.4, 0.4, 0.1; p 0.8), greyscale (p 0.2) and Gaussian blur (kernel
    ~10 % of the image, sigma 0.1-2; p 0.5). A frame is left as it is with probability
    1 - ``visual_p``; with ``visual_p = 0`` this equals :func:`build_eval_transform`.
    """
    s = image_size
    kernel = max(3, (s // 10) | 1)  # odd
    chain = [
        v2.RandomResizedCrop((s, s), scale=tuple(cfg.crop_scale), antialias=True),
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
    ]
    return v2.Compose([
        v2.ToImage(),  # uint8 (H, W, 3) numpy or (3, H, W) tensor -> (3, H, W) image tensor
        v2.Resize((s, s), antialias=True),
        v2.RandomApply(chain, p=cfg.visual_p),
        v2.ToDtype(torch.float32, scale=True),
    ])


def build_eval_transform(image_size: int):
    """Evaluation transform: resize to ``image_size`` only -> float32 (3, S, S) in [0, 1]."""
    return v2.Compose([v2.ToImage(), v2.Resize((image_size, image_size), antialias=True),
                       v2.ToDtype(torch.float32, scale=True)])
