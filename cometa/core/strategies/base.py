"""What every Stage II training strategy shares: the (encoder + AAM-softmax head) model of one
modality, the paired mini-batch, and Algorithm 1's lines 7-9 (the per-step statistics are
:mod:`cometa.core.strategies.stats`).

A strategy owns the two models' optimisers and implements ``step(batch, keep_ratio=λ(e))``.
The optimisers hold the trainable parameters only (``stage2.train: adapters`` freezes the encoders
but for their adapters). With a :class:`Distillation` (``stage2.distill``) each model's update adds
``weight`` x the mean over the mini-batch of 1 - cos(student, frozen teacher) to the loss it
differentiates.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.profiler import record_function

from cometa.core.selection import disagreement, small_loss
from cometa.core.strategies.stats import StepStats
from cometa.models.adapters import frozen_norms
from cometa.models.distributed import all_reduce_grads, is_distributed
from cometa.models.losses import AAMSoftmax, cosine_distillation


class SpeakerClassifier(nn.Module):
    """One modality's θ: an encoder f(·) and its AAM-softmax head (paper Sec. 2.2).

    ``forward(x, labels)`` returns ``(logits, losses)``: the head's cosine logits without margin
    (B, n_classes), whose argmax is the model's predicted class (Eq. 3), and the per-sample
    AAM-softmax losses (B,). One forward serves support loss, prediction and small-loss ranking.

    The leading modules of a ``nn.Sequential`` encoder that have no parameters (the audio model's
    log-mel front end) are its *front end*: :meth:`prepare` applies them, and
    ``forward(prepare(x), labels, prepared=True)`` equals ``forward(x, labels)``. A strategy that
    runs the model twice on one batch (the forward under θ and under θ') computes them once.

    ``forward(..., teacher=t)`` with frozen teacher embeddings t (B, D_t) also returns the per-sample
    distillation loss 1 - cos(embedding, map(t)) (B,), ``map`` being the learned linear
    ``distill_map`` (D_t -> embed_dim) when ``teacher_dim`` is given, else the identity. The map is
    part of θ, so the meta step's θ' carries it too.

    In training mode, BatchNorm layers whose parameters are all frozen stay in eval mode (running
    statistics, not updated): a frozen part of the network computes what it computed before.
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, n_classes: int, *, margin: float, scale: float,
                 teacher_dim: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.head = AAMSoftmax(embed_dim, n_classes, margin=margin, scale=scale)
        self.distill_map = None if teacher_dim is None else nn.Linear(teacher_dim, embed_dim, bias=False)

    def train(self, mode: bool = True) -> SpeakerClassifier:
        super().train(mode)
        if mode:
            for bn in frozen_norms(self):
                bn.eval()
        return self

    def _front_and_body(self) -> tuple[list[nn.Module], list[nn.Module]]:
        mods = list(self.encoder) if isinstance(self.encoder, nn.Sequential) else [self.encoder]
        n = 0
        while n < len(mods) - 1 and next(mods[n].parameters(), None) is None:
            n += 1
        return mods[:n], mods[n:]

    @torch.no_grad()
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The front end's output for ``x`` (the input itself when there is no front end)."""
        for m in self._front_and_body()[0]:
            x = m(x)
        return x

    def forward(self, x: torch.Tensor, labels: torch.Tensor, *, prepared: bool = False,
                teacher: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if prepared:
            for m in self._front_and_body()[1]:
                x = m(x)
            emb = x
        else:
            emb = self.encoder(x)  # (B, D)
        cos = self.head.cosine(emb)  # (B, K), computed once for the logits and the loss
        out = (self.head.scale * cos, self.head.from_cosine(cos, labels, reduction="none"))
        if teacher is None:
            return out
        target = teacher if self.distill_map is None else self.distill_map(teacher)  # (B, D)
        return (*out, cosine_distillation(emb, target))


@dataclass
class Distillation:
    """``stage2.distill``: each modality's frozen teacher embeddings, one row per sample of the round
    (``Batch.index`` selects a batch's rows), or None for a modality without a teacher."""

    weight: float
    audio: torch.Tensor | None = None  # (M, D_t)
    visual: torch.Tensor | None = None

    def teacher(self, key: str, batch: Batch) -> torch.Tensor | None:
        t = getattr(self, key)
        return None if t is None else t[batch.index.to(t.device)]


@dataclass
class Batch:
    """A mini-batch D̄ of paired samples: audio crops and face frames of the same utterances."""

    audio: torch.Tensor  # (B, T) waveform crops
    frames: torch.Tensor  # (B, 3, H, W) one face frame per utterance
    labels: torch.Tensor  # (B,) consensus pseudo labels (shared by both modalities)
    noisy: torch.Tensor  # (B,) bool: pseudo label wrong w.r.t. the true identity (instrumentation only)
    index: torch.Tensor  # (B,) row in the round's training table

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device, non_blocking=True)
                       for t in (self.audio, self.frames, self.labels, self.noisy, self.index)))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Selection:
    """Lines 7-9: the disagreement set and each model's small-loss part of it (indices into D̄)."""

    disagree: torch.Tensor  # (|D̄'|,)
    audio: torch.Tensor  # D̄'^(A): selected by the audio model
    visual: torch.Tensor  # D̄'^(V): selected by the visual model


def select_by_disagreement(
    logits_a: torch.Tensor, logits_v: torch.Tensor, loss_a: torch.Tensor, loss_v: torch.Tensor, keep_ratio: float
) -> Selection:
    """Eq. (3) and lines 8-9: disagreement under θ, then each model's ⌈λ|D̄'|⌉ smallest losses."""
    with torch.no_grad():
        d = disagreement(logits_a.argmax(dim=1), logits_v.argmax(dim=1))
        sel_a = d[small_loss(loss_a.detach()[d], keep_ratio)]
        sel_v = d[small_loss(loss_v.detach()[d], keep_ratio)]
    return Selection(disagree=d, audio=sel_a, visual=sel_v)


def fill_selection_stats(stats: StepStats, sel: Selection, noisy: torch.Tensor) -> None:
    """Count |D̄'|, the selections, their overlap and how many of each carry a wrong pseudo label."""
    stats.n_disagree = int(sel.disagree.numel())
    stats.n_disagree_noisy = int(noisy[sel.disagree].sum())
    stats.n_selected_audio = int(sel.audio.numel())
    stats.n_selected_visual = int(sel.visual.numel())
    stats.n_selected_noisy_audio = int(noisy[sel.audio].sum())
    stats.n_selected_noisy_visual = int(noisy[sel.visual].sum())
    a, v = set(sel.audio.tolist()), set(sel.visual.tolist())
    stats.n_overlap, stats.n_union = len(a & v), len(a | v)
    stats.empty = stats.n_disagree == 0


def skip_step(empty: bool, device: torch.device) -> bool:
    """Whether to take no step because D̄' is empty. Under DDP the decision is collective: the
    step is skipped only when every rank's D̄' is empty (a rank whose D̄' alone is empty then
    contributes zero gradients to the all-reduce, see :meth:`Strategy.zero_step`)."""
    if not is_distributed():
        return empty
    flag = torch.tensor([0.0 if empty else 1.0], device=device)
    dist.all_reduce(flag)
    return float(flag) == 0.0


class Strategy(abc.ABC):
    """Base class: holds θ_A, θ_V and their Adam optimisers (lr β)."""

    name = "strategy"

    def __init__(self, audio: SpeakerClassifier, visual: SpeakerClassifier, *, lr: float, alpha: float = 0.01,
                 second_order: bool = True, distill: Distillation | None = None):
        self.audio, self.visual = audio, visual
        self.alpha, self.second_order = alpha, second_order
        self.distill = distill
        self.opt_audio = torch.optim.Adam(trainable(audio), lr=lr)
        self.opt_visual = torch.optim.Adam(trainable(visual), lr=lr)

    def teacher(self, key: str, batch: Batch) -> torch.Tensor | None:
        """The frozen teacher's embeddings of ``batch`` for model ``key`` (None: no distillation)."""
        return None if self.distill is None else self.distill.teacher(key, batch)

    def with_distill(self, stats: StepStats, key: str, loss: torch.Tensor,
                     distill: torch.Tensor | None) -> torch.Tensor:
        """``loss`` + weight x mean distillation loss of the batch (``distill``: per sample, or None),
        recording the mean as ``loss_distill_<key>``."""
        if distill is None or self.distill is None:
            return loss
        d = distill.mean()
        setattr(stats, f"loss_distill_{key}", float(d.detach()))
        return loss + self.distill.weight * d

    @abc.abstractmethod
    def step(self, batch: Batch, *, keep_ratio: float) -> StepStats:
        """One mini-batch of training with keep ratio λ(e); returns what the step did."""

    def prepare(self, batch: Batch) -> Batch:
        """The batch with each model's parameter-free front end applied (the audio's log-mel):
        computed once per step, however many forward passes the strategy makes."""
        with record_function("cometa.front_end"):
            return Batch(self.audio.prepare(batch.audio), self.visual.prepare(batch.frames), batch.labels,
                         batch.noisy, batch.index)

    def forward_and_select(self, batch: Batch, keep_ratio: float, *, teachers: bool = False):
        """Lines 5-9 under θ, shared by the strategies that learn from disagreement: one forward
        per model (support losses, predictions, small-loss ranking), D̄' and both selections.
        ``batch`` comes through :meth:`prepare`. With ``teachers`` the same forward also gives each
        model's per-sample distillation loss under θ (when it has a teacher).

        Returns ``(stats, selection, loss_a, loss_v, distill)`` (``distill``: modality -> (B,) or
        None), or ``(stats, None, None, None, None)`` when this batch takes no update: D̄' empty (on
        every rank under DDP), or empty on this rank only, in which case the rank has already joined
        its peers' all-reduce with zero gradients.
        """
        stats = StepStats(n=len(batch))
        with record_function("cometa.forward[audio]"):
            logits_a, loss_a, *dist_a = self.audio(batch.audio, batch.labels, prepared=True,
                                                   teacher=self.teacher("audio", batch) if teachers else None)
        with record_function("cometa.forward[visual]"):
            logits_v, loss_v, *dist_v = self.visual(batch.frames, batch.labels, prepared=True,
                                                    teacher=self.teacher("visual", batch) if teachers else None)
        stats.loss_support_audio = float(loss_a.detach().mean())
        stats.loss_support_visual = float(loss_v.detach().mean())
        with record_function("cometa.selection"):
            sel = select_by_disagreement(logits_a, logits_v, loss_a, loss_v, keep_ratio)
            fill_selection_stats(stats, sel, batch.noisy)
        if skip_step(stats.empty, batch.labels.device):  # the models agree on every sample: no step
            return stats, None, None, None, None
        if stats.empty:  # DDP: this rank agrees everywhere, another rank does not
            self.zero_step()
            return stats, None, None, None, None
        distill = {"audio": dist_a[0] if dist_a else None, "visual": dist_v[0] if dist_v else None}
        return stats, sel, loss_a, loss_v, distill

    def end_epoch(self) -> None:
        """Called by the training loop after every epoch (after :meth:`epoch_rows`); a strategy that
        keeps per-epoch state (a loss gate) updates it here and saves it in :meth:`state_dict`."""
        return None  # no per-epoch state

    def epoch_rows(self) -> list[dict]:
        """Extra per-epoch store rows ``{name, value[, modality]}`` of the epoch just trained."""
        return []

    def set_lr(self, lr: float) -> None:
        """The outer rate β of this step (lines 10-11), from the round's schedule."""
        for opt in (self.opt_audio, self.opt_visual):
            for group in opt.param_groups:
                group["lr"] = lr

    def state_dict(self) -> dict:
        return {"opt_audio": self.opt_audio.state_dict(), "opt_visual": self.opt_visual.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.opt_audio.load_state_dict(state["opt_audio"])
        self.opt_visual.load_state_dict(state["opt_visual"])

    def zero_step(self) -> None:
        """Under DDP, a rank with an empty D̄' whose peers have one: join the all-reduce with zero
        gradients (the update is the other ranks' mean gradient)."""
        for model, opt in ((self.audio, self.opt_audio), (self.visual, self.opt_visual)):
            params = trainable(model)
            self._apply(opt, params, [None] * len(params))

    @staticmethod
    def _apply(opt: torch.optim.Optimizer, params: list[nn.Parameter], grads) -> None:
        """Write explicit gradients into ``.grad`` (all-reduced first under DDP) and step."""
        with record_function("cometa.optimiser"):
            for p, g in zip(params, grads):
                p.grad = None if g is None else g.detach()
            all_reduce_grads(params)
            opt.step()


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``model`` that train (all of them unless ``stage2.train: adapters``)."""
    return [p for p in model.parameters() if p.requires_grad]
