"""Stage I: contrastive pretraining of the audio encoder (paper Sec. 2.1, Eq. 1-2)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stage1Config:
    epochs: int = 50
    batch_size: int = 128  # N utterances per mini-batch (2N views)
    lr: float = 1e-3  # Adam
    discriminator: bool = False  # augmentation adversarial term of Huh et al. (ref. [6])
    discriminator_weight: float = 1.0
