"""Encoder plug-ins: output shapes, parameter counts against independent sums, a training step,
and functional_call + second-order gradients (the meta step of Algorithm 1)."""
import dataclasses

import pytest
import torch
import torchvision
from torch.func import functional_call

from cometa.models.encoders import (
    ENCODERS,
    EcapaConfig,
    EcapaTDNN,
    FaceResNet,
    ResNetConfig,
    build_audio_encoder,
    build_visual_encoder,
    count_parameters,
    embed_frames,
)
from cometa.models.encoders.resnet import ResNetTrunk
from cometa.models.features import FeatureConfig
from cometa.models.losses import AAMSoftmax

TINY_ECAPA = EcapaConfig(channels=16, embed_dim=32, scale=4, se_bottleneck=8, attention_channels=8)
TINY_RESNET = ResNetConfig(depth=10, base_width=8, image_size=32, embed_dim=32)
ECAPA_C512 = 6_194_432  # published: 6.2M (Desplanques et al. 2020, Table 1)


def ecapa_param_formula(n_mels, c, scale, se, attn, emb):
    """Hand sum over the ECAPA-TDNN layers (conv weights + biases, BN weight + bias)."""
    def conv_bn(i, o, k):
        return i * o * k + o + 2 * o

    w = c // scale
    block = 2 * conv_bn(c, c, 1) + (scale - 1) * conv_bn(w, w, 3) + (c * se + se) + (se * c + c)
    return (conv_bn(n_mels, c, 5) + 3 * block + conv_bn(3 * c, 3 * c, 1)
            + conv_bn(9 * c, attn, 1) + (attn * 3 * c + 3 * c)  # attention: [h, mean, std] -> attn -> 3C
            + 2 * 6 * c + (6 * c * emb + emb) + 2 * emb)  # BN(6C), Linear, BN(emb)


def resnet_param_formula(layers, w, emb, *, small_stem):
    """Hand sum over a BasicBlock ResNet (bias-free convs, BN weight + bias) + the FC/BN embedding."""
    total = 3 * w * (9 if small_stem else 49) + 2 * w
    c_in = w
    for stage, n in enumerate(layers):
        c = w * 2 ** stage
        for b in range(n):
            i = c_in if b == 0 else c
            total += 9 * i * c + 9 * c * c + 4 * c
            if b == 0 and (stage > 0 or i != c):
                total += i * c + 2 * c  # 1x1 downsample + BN
        c_in = c
    return total + 8 * w * emb + emb + 2 * emb


def test_registry_and_shapes():
    assert set(ENCODERS) == {"ecapa_tdnn", "resnet"}
    audio = build_audio_encoder(TINY_ECAPA, FeatureConfig())
    visual = build_visual_encoder(TINY_RESNET)
    assert audio(torch.randn(4, 80, 101)).shape == (4, 32)
    assert visual(torch.rand(4, 3, 32, 32)).shape == (4, 32)
    assert FaceResNet(18, base_width=8, image_size=112, embed_dim=16)(torch.rand(2, 3, 112, 112)).shape == (2, 16)


def test_registry_errors_name_the_keys():
    with pytest.raises(ValueError, match="ecapa_tdnn, resnet"):
        build_audio_encoder(dataclasses.replace(TINY_ECAPA, name="xvector"), FeatureConfig())
    with pytest.raises(ValueError, match="not audio"):
        build_audio_encoder(dataclasses.replace(TINY_ECAPA, name="resnet"), FeatureConfig())
    with pytest.raises(ValueError, match="depth 50"):
        FaceResNet(50)


def test_ecapa_parameter_counts():
    tiny = build_audio_encoder(TINY_ECAPA, FeatureConfig())
    assert count_parameters(tiny) == ecapa_param_formula(80, 16, 4, 8, 8, 32)
    full = EcapaTDNN(80, channels=512, embed_dim=192, scale=8, se_bottleneck=128, attention_channels=128)
    n = count_parameters(full)
    assert n == ecapa_param_formula(80, 512, 8, 128, 128, 192) == ECAPA_C512
    assert abs(n - 6.2e6) / 6.2e6 < 0.01


def test_resnet_parameter_counts():
    tiny = build_visual_encoder(TINY_RESNET)
    assert count_parameters(tiny) == resnet_param_formula((1, 1, 1, 1), 8, 32, small_stem=True)
    # ResNet-34 at 224 px is torchvision's own model: its count minus its 1000-way fc, plus our head
    tv = torchvision.models.resnet34(weights=None)
    head = 512 * 192 + 192 + 2 * 192
    assert count_parameters(FaceResNet(34)) == count_parameters(tv) - count_parameters(tv.fc) + head
    assert count_parameters(FaceResNet(34)) == resnet_param_formula((3, 4, 6, 3), 64, 192, small_stem=False)


def test_own_trunk_matches_torchvision_layout():
    """At width 64 with the 7x7 stem our builder reproduces torchvision's ResNet-18 tensor for tensor."""
    ours = ResNetTrunk((2, 2, 2, 2), width=64).state_dict()
    theirs = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
              if not k.startswith("fc.")}
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def _train_steps(model, head, x, y, steps=8, lr=1e-2):
    opt = torch.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=lr)
    losses = []
    for _ in range(steps):
        loss = head(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("kind", ["audio", "visual"])
def test_training_step_reduces_loss(kind):
    torch.manual_seed(0)
    if kind == "audio":
        model, x = build_audio_encoder(TINY_ECAPA, FeatureConfig()), torch.randn(8, 80, 50)
    else:
        model, x = build_visual_encoder(TINY_RESNET), torch.rand(8, 3, 32, 32)
    head = AAMSoftmax(32, 4, margin=0.2, scale=32)
    losses = _train_steps(model, head, x, torch.arange(8) % 4)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("kind", ["audio", "visual"])
def test_functional_call_second_order(kind):
    """θ' = θ − α∇ℓ_s(θ) (kept in the graph), then ∇_θ ℓ_q(θ'): finite, and different from the
    first-order gradient (so the second-order term really flows)."""
    torch.manual_seed(0)
    if kind == "audio":
        model, xs, xq = build_audio_encoder(TINY_ECAPA, FeatureConfig()), torch.randn(6, 80, 40), torch.randn(4, 80, 40)
    else:
        model, xs, xq = build_visual_encoder(TINY_RESNET), torch.rand(6, 3, 32, 32), torch.rand(4, 3, 32, 32)
    net = torch.nn.ModuleDict({"enc": model, "head": AAMSoftmax(32, 3)})

    def loss_fn(params, x, y):
        emb = functional_call(net["enc"], {k[4:]: v for k, v in params.items() if k.startswith("enc.")}, (x,))
        return functional_call(net["head"], {k[5:]: v for k, v in params.items() if k.startswith("head.")},
                               (emb, y))

    params = dict(net.named_parameters())
    ys, yq = torch.arange(6) % 3, torch.arange(4) % 3

    def outer(second_order):
        g = torch.autograd.grad(loss_fn(params, xs, ys), list(params.values()), create_graph=second_order)
        fast = {k: p - 0.01 * (gi if second_order else gi.detach()) for (k, p), gi in zip(params.items(), g)}
        return torch.autograd.grad(loss_fn(fast, xq, yq), list(params.values()))

    g2, g1 = outer(True), outer(False)
    assert all(torch.isfinite(g).all() for g in g2)
    assert sum(float((a - b).abs().sum()) for a, b in zip(g2, g1)) > 0


def test_double_backward_is_correct():
    """gradgradcheck (float64) through a miniature ECAPA-TDNN and ResNet, BatchNorm in train mode."""
    torch.manual_seed(0)
    ecapa = EcapaTDNN(4, channels=8, embed_dim=3, scale=2, se_bottleneck=2, attention_channels=2).double()
    x = torch.randn(3, 4, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: ecapa(t), (x,), eps=1e-6, atol=1e-4, fast_mode=True)
    resnet = FaceResNet(10, base_width=2, image_size=8, embed_dim=3).double()
    img = torch.rand(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: resnet(t), (img,), eps=1e-6, atol=1e-4, fast_mode=True)


def test_embed_frames_is_mean_of_frame_embeddings():
    torch.manual_seed(0)
    model = build_visual_encoder(TINY_RESNET).eval()
    frames = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        e = embed_frames(model, frames, batch_size=2)
        torch.testing.assert_close(e, model(frames).mean(0))
    assert e.shape == (32,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_follows_input_device():
    audio = build_audio_encoder(TINY_ECAPA, FeatureConfig()).cuda()
    visual = build_visual_encoder(TINY_RESNET).cuda()
    assert audio(torch.randn(2, 80, 30, device="cuda")).device.type == "cuda"
    assert visual(torch.rand(2, 3, 32, 32, device="cuda")).device.type == "cuda"
