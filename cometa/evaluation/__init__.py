"""Layer 4, evaluation: speaker verification measured on trial lists.

- :mod:`~cometa.evaluation.metrics`: EER, minDCF, DET curves, cosine scoring, score fusion
- :mod:`~cometa.evaluation.evaluate`: every trial list and modality of a set of embeddings
- :mod:`~cometa.evaluation.baselines`: training-free baselines (how hard is a corpus)

Imports the core layer and below.
"""
