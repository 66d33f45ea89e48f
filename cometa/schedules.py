"""Public API, kept where it has always been: ``cometa.schedules`` re-exports :mod:`cometa.core.schedules`
(λ(e) of Algorithm 1 line 13, the learning-rate schedules). New code may import either."""
from cometa.core.schedules import LRScheduleConfig, keep_ratio, keep_ratio_in_epoch, keep_ratio_schedule, lr_schedule

__all__ = ["keep_ratio", "keep_ratio_in_epoch", "keep_ratio_schedule", "LRScheduleConfig", "lr_schedule"]
