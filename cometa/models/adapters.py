"""Hourglass adapters and adapter-only fine-tuning (cross-lingual transfer paper, Sec. 2 and Table 6;
Pfeiffer et al., MAD-X).

An adapter after a block of width C maps h (B, C, ...) to h + W_up relu(W_down h), with W_down a 1x1
projection to ``round(bottleneck * C)`` channels and W_up back to C. W_up (and its bias) start at
zero, so a freshly inserted adapter is the identity and the encoder computes what it computed
before; the adapter learns a correction of the frozen block's output.

:func:`freeze_for_adapters` leaves only the adapters of an encoder trainable. The frozen part's
BatchNorm layers must then neither move their running statistics nor normalise with the batch's:
:func:`frozen_norms` names them, and the training loop keeps them in eval mode
(:meth:`cometa.core.strategies.base.SpeakerClassifier.train`).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Adapter", "adapter_width", "freeze_for_adapters", "frozen_norms", "trainable_parameters",
           "is_adapter_parameter"]

ADAPTER_KEY = "adapters."  # the attribute every encoder keeps its adapters under


def adapter_width(channels: int, bottleneck: float) -> int:
    """The hidden width of an adapter: ``bottleneck`` x ``channels``, rounded, at least 1."""
    return max(1, int(round(bottleneck * channels)))


class Adapter(nn.Module):
    """h + W_up relu(W_down h) over the channel axis (dim 1) of (B, C, T) or (B, C, H, W).

    ``dims`` 1 for sequences (ECAPA-TDNN), 2 for feature maps (ResNet). W_up starts at zero:
    the adapter is the identity when inserted.
    """

    def __init__(self, channels: int, bottleneck: float = 0.25, *, dims: int = 1):
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
        hidden = adapter_width(channels, bottleneck)
        self.down = conv(channels, hidden, 1)
        self.up = conv(hidden, channels, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(torch.relu(self.down(h)))


def is_adapter_parameter(name: str) -> bool:
    """Whether a parameter name (``model.named_parameters()``) belongs to an adapter."""
    return name.startswith(ADAPTER_KEY) or f".{ADAPTER_KEY}" in name


def freeze_for_adapters(model: nn.Module) -> int:
    """Freeze every parameter of ``model`` but its adapters'; returns how many elements stay trainable.

    Raises ValueError when ``model`` has no adapters (nothing would train).
    """
    n = 0
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter_parameter(name))
        n += p.numel() if p.requires_grad else 0
    if n == 0:
        raise ValueError(f"{type(model).__name__} has no adapters to train (enable its 'adapters')")
    return n


def frozen_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` whose affine parameters are all frozen: part of a frozen
    network, they normalise with their running statistics and do not update them (eval mode)."""
    out = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                out.append(m)
    return out


def trainable_parameters(model: nn.Module) -> int:
    """Elements of the parameters of ``model`` that require gradients (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
