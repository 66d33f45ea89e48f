"""Visual (face) encoder: torchvision ResNet with an FC embedding layer between pooling and classifier."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ResNetConfig:
    """ResNet face encoder. ``depth`` 34 at 224 px in the paper; smaller nets/inputs for tiny/demo."""

    name: str = "resnet"
    depth: int = 34  # 10 | 18 | 34 (10 = one BasicBlock per stage, for tiny/demo)
    base_width: int = 64  # channels of the first stage (64 in torchvision)
    image_size: int = 224
    embed_dim: int = 192
