"""Stage II training strategies, chosen per run (the registry below is the list of plug-ins).

| name              | Algorithm 1 lines | what it does                                                   |
|-------------------|-------------------|----------------------------------------------------------------|
| `baseline`        | -                 | each encoder trained independently on the consensus labels      |
| `coteaching_plus` | 7-11 (θ' = θ)     | update by disagreement, cross update with the peer's selection  |
| `cometa`          | 5-11              | + MAML inner step on the batch, outer step through it           |
| `lgl`             | -                 | each model on its samples under a fixed loss gate (Tao et al.)  |
| `dlg_lc`          | -                 | GMM loss gate + label correction by prediction (Han et al.)     |

What happens to the classifier heads when the label set changes (a new round): both AAM-softmax
heads are rebuilt with one row per cluster of the new consensus labelling, each row initialised
at the L2-normalised mean embedding of the cluster's members under the current encoder; the
encoders carry over, and the Adam states are started afresh (the parameter set changed). The one
exception is the visual head of round 1: the visual encoder has had no training yet, and the
cluster means of its random embeddings are nearly parallel, so that head starts from
AAM-softmax's own random initialisation.
"""
from __future__ import annotations

from cometa.core.strategies.base import Batch, Distillation, SpeakerClassifier, Strategy
from cometa.core.strategies.baseline import Baseline
from cometa.core.strategies.cometa_strategy import CoMeta
from cometa.core.strategies.coteaching_plus import CoTeachingPlus
from cometa.core.strategies.dlg_lc import DLGLC
from cometa.core.strategies.gated import GatedStrategy
from cometa.core.strategies.lgl import LGL
from cometa.core.strategies.stats import EpochStats, StepStats

STRATEGIES: dict[str, type[Strategy]] = {
    "baseline": Baseline,
    "coteaching_plus": CoTeachingPlus,
    "cometa": CoMeta,
    "lgl": LGL,
    "dlg_lc": DLGLC,
}


def build_strategy(name: str, audio: SpeakerClassifier, visual: SpeakerClassifier, *, lr: float, alpha: float,
                   second_order: bool, distill: Distillation | None = None, options=None) -> Strategy:
    """Instantiate a registered strategy; an unknown name lists the registry. ``options`` is the
    strategy's own config section (``stage2.lgl``, ``stage2.dlg_lc``), required by those strategies."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}") from None
    if issubclass(cls, GatedStrategy):
        if options is None:
            raise ValueError(f"strategy {name!r} needs its options (the config section stage2.{name})")
        return cls(audio, visual, lr=lr, alpha=alpha, second_order=second_order, distill=distill, options=options)
    return cls(audio, visual, lr=lr, alpha=alpha, second_order=second_order, distill=distill)


__all__ = ["STRATEGIES", "build_strategy", "Batch", "Distillation", "SpeakerClassifier", "StepStats", "EpochStats",
           "Strategy"]
