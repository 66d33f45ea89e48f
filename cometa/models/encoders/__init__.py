"""Encoder plug-ins: an explicit registry from config ``name`` to class.

Each class has ``modality`` ("audio" | "visual") and a ``from_config`` constructor; the audio
encoders take log-mel features (B, n_mels, T), the visual ones face images (B, 3, H, W) in [0, 1].
Both return embeddings (B, embed_dim).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from cometa.models.encoders.ecapa import EcapaConfig, EcapaTDNN
from cometa.models.encoders.resnet import FaceResNet, ResNetConfig, embed_frames
from cometa.models.features import FeatureConfig

ENCODERS: dict[str, Any] = {  # name -> an nn.Module class with ``modality`` and ``from_config``
    "ecapa_tdnn": EcapaTDNN,
    "resnet": FaceResNet,
}

__all__ = ["ENCODERS", "EcapaConfig", "EcapaTDNN", "FaceResNet", "ResNetConfig", "build_audio_encoder",
           "build_visual_encoder", "count_parameters", "embed_frames"]


def _lookup(name: str, modality: str) -> Any:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder '{name}' (registered: {', '.join(sorted(ENCODERS))})")
    cls = ENCODERS[name]
    if cls.modality != modality:
        names = sorted(k for k, c in ENCODERS.items() if c.modality == modality)
        raise ValueError(f"encoder '{name}' is a {cls.modality} encoder, not {modality} "
                         f"({modality} encoders: {', '.join(names)})")
    return cls


def build_audio_encoder(cfg: EcapaConfig, feature_cfg: FeatureConfig) -> nn.Module:
    """Log-mel (B, feature_cfg.n_mels, T) -> (B, cfg.embed_dim), the class named by ``cfg.name``."""
    return _lookup(cfg.name, "audio").from_config(cfg, n_mels=feature_cfg.n_mels)


def build_visual_encoder(cfg: ResNetConfig) -> nn.Module:
    """Face images (B, 3, S, S) in [0, 1] -> (B, cfg.embed_dim), the class named by ``cfg.name``."""
    return _lookup(cfg.name, "visual").from_config(cfg)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements (each shared tensor counted once; buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
