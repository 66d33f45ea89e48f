"""Public API, kept where it was before the layers: ``cometa.data.baselines`` re-exports
:mod:`cometa.evaluation.baselines` (the handcrafted, training-free verification baselines), so that
scripts written against the old path (``from cometa.data.baselines import baseline_eers``) still run.
It sits in the evaluation layer, like the other re-exports (tests/test_architecture.py, PUBLIC_SHIMS);
nothing in cometa.data imports it."""
from cometa.evaluation.baselines import (
    audio_baseline_embeddings,
    baseline_eers,
    face_baseline_embeddings,
    log_mel,
)

__all__ = ["baseline_eers", "audio_baseline_embeddings", "face_baseline_embeddings", "log_mel"]
