"""2-D projections (UMAP) of embeddings per round, aligned across rounds, computed by the pipeline."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ProjectionConfig:
    enabled: bool = True
    max_points: int = 50000  # subsample cap per round (stated in the dashboard)
    n_neighbors: int = 15
    min_dist: float = 0.1
