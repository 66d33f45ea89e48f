"""ECAPA-TDNN speaker encoder (Desplanques et al., 2020)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EcapaConfig:
    """ECAPA-TDNN; ``channels`` is C (512 in the paper), ``embed_dim`` the speaker embedding (192)."""

    name: str = "ecapa_tdnn"
    channels: int = 512
    embed_dim: int = 192
    scale: int = 8  # Res2Net scale
    se_bottleneck: int = 128
    attention_channels: int = 128
