"""Losses: the contrastive loss of Stage I (Eq. 1-2), the augmentation-adversarial discriminator
term of Huh et al. 2020 (ref. [6], Sec. 4.4.1), the AAM-softmax of Stage II (Sec. 2.2, ref. [18]), and
the frozen-teacher cosine distillation of the cross-lingual transfer paper (SAMU-XLS-R's semantic
distillation, ``stage2.distill``).

Everything is written with out-of-place ops so that it works under
``torch.func.functional_call`` and with second-order gradients (the meta step of Algorithm 1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["contrastive_loss", "grad_reverse", "AugmentationDiscriminator", "discriminator_loss", "AAMSoftmax",
           "cosine_distillation"]


# ---------------------------------------------------------------------------------------------
# Stage I: Eq. (1)-(2)


def contrastive_loss(e1: torch.Tensor, e2: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
    """L_CSL of Eq. (2): the mean over the 2N anchor views of l_{i,j} (Eq. 1).

    Parameters
    ----------
    e1, e2 : (N, D) embeddings of the two views of N utterances (row i of each from utterance i).
    temperature : the paper sets none ("we do not set the temperature"), i.e. 1.

    Reading of Eq. (1): with z_{i,j} = e_{i,j} / ||e_{i,j}||,

        l_{i,j} = -log( exp(cos(e_{i,j}, e_{i,3-j})) / sum_{(k,l) != (i,j)} exp(cos(e_{i,j}, e_{k,l})) )

    i.e. the standard NT-Xent (SimCLR) denominator: all 2N - 1 views other than the anchor itself,
    the positive included. (The printed indicator "k != i and l != j" read literally would drop the
    positive and half the negatives; we take it as the usual "(k, l) != (i, j)".)

    Returns
    -------
    scalar tensor.
    """
    if e1.shape != e2.shape or e1.dim() != 2:
        raise ValueError(f"e1 and e2 must both be (N, D), got {tuple(e1.shape)} and {tuple(e2.shape)}")
    n = e1.shape[0]
    z = F.normalize(torch.cat([e1, e2]), dim=1)  # (2N, D)
    sim = z @ z.T / temperature  # (2N, 2N) cosine similarities
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))  # the anchor is not in its own denominator
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # view (i,1) <-> (i,2)
    return F.cross_entropy(sim, positive)


# ---------------------------------------------------------------------------------------------
# augmentation-adversarial training (Huh et al., 2020)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.lam * grad, None  # differentiable: double backward works


def grad_reverse(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-lam`` in the backward pass."""
    return _GradReverse.apply(x, lam)


class AugmentationDiscriminator(nn.Module):
    """Predicts whether two segment embeddings received the same augmentation type.

    Input features are symmetric in the pair: [|z_a - z_b|, z_a * z_b] of the L2-normalised
    embeddings (2D), then an MLP 2D -> hidden -> 1 (a logit). Trained with BCE on "same
    augmentation"; the encoder sees that loss through a gradient reversal layer
    (:func:`discriminator_loss`), so it learns embeddings from which the augmentation cannot be
    told, i.e. channel-invariant speaker embeddings (Huh et al. 2020, ref. [6]).
    """

    def __init__(self, embed_dim: int, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * embed_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, e_a: torch.Tensor, e_b: torch.Tensor) -> torch.Tensor:
        """(N, D), (N, D) -> (N,) logits of "same augmentation"."""
        za, zb = F.normalize(e_a, dim=1), F.normalize(e_b, dim=1)
        return self.mlp(torch.cat([(za - zb).abs(), za * zb], dim=1)).squeeze(1)


def discriminator_loss(disc: AugmentationDiscriminator, e1: torch.Tensor, e2: torch.Tensor, same_aug: torch.Tensor,
                       *, lam: float = 1.0) -> torch.Tensor:
    """BCE of the discriminator on the pairs (e1[i], e2[i]); the embeddings pass through
    :func:`grad_reverse` first, so minimising this loss trains the discriminator to detect the
    augmentation and the encoder (with weight ``lam``) to hide it.

    ``same_aug`` : (N,) bool, whether the two views of utterance i got the same augmentation type.
    """
    logits = disc(grad_reverse(e1, lam), grad_reverse(e2, lam))
    return F.binary_cross_entropy_with_logits(logits, same_aug.to(logits.dtype))


# ---------------------------------------------------------------------------------------------
# Stage II: AAM-softmax


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace, Deng et al. 2019), the classifier of both
    modalities in Stage II: the target logit is s cos(theta_y + m), the others s cos(theta_j).

    Weight (n_classes, D), L2-normalised in the forward pass. No "easy margin": where theta_y + m
    would pass pi (cos theta_y <= th = cos(pi - m)) the target logit becomes s (cos theta_y - mm),
    mm = sin(pi - m) m, which keeps it decreasing in theta_y (the th/mm trick of
    voxceleb_trainer's ``aamsoftmax`` and insightface).

    sin theta is ``sqrt(clamp(1 - cos^2, min=1e-6))``: finite (second-order) gradients even when an
    embedding coincides with its class weight (a head initialised at a singleton cluster's centroid).
    """

    def __init__(self, embed_dim: int, n_classes: int, *, margin: float = 0.2, scale: float = 32.0):
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.margin, self.scale = float(margin), float(scale)
        self.weight = nn.Parameter(torch.empty(n_classes, embed_dim))
        nn.init.xavier_normal_(self.weight, gain=1.0)
        self.cos_m, self.sin_m = math.cos(self.margin), math.sin(self.margin)
        self.th = math.cos(math.pi - self.margin)
        self.mm = math.sin(math.pi - self.margin) * self.margin

    @property
    def n_classes(self) -> int:
        return self.weight.shape[0]

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, n_classes) cos(theta) between embeddings and class weights."""
        return F.linear(F.normalize(emb, dim=1), F.normalize(self.weight, dim=1))

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, n_classes) s cos(theta) without margin; the predicted class is their argmax."""
        return self.scale * self.cosine(emb)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """AAM-softmax loss; ``reduction`` "mean" (scalar) or "none" (per-sample (B,))."""
        return self.from_cosine(self.cosine(emb), labels, reduction=reduction)

    def from_cosine(self, cos: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The loss from (B, K) cosines already computed by :meth:`cosine`."""
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        sin = (1.0 - cos * cos).clamp(min=1e-6).sqrt()
        phi = cos * self.cos_m - sin * self.sin_m  # cos(theta + m)
        phi = torch.where(cos - self.th > 0, phi, cos - self.mm)
        one_hot = F.one_hot(labels, self.n_classes).to(cos.dtype)
        out = self.scale * (one_hot * phi + (1.0 - one_hot) * cos)
        return F.cross_entropy(out, labels, reduction=reduction)


# ---------------------------------------------------------------------------------------------
# Stage II option: frozen-teacher cosine distillation


def cosine_distillation(student: torch.Tensor, teacher: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """Per-sample 1 - cos(s_i, t_i) of student embeddings (B, D) and teacher embeddings (B, D): (B,),
    in [0, 2]. The teacher is a target: pass it detached (or through a map that should learn)."""
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} embeddings differ "
                         "in shape")
    return 1.0 - F.cosine_similarity(student, teacher, dim=1, eps=eps)
