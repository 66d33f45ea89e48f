"""Embedded VoxCeleb-shaped audio-visual corpus, generated deterministically by seed."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SyntheticConfig:
    """Sizes and difficulty knobs of the generated corpus."""

    seed: int = 0
    n_train_speakers: int = 200
    n_test_speakers: int = 40
    videos_per_speaker: int = 3
    utterances_per_video: int = 3
    min_seconds: float = 2.0
    max_seconds: float = 6.0
    image_size: int = 64  # face frames are square, this many pixels
    voice_twin_fraction: float = 0.15  # fraction of identities that have a near-identical-voice twin
    face_twin_fraction: float = 0.15  # ... a near-identical-face twin
    snr_db_min: float = 5.0  # session noise level range
    snr_db_max: float = 30.0
    face_noise: float = 0.05  # pixel noise std (0..1 scale)
    n_trials_o: int = 2000
    n_trials_e: int = 6000
    n_trials_h: int = 2000
