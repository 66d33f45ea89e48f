"""Data augmentation (paper Sec. 4.2): MUSAN-style additive noise + RIR reverberation; visual transforms."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AugmentConfig:
    """Audio: noise / music / babble at an SNR drawn from each category's range, reverberation.
    Visual: resize + random crop, flip, colour distortion, greyscale, blur, each with ``visual_p``."""

    musan_dir: str = ""  # MUSAN root (noise/ music/ speech/); "" = the project's generated bank
    rir_dir: str = ""  # RIRS_NOISES root; "" = generated impulse responses
    p_noise: float = 0.6
    p_reverb: float = 0.3
    snr_noise: tuple[float, float] = (0.0, 15.0)
    snr_music: tuple[float, float] = (5.0, 15.0)
    snr_babble: tuple[float, float] = (13.0, 20.0)
    visual_p: float = 0.6
    crop_scale: tuple[float, float] = (0.7, 1.0)
    stage2_audio: bool = True  # augment audio crops in Stage II too
    stage2_visual: bool = True
