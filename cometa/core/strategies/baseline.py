"""`baseline`: the two encoders trained independently on the consensus pseudo labels (Sec. 2.2).

Each model takes a plain Adam step (lr β) on the mean AAM-softmax loss of the whole mini-batch
(plus the distillation term of ``stage2.distill``, when set); the modalities meet only in the
cluster ensemble between rounds (and, with ``distill.teacher: peer``, through the frozen peer).

The disagreement set and the small-loss selections are still computed (not used) so that the
dashboards can compare them with the strategies that learn from them.
"""
from __future__ import annotations

import torch
from torch.profiler import record_function

from cometa.core.strategies.base import Batch, StepStats, Strategy, fill_selection_stats, select_by_disagreement


class Baseline(Strategy):
    name = "baseline"

    def step(self, batch: Batch, *, keep_ratio: float) -> StepStats:
        stats = StepStats(n=len(batch))
        out = {}
        for model, opt, x, key in ((self.audio, self.opt_audio, batch.audio, "audio"),
                                   (self.visual, self.opt_visual, batch.frames, "visual")):
            with record_function(f"cometa.forward[{key}]"):
                logits, losses, *distill = model(x, batch.labels, teacher=self.teacher(key, batch))
            out[key] = (logits.detach(), losses.detach())
            loss = losses.mean()
            params = [p for p in model.parameters() if p.requires_grad]
            total = self.with_distill(stats, key, loss, distill[0] if distill else None)
            with record_function(f"cometa.backward[{key}]"):
                grads = torch.autograd.grad(total, params, allow_unused=True)
            self._apply(opt, params, grads)
            setattr(stats, f"loss_support_{key}", float(loss.detach()))
        # instrumentation only (predictions under θ before this step, as the other strategies see them)
        with record_function("cometa.selection"):
            sel = select_by_disagreement(out["audio"][0], out["visual"][0], out["audio"][1], out["visual"][1],
                                         keep_ratio)
            fill_selection_stats(stats, sel, batch.noisy)
        return stats
