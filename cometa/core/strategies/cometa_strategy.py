"""`cometa`: Co-Meta learning, Algorithm 1 of the paper, one mini-batch at a time.

- lines 5-6: θ'_A = θ_A − α∇ℓ(D̄; θ_A), θ'_V likewise (support set = the whole mini-batch);
- line 7: disagreement D̄' under θ (Eq. 3);
- lines 8-9: each model's ⌈λ(e)|D̄'|⌉ small-loss samples under θ;
- lines 10-11: θ_A ← Adam(∇_{θ_A} ℓ(D̄'^(V); θ'_A)), θ_V ← Adam(∇_{θ_V} ℓ(D̄'^(A); θ'_V)) — the
  query loss of the inner-updated model on the samples its PEER selected, differentiated through
  the inner step (second order; ``second_order=False`` for first-order MAML). The query loss is
  the mean per-sample loss over the peer's selection, taken from a forward pass of the whole
  mini-batch under θ' (BatchNorm sees D̄'s statistics in the inner and the outer pass alike).

With ``stage2.distill`` the outer loss of lines 10-11 gains the distillation term of the whole
mini-batch under θ' (from the same forward); the inner step stays on the AAM-softmax loss. Only the
trainable parameters (``stage2.train: adapters``: adapters, heads, distillation maps) form θ and θ':
the frozen ones enter the functional forward as they are and receive no gradient.

An empty D̄' (the models agree on every sample) leaves both models unchanged for that batch; the
training loop counts such batches (``empty_disagreement_batches``).
"""
from __future__ import annotations

import torch

from cometa.core.batchnorm import hand_double_backward_batchnorm
from cometa.core.meta import call_with, meta_gradients
from cometa.core.strategies.base import Batch, StepStats, Strategy, trainable


class CoMeta(Strategy):
    name = "cometa"

    def step(self, batch: Batch, *, keep_ratio: float) -> StepStats:
        batch = self.prepare(batch)  # the audio's log-mel once, for the forwards under θ and θ'
        # one forward under θ per model: support loss (lines 5-6), predictions (line 7), ranking (8-9).
        # Second order differentiates this forward's BatchNorm backward: the closed-form double
        # backward of core/batchnorm.py (its forward and first backward are PyTorch's own kernels).
        with hand_double_backward_batchnorm(self.second_order):
            stats, sel, loss_a, loss_v, _ = self.forward_and_select(batch, keep_ratio)
        if sel is None:
            return stats
        for model, opt, x, support, peer_sel, key in (
            (self.audio, self.opt_audio, batch.audio, loss_a.mean(), sel.visual, "audio"),
            (self.visual, self.opt_visual, batch.frames, loss_v.mean(), sel.audio, "visual"),
        ):
            # The query forward runs on the whole of D̄ under θ' and averages the selected samples'
            # losses: BatchNorm then normalises with D̄'s statistics in both passes, and a query set
            # of one sample is well defined.
            teacher = self.teacher(key, batch)
            parts: dict[str, torch.Tensor] = {}

            def query_loss(fast, model=model, x=x, peer_sel=peer_sel, key=key, teacher=teacher, parts=parts):
                # (defaults: this iteration's)
                _, losses, *distill = call_with(model, fast, x, batch.labels, prepared=True, teacher=teacher)
                parts["query"] = losses[peer_sel].mean()
                return self.with_distill(stats, key, parts["query"], distill[0] if distill else None)

            grads, _ = meta_gradients(model, support, query_loss, alpha=self.alpha, second_order=self.second_order,
                                      tag=key)
            self._apply(opt, trainable(model), [g for g, p in zip(grads, model.parameters()) if p.requires_grad])
            setattr(stats, f"loss_query_{key}", float(parts["query"].detach()))
        return stats
