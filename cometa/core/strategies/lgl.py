"""`lgl`: loss-gated learning (Tao et al., "Self-supervised speaker recognition with loss-gated
learning", ICASSP 2022), per modality on the consensus labels.

Each model trains on the samples of its mini-batch whose AAM-softmax loss under θ is at most the
fixed gate (``stage2.lgl.gate``): ℓ = Σ_i ℓ_i 1[ℓ_i ≤ gate] / |{i : ℓ_i ≤ gate}|. Tao et al. first
train without the gate until the loss settles, then with it; here the first
``stage2.lgl.warmup_epochs`` epochs of every round are ungated. A batch with no sample under the
gate takes no step for that model.
"""
from __future__ import annotations

import torch

from cometa.core.loss_gate import fixed_gate
from cometa.core.strategies.base import Batch
from cometa.core.strategies.gated import GatedStrategy


class LGL(GatedStrategy):
    name = "lgl"

    def train_targets(self, key: str, logits: torch.Tensor, losses: torch.Tensor,
                      batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.epochs_done < self.options.warmup_epochs:
            return batch.labels, torch.ones_like(batch.labels, dtype=torch.bool)
        return batch.labels, fixed_gate(losses, self.options.gate)

    def epoch_rows(self) -> list[dict]:
        if self.epochs_done < self.options.warmup_epochs:
            return []
        return [dict(name="loss_gate", modality=m, value=float(self.options.gate)) for m in ("audio", "visual")]
