"""ECAPA-TDNN speaker encoder (Desplanques et al., 2020), the paper's audio encoder f_a (Sec. 4.3).

Log-mel (B, n_mels, T) -> speaker embedding (B, embed_dim):

- Conv1d(k=5) + ReLU + BN to C channels;
- three SE-Res2Blocks (k=3, dilation 2, 3, 4): 1x1 conv, Res2Net conv with ``scale`` groups,
  1x1 conv (each conv + ReLU + BN), squeeze-excitation with a ``se_bottleneck`` bottleneck, and a
  residual connection; blocks are chained (each takes the previous block's output, as speechbrain);
- multi-layer feature aggregation: the three block outputs concatenated (3C) -> 1x1 conv to 3C
  channels (+ ReLU + BN);
- channel- and context-dependent attentive statistics pooling: attention scores from [h, mean(h),
  std(h)] (global context) through a 1x1 conv of ``attention_channels`` + ReLU + BN, tanh, 1x1 conv
  back to 3C channels, softmax over time; weighted mean and std -> 6C;
- BN(6C) -> Linear(6C -> embed_dim) -> BN(embed_dim).

Options (``EcapaConfig``): ``pooling: query_attention`` replaces the attentive statistics pooling by
attention pooling with one learnable query (SAMU-XLS-R's, :class:`QueryAttentionPool`: 3C out, so
BN(3C) -> Linear(3C -> embed_dim)); ``adapters.enabled`` adds an hourglass adapter
(:class:`cometa.models.adapters.Adapter`) after each SE-Res2 block, the identity when inserted.
The pooling layers are an explicit registry, :data:`POOLINGS`.

Parameters at C=512, n_mels=80, embed_dim=192 (scale 8, SE 128, attention 128): **6,194,432**
(published: 6.2M), asserted in ``tests/test_encoders.py`` and computed there by hand.

No in-place ops, so the module works under ``torch.func.functional_call`` with second-order
gradients (the meta step of Algorithm 1, lines 5-6 and 10-11).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from cometa.config.sections import EcapaConfig
from cometa.models.adapters import Adapter


class ConvReluBn(nn.Module):
    """Conv1d -> ReLU -> BatchNorm1d (the TDNN block of the paper and speechbrain)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2)
        self.bn = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.relu(self.conv(x)))


class Res2Conv(nn.Module):
    """Res2Net conv: C channels in ``scale`` groups; group 0 passes through, group i > 0 is
    conv(x_i + y_{i-1}) (y_1 = conv(x_1)), which widens the receptive field group by group."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be divisible by the Res2Net scale ({scale})")
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(ConvReluBn(width, width, kernel_size, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = x.chunk(self.scale, dim=1)  # scale x (B, C/scale, T)
        out = [chunks[0]]
        y = None
        for conv, xi in zip(self.convs, chunks[1:]):
            y = conv(xi if y is None else xi + y)
            out.append(y)
        return torch.cat(out, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the time-averaged input: sigmoid(W2 relu(W1 mean_t(x)))."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.fc1 = nn.Conv1d(channels, bottleneck, 1)
        self.fc2 = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=2, keepdim=True)  # (B, C, 1)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class SERes2Block(nn.Module):
    """1x1 conv -> Res2Net conv (k, dilation) -> 1x1 conv -> SE, plus the input (residual)."""

    def __init__(self, channels: int, *, kernel_size: int, dilation: int, scale: int, se_bottleneck: int):
        super().__init__()
        self.conv1 = ConvReluBn(channels, channels, 1)
        self.res2 = Res2Conv(channels, kernel_size, dilation, scale)
        self.conv2 = ConvReluBn(channels, channels, 1)
        self.se = SqueezeExcitation(channels, se_bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se(self.conv2(self.res2(self.conv1(x))))


class AttentiveStatsPool(nn.Module):
    """Channel- and context-dependent attentive statistics pooling: (B, C, T) -> (B, 2C)."""

    def __init__(self, channels: int, attention_channels: int, eps: float = 1e-12):
        super().__init__()
        self.eps = eps
        self.out_dim = 2 * channels
        self.tdnn = ConvReluBn(3 * channels, attention_channels, 1)
        self.score = nn.Conv1d(attention_channels, channels, 1)

    @staticmethod
    def _stats(x: torch.Tensor, w: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (w * x).sum(dim=2)  # (B, C)
        var = (w * (x - mean.unsqueeze(2)).pow(2)).sum(dim=2)
        return mean, var.clamp(min=eps).sqrt()  # clamp: finite gradients where var = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        uniform = x.new_full((1, 1, t), 1.0 / t)
        mean, std = self._stats(x, uniform, self.eps)  # global context, (B, C) each
        context = torch.cat([x, mean.unsqueeze(2).expand_as(x), std.unsqueeze(2).expand_as(x)], dim=1)  # (B, 3C, T)
        attn = torch.softmax(self.score(torch.tanh(self.tdnn(context))), dim=2)  # (B, C, T), sums to 1 over T
        mean, std = self._stats(x, attn, self.eps)
        return torch.cat([mean, std], dim=1)  # (B, 2C)


class QueryAttentionPool(nn.Module):
    """Attention pooling with a single learnable query (SAMU-XLS-R; Safari et al.'s self-attention
    pooling): keys k_t = tanh(W h_t) of ``attention_channels``, weights w = softmax_t(q . k_t), output
    sum_t w_t h_t. (B, C, T) -> (B, C)."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.out_dim = channels
        self.key = nn.Conv1d(channels, attention_channels, 1)
        self.query = nn.Parameter(torch.randn(attention_channels) / math.sqrt(attention_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.tanh(self.key(x))  # (B, A, T)
        w = torch.softmax(torch.einsum("a,bat->bt", self.query, k), dim=1)  # (B, T), sums to 1 over T
        return (x * w.unsqueeze(1)).sum(dim=2)  # (B, C)


POOLINGS: dict[str, type[nn.Module]] = {  # audio_encoder.pooling -> (channels, attention_channels) module
    "asp": AttentiveStatsPool,
    "query_attention": QueryAttentionPool,
}


class EcapaTDNN(nn.Module):
    """ECAPA-TDNN: log-mel (B, n_mels, T) -> embedding (B, embed_dim). See the module docstring."""

    modality = "audio"

    def __init__(self, n_mels: int = 80, *, channels: int = 512, embed_dim: int = 192, scale: int = 8,
                 se_bottleneck: int = 128, attention_channels: int = 128, pooling: str = "asp",
                 adapter_bottleneck: float | None = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r} (registered: {', '.join(POOLINGS)})")
        c = channels
        self.layer0 = ConvReluBn(n_mels, c, kernel_size=5)
        self.blocks = nn.ModuleList(
            SERes2Block(c, kernel_size=3, dilation=d, scale=scale, se_bottleneck=se_bottleneck) for d in (2, 3, 4))
        # one hourglass adapter after each SE-Res2 block (None: no adapters)
        self.adapters = None if adapter_bottleneck is None else nn.ModuleList(
            Adapter(c, adapter_bottleneck, dims=1) for _ in self.blocks)
        self.mfa = ConvReluBn(3 * c, 3 * c, 1)  # multi-layer feature aggregation
        self.pool = POOLINGS[pooling](3 * c, attention_channels)
        pooled = int(self.pool.out_dim)  # 6C (asp) or 3C (query_attention)
        self.pool_bn = nn.BatchNorm1d(pooled)
        self.fc = nn.Linear(pooled, embed_dim)
        self.emb_bn = nn.BatchNorm1d(embed_dim)

    @classmethod
    def from_config(cls, cfg: EcapaConfig, n_mels: int) -> EcapaTDNN:
        return cls(n_mels, channels=cfg.channels, embed_dim=cfg.embed_dim, scale=cfg.scale,
                   se_bottleneck=cfg.se_bottleneck, attention_channels=cfg.attention_channels, pooling=cfg.pooling,
                   adapter_bottleneck=cfg.adapters.bottleneck if cfg.adapters.enabled else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"EcapaTDNN expects log-mel features (B, n_mels, T), got shape {tuple(x.shape)}")
        h = self.layer0(x)  # (B, C, T)
        outs = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if self.adapters is not None:
                h = self.adapters[i](h)
            outs.append(h)
        h = self.mfa(torch.cat(outs, dim=1))  # (B, 3C, T)
        z = self.pool_bn(self.pool(h))  # (B, 6C) with asp
        return self.emb_bn(self.fc(z))  # (B, embed_dim)
