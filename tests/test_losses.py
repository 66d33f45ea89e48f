"""Eq. (1)-(2) against a plain double loop; AAM-softmax against a hand computation; the
augmentation discriminator and its gradient reversal."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from cometa.models.losses import (
    AAMSoftmax,
    AugmentationDiscriminator,
    contrastive_loss,
    discriminator_loss,
    grad_reverse,
)


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def csl_loop(e1, e2):
    """Eq. (1)-(2) literally, with the documented reading of the indicator: (k, l) != (i, j)."""
    e = {(i, 1): e1[i] for i in range(len(e1))} | {(i, 2): e2[i] for i in range(len(e2))}
    n, total = len(e1), 0.0
    for i in range(n):
        for j in (1, 2):
            num = math.exp(_cos(e[i, j], e[i, 3 - j]))
            den = sum(math.exp(_cos(e[i, j], e[k, v])) for k in range(n) for v in (1, 2) if (k, v) != (i, j))
            total += -math.log(num / den)
    return total / (2 * n)


def test_contrastive_loss_matches_double_loop():
    rng = np.random.default_rng(0)
    e1, e2 = rng.standard_normal((5, 8)), rng.standard_normal((5, 8))
    got = contrastive_loss(torch.tensor(e1), torch.tensor(e2))
    assert abs(float(got) - csl_loop(e1, e2)) < 1e-5


def test_contrastive_loss_lower_for_aligned_views():
    g = torch.Generator().manual_seed(0)
    e1 = torch.randn(16, 32, generator=g)
    e2 = e1 + 0.1 * torch.randn(16, 32, generator=g)
    assert contrastive_loss(e1, e2) < contrastive_loss(e1, e2[torch.randperm(16, generator=g)])
    # bounds with temperature 1: cos in [-1, 1]
    assert contrastive_loss(e1, e1) >= -math.log(math.e / (math.e + (2 * 16 - 2) * math.exp(-1)))


def test_contrastive_loss_second_order():
    e1 = torch.randn(4, 6, requires_grad=True)
    e2 = torch.randn(4, 6)
    (g,) = torch.autograd.grad(contrastive_loss(e1, e2), e1, create_graph=True)
    (gg,) = torch.autograd.grad(g.pow(2).sum(), e1)
    assert torch.isfinite(gg).all()


def test_aam_per_sample_loss_by_hand():
    torch.manual_seed(0)
    head = AAMSoftmax(4, 3, margin=0.2, scale=32.0)
    emb = torch.randn(2, 4)
    labels = torch.tensor([2, 0])
    per = head(emb, labels, reduction="none").detach()
    assert per.shape == (2,)
    w = head.weight.detach().numpy()
    x, y = emb[0].numpy(), 2
    cos = np.array([_cos(x, w[k]) for k in range(3)])
    theta = math.acos(cos[y])
    assert theta + 0.2 < math.pi  # the ordinary branch of the th/mm trick
    z = 32.0 * cos
    z[y] = 32.0 * math.cos(theta + 0.2)
    expected = -(z[y] - math.log(np.exp(z).sum()))
    assert abs(float(per[0]) - expected) < 1e-4
    assert abs(float(head(emb, labels).detach()) - float(per.mean())) < 1e-6


def test_aam_th_mm_branch():
    """When θ_y + m passes π the target logit is s (cos θ_y − sin(π − m) m)."""
    head = AAMSoftmax(2, 2, margin=0.5, scale=10.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb = torch.tensor([[-1.0, 0.05]])  # θ_0 ≈ π − 0.05
    c0, c1 = -1 / math.hypot(1, 0.05), 0.05 / math.hypot(1, 0.05)
    z0 = 10.0 * (c0 - math.sin(math.pi - 0.5) * 0.5)
    expected = -(z0 - math.log(math.exp(z0) + math.exp(10.0 * c1)))
    with torch.no_grad():
        assert abs(float(head(emb, torch.tensor([0]), reduction="none")[0]) - expected) < 1e-4


def test_aam_logits_and_zero_margin():
    torch.manual_seed(1)
    head = AAMSoftmax(8, 5, margin=0.0, scale=16.0)
    emb, labels = torch.randn(7, 8), torch.randint(0, 5, (7,))
    logits = head.logits(emb)
    cos = F.normalize(emb, dim=1) @ F.normalize(head.weight, dim=1).T
    torch.testing.assert_close(logits, 16.0 * cos)
    assert torch.equal(logits.argmax(1), cos.argmax(1))
    # m = 0: plain normalised-softmax cross entropy
    torch.testing.assert_close(head(emb, labels, reduction="none"),
                               F.cross_entropy(16.0 * cos, labels, reduction="none"), atol=1e-5, rtol=1e-5)


def test_aam_finite_gradients_at_cos_one():
    """An embedding equal to its class weight (a singleton cluster's centroid) keeps finite gradients."""
    head = AAMSoftmax(3, 2)
    emb = head.weight.detach()[:1].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(head(emb, torch.tensor([0])), emb, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), emb)
    assert torch.isfinite(g).all() and torch.isfinite(gg).all()


def test_grad_reverse():
    x = torch.randn(3, requires_grad=True)
    y = grad_reverse(x, 0.5)
    assert torch.equal(y, x)
    (g,) = torch.autograd.grad((y * torch.arange(3.0)).sum(), x)
    torch.testing.assert_close(g, -0.5 * torch.arange(3.0))


def test_discriminator_learns_and_encoder_gets_reversed_gradient():
    torch.manual_seed(0)
    disc = AugmentationDiscriminator(4, hidden=16)
    e1 = torch.randn(32, 4, requires_grad=True)
    e2 = torch.randn(32, 4)
    same = torch.rand(32) < 0.5
    loss = discriminator_loss(disc, e1, e2, same)
    (g_rev,) = torch.autograd.grad(loss, e1, retain_graph=True)
    plain = F.binary_cross_entropy_with_logits(disc(e1, e2), same.float())
    (g_plain,) = torch.autograd.grad(plain, e1)
    torch.testing.assert_close(g_rev, -g_plain)
    # the discriminator itself minimises BCE: pairs made distinguishable are learned
    e2_fixed = torch.where(same[:, None], e1.detach() + 0.01 * torch.randn(32, 4), torch.randn(32, 4))
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = discriminator_loss(disc, e1.detach(), e2_fixed, same)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
