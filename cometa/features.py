"""Audio features: 80-dim log-mel spectrogram, 25 ms window, 10 ms hop, 16 kHz (paper Sec. 4.4.1)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FeatureConfig:
    """Log-mel front end and crop lengths."""

    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    crop_seconds: float = 1.8  # random training crop (paper: 1.8 s)
    eval_seconds: float = 0.0  # 0 = whole utterance for embeddings; > 0 = mean of fixed crops of this length

    def validate(self) -> None:
        if self.crop_seconds <= 0:
            raise ValueError("crop_seconds must be > 0")
