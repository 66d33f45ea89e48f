"""Public API, kept where it has always been: ``cometa.selection`` re-exports :mod:`cometa.core.selection`
(disagreement, Eq. 3, and small-loss selection, Algorithm 1 lines 7-9). New code may import either."""
from cometa.core.selection import disagreement, n_selected, selection_overlap, small_loss

__all__ = ["disagreement", "small_loss", "n_selected", "selection_overlap"]
