"""Builders for the two encoders as the pipeline uses them, and device selection.

The audio model takes raw waveforms: the log-mel front end (no parameters) is its first layer,
so that embedding extraction, Stage I and Stage II all feed it the same thing.
"""
from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from cometa.models.encoders import build_audio_encoder, build_visual_encoder
from cometa.models.features import LogMel


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error.

    Under torchrun (``LOCAL_RANK`` set) a bare ``cuda`` means this rank's GPU, ``cuda:LOCAL_RANK``.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but no CUDA device is available (use device: auto or cpu)")
    return dev


def build_audio_model(cfg, *, adapters: bool = True) -> nn.Module:
    """Waveform (B, T) -> speaker embedding (B, D): LogMel then the configured audio encoder.

    ``adapters=False`` builds it without ``audio_encoder.adapters`` whatever the config says: Stage I
    never has adapters (they are inserted, as the identity, when Stage II starts from its encoder).
    """
    enc = cfg.audio_encoder
    if not adapters and enc.adapters.enabled:
        enc = dataclasses.replace(enc, adapters=dataclasses.replace(enc.adapters, enabled=False))
    return nn.Sequential(LogMel.from_config(cfg.features), build_audio_encoder(enc, cfg.features))


def build_visual_model(cfg) -> nn.Module:
    """Face images (B, 3, S, S) in [0, 1] -> face embedding (B, D)."""
    return build_visual_encoder(cfg.visual_encoder)
