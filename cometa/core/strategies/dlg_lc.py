"""`dlg_lc`: dynamic loss-gate and label correction (Han, Chen & Qian, "Self-supervised speaker
verification using dynamic loss-gate and label correction", Interspeech 2022), per modality on the
consensus labels.

- DLG: after every epoch a 2-component GMM is fitted to the per-sample losses each model had in
  that epoch; the next epoch's gate is the loss where the low-loss component's posterior is
  ``stage2.dlg_lc.gmm_posterior`` (:func:`cometa.core.loss_gate.gmm_gate`). The first epoch of a
  round (new labels, no losses yet) is ungated. Under DDP the losses of every rank are gathered and
  rank 0 fits the GMM and sends its gates to the others: one gate per model on every rank, as one
  process would have it (and the gates a resumed run loads, rank 0's, are every rank's).
- LC: a sample above the gate trains with the model's prediction when its softmax probability
  (of the head's logits without margin) exceeds ``stage2.dlg_lc.lc_threshold``, else sits the step
  out (:func:`cometa.core.loss_gate.correct_labels`); ``correct_labels: false`` gives DLG alone.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist

from cometa.core.loss_gate import correct_labels, fit_loss_gmm, gmm_gate
from cometa.core.strategies.base import Batch
from cometa.core.strategies.gated import MODALITIES, GatedStrategy
from cometa.models.distributed import all_gather_numpy, is_distributed, is_main


class DLGLC(GatedStrategy):
    name = "dlg_lc"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.gates = {m: math.inf for m in MODALITIES}  # this epoch's gate per model
        self._losses: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}  # this epoch's losses

    def train_targets(self, key: str, logits: torch.Tensor, losses: torch.Tensor,
                      batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        self._losses[key].append(losses.cpu().numpy().astype(np.float64))
        gated_in = losses <= self.gates[key]
        if not self.options.correct_labels:
            return batch.labels, gated_in
        targets, train, _ = correct_labels(torch.softmax(logits, dim=1), batch.labels, gated_in,
                                           threshold=self.options.lc_threshold)
        return targets, train

    def end_epoch(self) -> None:
        """Fit each model's GMM to this epoch's losses (of every rank): the gates of the next epoch."""
        super().end_epoch()
        gates = torch.full((len(MODALITIES),), math.inf, dtype=torch.float64)  # (2,) audio, visual
        for i, m in enumerate(MODALITIES):
            mine = np.concatenate(self._losses[m]) if self._losses[m] else np.zeros(0)
            losses = all_gather_numpy(mine)  # (Σ_ranks n,) in rank order; this rank's alone without DDP
            self._losses[m] = []
            gmm = fit_loss_gmm(losses) if is_main() and losses.size else None
            if gmm is not None:
                gates[i] = gmm_gate(*gmm, posterior=self.options.gmm_posterior)
        if is_distributed():  # rank 0's gates everywhere (on the models' device: nccl sends CUDA tensors)
            device = next(self.audio.parameters()).device
            gates = gates.to(device)
            dist.broadcast(gates, src=0)
        self.gates = {m: float(g) for m, g in zip(MODALITIES, gates.cpu().tolist())}

    def epoch_rows(self) -> list[dict]:
        return [dict(name="loss_gate", modality=m, value=float(g)) for m, g in self.gates.items()
                if math.isfinite(g)]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "gates": dict(self.gates)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.gates = {m: float(v) for m, v in state.get("gates", self.gates).items()}
