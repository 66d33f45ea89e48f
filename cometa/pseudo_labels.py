"""Pseudo labels by clustering L2-normalised embeddings (paper Sec. 2.2): faiss k-means."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClusteringConfig:
    method: str = "kmeans"  # kmeans | agglomerative
    k: int = 6000
    niter: int = 20
    vote_policy: str = "reference"  # reference | drop  (where audio, visual, joint all differ)

    def validate(self) -> None:
        if self.method not in ("kmeans", "agglomerative"):
            raise ValueError(f"clustering.method must be kmeans|agglomerative, got {self.method!r}")
        if self.vote_policy not in ("reference", "drop"):
            raise ValueError(f"clustering.vote_policy must be reference|drop, got {self.vote_policy!r}")
