"""`baseline`: the two encoders trained independently on the consensus pseudo labels (Sec. 2.2).

Each model takes a plain Adam step (lr β) on the mean AAM-softmax loss of the whole mini-batch;
the modalities meet only in the cluster ensemble between rounds.
"""
from __future__ import annotations

import torch

from cometa.strategies.base import Batch, StepStats, Strategy


class Baseline(Strategy):
    name = "baseline"

    def step(self, batch: Batch, *, keep_ratio: float) -> StepStats:
        stats = StepStats(n=len(batch))
        for model, opt, x, key in ((self.audio, self.opt_audio, batch.audio, "audio"),
                                   (self.visual, self.opt_visual, batch.frames, "visual")):
            _, losses = model(x, batch.labels)
            loss = losses.mean()
            params = [p for p in model.parameters() if p.requires_grad]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            self._apply(opt, params, grads)
            setattr(stats, f"loss_support_{key}", float(loss.detach()))
        return stats
