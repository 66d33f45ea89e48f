"""Verification evaluation: embeddings -> cosine scores of trial lists -> EER / minDCF per modality."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    """Trial lists (VoxCeleb1 file names) keyed by their short name, and minDCF operating points."""

    trial_lists: dict = field(
        default_factory=lambda: {"O": "veri_test2.txt", "E": "list_test_all2.txt", "H": "list_test_hard2.txt"}
    )
    p_targets: list[float] = field(default_factory=lambda: [0.01, 0.05])
    batch_size: int = 64
