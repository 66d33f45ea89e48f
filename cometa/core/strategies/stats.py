"""What a Stage II step reports (:class:`StepStats`), its sum over an epoch (:class:`EpochStats`) and
the per-epoch metrics of DESIGN.md's vocabulary computed from that sum (:meth:`EpochStats.rows`).

Plain numbers, no torch: the strategies fill a :class:`StepStats` per mini-batch, the training loop
adds them up, and the store receives :meth:`EpochStats.rows`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["StepStats", "ModalitySums", "EpochStats"]

NAN = float("nan")


@dataclass
class StepStats:
    """What one step did; summed over an epoch by the training loop (the dashboard's raw data)."""

    n: int = 0
    loss_support_audio: float = float("nan")
    loss_support_visual: float = float("nan")
    loss_query_audio: float = float("nan")
    loss_query_visual: float = float("nan")
    loss_distill_audio: float = float("nan")  # mean 1 - cos(student, teacher) of the batch (stage2.distill)
    loss_distill_visual: float = float("nan")
    n_disagree: int = 0
    n_disagree_noisy: int = 0
    n_selected_audio: int = 0
    n_selected_visual: int = 0
    n_selected_noisy_audio: int = 0
    n_selected_noisy_visual: int = 0
    n_overlap: int = 0
    n_union: int = 0
    empty: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class ModalitySums:
    """One modality's step statistics summed over an epoch."""

    n_selected: int = 0  # Σ |D̄'^(m)|
    n_selected_noisy: int = 0  # of those, samples whose pseudo label is wrong
    loss_support: float = 0.0  # Σ over every step
    loss_query: float = 0.0  # Σ over the steps that had a query loss (a non-empty D̄')
    n_query: int = 0  # how many steps that was
    loss_distill: float = 0.0  # Σ over the steps that had a distillation loss (stage2.distill)
    n_distill: int = 0

    def add(self, *, n_selected: int, n_selected_noisy: int, loss_support: float, loss_query: float,
            loss_distill: float = NAN) -> None:
        self.n_selected += n_selected
        self.n_selected_noisy += n_selected_noisy
        self.loss_support += loss_support
        if not math.isnan(loss_query):  # no query loss on a batch without disagreement
            self.loss_query += loss_query
            self.n_query += 1
        if not math.isnan(loss_distill):  # none without a teacher, or on a batch that took no step
            self.loss_distill += loss_distill
            self.n_distill += 1


@dataclass
class EpochStats:
    """The step statistics of one epoch, summed (the accumulator of the training loop)."""

    n: int = 0  # Σ |D̄|
    n_disagree: int = 0  # Σ |D̄'|
    n_disagree_noisy: int = 0
    n_overlap: int = 0  # Σ |D̄'^(A) ∩ D̄'^(V)|
    n_union: int = 0  # Σ |D̄'^(A) ∪ D̄'^(V)|
    empty: int = 0  # steps whose D̄' was empty
    # the gated strategies' own counts (StepStats.extra): n_dropped_<m>, n_dropped_noisy_<m>, n_gate_empty_<m>
    extra: dict = field(default_factory=dict)
    audio: ModalitySums = field(default_factory=ModalitySums)
    visual: ModalitySums = field(default_factory=ModalitySums)

    def add(self, st: StepStats) -> None:
        """Add one step's statistics."""
        self.n += st.n
        self.n_disagree += st.n_disagree
        self.n_disagree_noisy += st.n_disagree_noisy
        self.n_overlap += st.n_overlap
        self.n_union += st.n_union
        self.empty += int(st.empty)
        for k, v in st.extra.items():
            self.extra[k] = self.extra.get(k, 0) + v
        self.audio.add(n_selected=st.n_selected_audio, n_selected_noisy=st.n_selected_noisy_audio,
                       loss_support=st.loss_support_audio, loss_query=st.loss_query_audio,
                       loss_distill=st.loss_distill_audio)
        self.visual.add(n_selected=st.n_selected_visual, n_selected_noisy=st.n_selected_noisy_visual,
                        loss_support=st.loss_support_visual, loss_query=st.loss_query_visual,
                        loss_distill=st.loss_distill_visual)

    def rows(self, *, n_batches: int, lam: float) -> list[dict]:
        """The epoch's metrics (DESIGN.md's names) as store rows ``{name, value[, modality]}``.

        Fractions are of |D̄| summed over the epoch; ``*_noisy_frac`` are NaN when their set was
        empty all epoch, ``loss_query`` is the mean over the steps that had one, ``loss_support``
        the mean over ``n_batches``; ``loss_distill`` (the mean over the steps that had one) only for
        a modality with a teacher.
        """
        n, d = max(self.n, 1), self.n_disagree
        rows = [dict(name="lambda", value=lam),
                dict(name="disagreement_frac", value=d / n),
                dict(name="empty_disagreement_batches", value=float(self.empty)),
                dict(name="disagreement_noisy_frac", value=self.n_disagree_noisy / d if d else NAN),
                dict(name="selection_overlap", value=self.n_overlap / self.n_union if self.n_union else NAN)]
        for m, s in (("audio", self.audio), ("visual", self.visual)):
            sel = s.n_selected
            left, left_noisy = d - sel, self.n_disagree_noisy - s.n_selected_noisy  # D̄' minus the selection
            if f"n_dropped_{m}" in self.extra:  # a loss gate: what it left out of D̄
                left, left_noisy = self.extra[f"n_dropped_{m}"], self.extra[f"n_dropped_noisy_{m}"]
            rows += [dict(name=f"selected_frac_{m}", value=sel / n),
                     dict(name="selected_noisy_frac", modality=m, value=s.n_selected_noisy / sel if sel else NAN),
                     dict(name="dropped_noisy_frac", modality=m, value=left_noisy / left if left else NAN),
                     dict(name="loss_support", modality=m, value=s.loss_support / max(n_batches, 1)),
                     dict(name="loss_query", modality=m, value=s.loss_query / s.n_query if s.n_query else NAN)]
            if s.n_distill:
                rows.append(dict(name="loss_distill", modality=m, value=s.loss_distill / s.n_distill))
            if f"n_gate_empty_{m}" in self.extra:  # a loss gate: batches it emptied, which took no step for m
                rows.append(dict(name=f"n_gate_empty_{m}", value=float(self.extra[f"n_gate_empty_{m}"])))
        return rows
