"""Stage II: rounds of pseudo labels + training both encoders with a strategy (Algorithm 1)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Stage2Config:
    """Algorithm 1's inputs: tau, E_k, alpha, beta; relabelling every ``epochs_per_round`` epochs."""

    strategies: list[str] = field(default_factory=lambda: ["baseline", "coteaching_plus", "cometa"])
    rounds: int = 20  # relabellings; E_max = rounds * epochs_per_round (paper: 200)
    epochs_per_round: int = 10  # Algorithm 1 line 14: relabel when e mod 10 = 0
    batch_size: int = 128
    tau: float = 0.2  # estimated noise rate
    e_k: int = 10  # epochs over which lambda(e) ramps from 1 to 1 - tau
    alpha: float = 0.01  # inner (support) step size, lines 5-6
    beta: float = 0.001  # outer step size (Adam), lines 10-11; also the baseline's Adam lr
    second_order: bool = True  # differentiate through the inner step (False = first-order MAML)
    margin: float = 0.2  # AAM-softmax
    scale: float = 32.0
    frames_per_sample: int = 1  # face frames drawn per utterance per step
