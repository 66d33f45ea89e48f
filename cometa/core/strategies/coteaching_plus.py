"""`coteaching_plus`: update by disagreement (Yu et al. 2019) across modalities (Sec. 3.1).

Algorithm 1 without the meta step: line 7 (disagreement, Eq. 3), lines 8-9 (each model's
small-loss selection of D̄'), then lines 10-11 with θ' = θ: the audio model takes an Adam step on
the samples the *visual* model selected, and vice versa. A distillation term (``stage2.distill``,
label-free) is taken over the whole mini-batch and added to that loss.
"""
from __future__ import annotations

import torch
from torch.profiler import record_function

from cometa.core.strategies.base import Batch, StepStats, Strategy


class CoTeachingPlus(Strategy):
    name = "coteaching_plus"

    def step(self, batch: Batch, *, keep_ratio: float) -> StepStats:
        stats, sel, loss_a, loss_v, distill = self.forward_and_select(self.prepare(batch), keep_ratio, teachers=True)
        if sel is None:
            return stats
        # cross update: each model learns from its peer's selection
        for model, opt, losses, peer_sel, key in ((self.audio, self.opt_audio, loss_a, sel.visual, "audio"),
                                                  (self.visual, self.opt_visual, loss_v, sel.audio, "visual")):
            q = losses[peer_sel].mean()
            params = [p for p in model.parameters() if p.requires_grad]
            total = self.with_distill(stats, key, q, distill[key])
            with record_function(f"cometa.backward[{key}]"):
                grads = torch.autograd.grad(total, params, allow_unused=True, retain_graph=True)
            self._apply(opt, params, grads)
            setattr(stats, f"loss_query_{key}", float(q.detach()))
        return stats
