"""What the loss-gated strategies (`lgl`, `dlg_lc`) share: each model trains on its own gated part of
the mini-batch, with the consensus labels (or, for DLG-LC, its corrected labels); the two models
do not exchange samples (as in `baseline`, the modalities meet only in the cluster ensemble).

A subclass says which samples train and with which label (:meth:`GatedStrategy.train_targets`); this
class takes the step and fills the statistics under the existing names: ``selected_frac_<m>`` is
the fraction of D̄ model m trains on, ``selected_noisy_frac`` the fraction of those whose training
label is wrong, ``dropped_noisy_frac`` that of the samples the gate leaves out (with their pseudo
label), and ``n_gate_empty_<m>`` counts the batches whose gate kept nothing, so that model m took
no step (``empty_disagreement_batches`` counts batches where the models agree, which here is no
reason to skip). The disagreement set is still computed for the dashboards, as in `baseline`.
"""
from __future__ import annotations

import abc
from collections.abc import Callable

import torch

from cometa.core.strategies.base import (
    Batch,
    Distillation,
    SpeakerClassifier,
    StepStats,
    Strategy,
    fill_selection_stats,
    select_by_disagreement,
    skip_step,
)

MODALITIES = ("audio", "visual")


class GatedStrategy(Strategy):
    """Base of the loss-gated strategies; counts its finished epochs (``end_epoch``) for its state."""

    def __init__(self, audio: SpeakerClassifier, visual: SpeakerClassifier, *, lr: float, alpha: float = 0.01,
                 second_order: bool = True, distill: Distillation | None = None, options=None):
        super().__init__(audio, visual, lr=lr, alpha=alpha, second_order=second_order, distill=distill)
        self.options = options
        self.epochs_done = 0  # epochs of this round finished (resumed with the state)
        # (index (B,), labels (B,)) -> (B,) bool: the label is wrong. Set by the training loop for the
        # instrumentation only (a corrected label is judged against the truth); never read by training.
        self.label_is_wrong: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    @abc.abstractmethod
    def train_targets(self, key: str, logits: torch.Tensor, losses: torch.Tensor,
                      batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(targets (B,), train (B,) bool)``: the label each sample trains with and which train,
        from model ``key``'s detached logits (B, K) and per-sample losses (B,) under θ."""

    def end_epoch(self) -> None:
        self.epochs_done += 1

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.epochs_done = int(state.get("epochs_done", 0))

    def step(self, batch: Batch, *, keep_ratio: float) -> StepStats:
        batch = self.prepare(batch)
        stats = StepStats(n=len(batch))
        seen = {}
        for model, opt, x, key in ((self.audio, self.opt_audio, batch.audio, "audio"),
                                   (self.visual, self.opt_visual, batch.frames, "visual")):
            logits, losses, *distill = model(x, batch.labels, prepared=True, teacher=self.teacher(key, batch))
            support = losses.detach()  # against the pseudo labels
            targets, train = self.train_targets(key, logits.detach(), support, batch)
            if not torch.equal(targets, batch.labels):  # corrected labels: the AAM-softmax loss against them
                losses = model.head.from_cosine(logits / model.head.scale, targets, reduction="none")
            n = int(train.sum())
            setattr(stats, f"loss_support_{key}", float(support.mean()))
            if n:
                setattr(stats, f"loss_query_{key}", float(losses.detach()[train].mean()))
            skipped = skip_step(n == 0, batch.labels.device)  # nothing under the gate (on every rank): no step
            stats.extra[f"n_gate_empty_{key}"] = int(skipped)
            if not skipped:
                loss = (losses * train).sum() / max(n, 1)  # Tao et al.: Σ ℓ·mask / |selected|
                # stage2.distill: the teacher's term over the whole batch, as co-teaching+ adds it
                loss = self.with_distill(stats, key, loss, distill[0] if distill else None)
                params = [p for p in model.parameters() if p.requires_grad]
                self._apply(opt, params, torch.autograd.grad(loss, params, allow_unused=True))
            seen[key] = (logits.detach(), support, targets, train)
        self._fill_stats(stats, batch, seen)
        return stats

    def _fill_stats(self, stats: StepStats, batch: Batch, seen: dict) -> None:
        """Disagreement (instrumentation, as in `baseline`), then what each model trained on."""
        (la, sa, _, _), (lv, sv, _, _) = seen["audio"], seen["visual"]
        fill_selection_stats(stats, select_by_disagreement(la, lv, sa, sv, 1.0), batch.noisy)
        for key in MODALITIES:
            _, _, targets, train = seen[key]
            wrong = batch.noisy if self.label_is_wrong is None else self.label_is_wrong(batch.index, targets)
            setattr(stats, f"n_selected_{key}", int(train.sum()))
            setattr(stats, f"n_selected_noisy_{key}", int((wrong & train).sum()))
            stats.extra[f"n_dropped_{key}"] = int((~train).sum())
            stats.extra[f"n_dropped_noisy_{key}"] = int((batch.noisy & ~train).sum())
        ta, tv = seen["audio"][3], seen["visual"][3]
        stats.n_overlap, stats.n_union = int((ta & tv).sum()), int((ta | tv).sum())
