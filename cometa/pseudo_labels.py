"""Public API, kept where it has always been: ``cometa.pseudo_labels`` re-exports
:mod:`cometa.core.pseudo_labels` (k-means and agglomerative pseudo labels, Sec. 2.2). New code may import either."""
from cometa.core.pseudo_labels import (
                                       NOISE_TARGETS,
                                       NOISE_UNITS,
                                       ClusteringConfig,
                                       agglomerative,
                                       centroids,
                                       cluster,
                                       clustering_backend,
                                       kmeans,
                                       kmeans_plus_plus,
                                       l2_normalise,
                                       random_init,
                                       truth_labels,
)

__all__ = ["ClusteringConfig", "l2_normalise", "kmeans_plus_plus", "random_init", "kmeans", "agglomerative",
           "clustering_backend", "cluster", "centroids", "truth_labels", "NOISE_UNITS",
           "NOISE_TARGETS"]
