"""Audio features: 80-dim log-mel spectrogram, 25 ms window, 10 ms hop, 16 kHz (paper Sec. 4.4.1).

The crops of Sec. 2.1 / 4.4.1 (random training crops, two non-overlapping segments per utterance
for the contrastive views, fixed evenly spaced crops for embedding extraction) are plain array
functions of the data layer, :mod:`cometa.data.crops`, re-exported here."""
from __future__ import annotations

import torch
import torchaudio
from torch import nn

from cometa.config.sections import FeatureConfig
from cometa.data.crops import eval_crops, random_crop, two_segment_starts, two_segments

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
    def from_config(cls, cfg: FeatureConfig) -> LogMel:
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


__all__ = ["FeatureConfig", "LogMel", "random_crop", "two_segment_starts", "two_segments", "eval_crops"]
