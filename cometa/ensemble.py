"""Public API, kept where it has always been: ``cometa.ensemble`` re-exports :mod:`cometa.core.ensemble`
(the audio-visual cluster ensemble of Sec. 2.2: align, vote, consensus). New code may import either."""
from cometa.core.ensemble import align, consensus, joint_embeddings, make_round_labels, vote, vote_counts

__all__ = ["joint_embeddings", "align", "vote", "vote_counts", "consensus", "make_round_labels"]
