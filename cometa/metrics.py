"""Public API, kept where it has always been: ``cometa.metrics`` re-exports :mod:`cometa.evaluation.metrics`
(EER, minDCF, DET curves, cosine scoring, score fusion). New code may import either."""
from cometa.evaluation.metrics import (
    as_norm,
    as_norm_trials,
    cohort_stats,
    cosine_scores,
    det_curve,
    eer,
    error_rates,
    fuse_scores,
    min_dcf,
    score_trials,
    trial_rows,
    used_cohort_stats,
)

__all__ = ["eer", "min_dcf", "det_curve", "error_rates", "cosine_scores", "score_trials", "fuse_scores", "as_norm",
           "cohort_stats", "used_cohort_stats", "trial_rows", "as_norm_trials"]
