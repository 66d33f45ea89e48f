"""Visual (face) encoder f_v: a ResNet with an FC embedding layer between pooling and the classifier
(paper Sec. 4.3: "the standard ResNet-34 ... a fully connected layer is added between the pooling
layer and the final classification layer to produce a 192-dimensional embedding").

The classifier itself is the AAM-softmax head (``cometa.models.losses.AAMSoftmax``); here the ResNet's
final ``fc`` is replaced by Linear(8w -> embed_dim) -> BatchNorm1d, so the model maps face
images (B, 3, H, W) in [0, 1] to embeddings (B, embed_dim).

- depth 18 / 34 at ``base_width`` 64 and ``image_size`` >= 112: torchvision's own
  ``resnet18`` / ``resnet34`` (weights=None);
- otherwise (depth 10 = one BasicBlock per stage, a narrower ``base_width`` w, or small images) the
  same architecture is built here from torchvision's ``BasicBlock`` with stage widths
  w, 2w, 4w, 8w and torchvision's module names (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``);
- images smaller than 112 px get a 3x3 stride-1 stem without max-pool (CIFAR-style): the 7x7/2
  stem plus max-pool would shrink a 32 px face to 8 px before the first block, and to 1 px by
  ``layer4``.

With ``adapters.enabled`` an hourglass adapter (:class:`cometa.models.adapters.Adapter`, 2-d) follows
each of the four stages, the identity when inserted.

Inputs are normalised inside the model with ImageNet mean/std constants (non-persistent buffers).
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from cometa.config.sections import ResNetConfig
from cometa.models.adapters import Adapter

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SMALL_IMAGE = 112  # below this, the 3x3 stride-1 stem without max-pool
STAGE_BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class ResNetTrunk(nn.Module):
    """torchvision's ResNet layout (BasicBlock) with first-stage width ``width`` and an optional
    small-image stem; ``fc`` is whatever the caller puts there."""

    def __init__(self, layers: tuple[int, ...], *, width: int = 64, small_stem: bool = False):
        super().__init__()
        self.maxpool: nn.Module
        if small_stem:
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = width
        self.layer1 = self._make_stage(width, layers[0], stride=1)
        self.layer2 = self._make_stage(2 * width, layers[1], stride=2)
        self.layer3 = self._make_stage(4 * width, layers[2], stride=2)
        self.layer4 = self._make_stage(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Module = nn.Identity()
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self._inplanes, planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class FaceResNet(nn.Module):
    """Face images (B, 3, H, W) in [0, 1] -> face embedding (B, embed_dim). See the module docstring."""

    modality = "visual"
    mean: torch.Tensor  # (1, 3, 1, 1) ImageNet statistics, buffers
    std: torch.Tensor

    def __init__(self, depth: int = 34, *, base_width: int = 64, image_size: int = 224, embed_dim: int = 192,
                 adapter_bottleneck: float | None = None):
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"ResNet depth {depth} not supported (choose from {sorted(STAGE_BLOCKS)})")
        small = image_size < SMALL_IMAGE
        if depth in (18, 34) and base_width == 64 and not small:
            self.net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        else:
            self.net = ResNetTrunk(STAGE_BLOCKS[depth], width=base_width, small_stem=small)
        # the embedding layer between pooling and the (AAM-softmax) classifier
        self.net.fc = nn.Sequential(nn.Linear(8 * base_width, embed_dim), nn.BatchNorm1d(embed_dim))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # one hourglass adapter after each stage, widths w, 2w, 4w, 8w (None: no adapters)
        self.adapters = None if adapter_bottleneck is None else nn.ModuleList(
            Adapter(m * base_width, adapter_bottleneck, dims=2) for m in (1, 2, 4, 8))

    @classmethod
    def from_config(cls, cfg: ResNetConfig) -> FaceResNet:
        return cls(cfg.depth, base_width=cfg.base_width, image_size=cfg.image_size, embed_dim=cfg.embed_dim,
                   adapter_bottleneck=cfg.adapters.bottleneck if cfg.adapters.enabled else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FaceResNet expects images (B, 3, H, W), got shape {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        if self.adapters is None:
            return self.net(x)  # (B, embed_dim)
        net = self.net  # torchvision's ResNet or ResNetTrunk: the same module names, stage by stage
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        for stage, adapter in zip((net.layer1, net.layer2, net.layer3, net.layer4), self.adapters):
            x = adapter(stage(x))
        return net.fc(torch.flatten(net.avgpool(x), 1))  # (B, embed_dim)


def embed_frames(model: nn.Module, frames: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """The utterance's face embedding: mean of the embeddings of its frames (F, 3, H, W) -> (embed_dim,).

    Runs in whatever mode the caller set (call ``model.eval()`` and ``torch.no_grad()`` for
    extraction); frames are embedded in chunks of ``batch_size``.
    """
    if frames.dim() != 4 or frames.shape[0] == 0:
        raise ValueError(f"expected frames (F, 3, H, W) with F >= 1, got shape {tuple(frames.shape)}")
    embs = [model(frames[i:i + batch_size]) for i in range(0, frames.shape[0], batch_size)]
    return torch.cat(embs).mean(dim=0)
