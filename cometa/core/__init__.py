"""Layer 3, the noisy-label core: the paper's method as pure functions, and the strategies.

- :mod:`~cometa.core.pseudo_labels`: k-means (Lloyd's iterations on :mod:`~cometa.core.lloyd`, the
  backend chosen by :mod:`~cometa.core.blas`), cluster means
- :mod:`~cometa.core.ensemble`: the audio-visual cluster ensemble and a round's labels (Sec. 2.2)
- :mod:`~cometa.core.label_quality`: purity, NMI, ARI, flip rate, wrong-label masks
- :mod:`~cometa.core.selection`: disagreement (Eq. 3) and small-loss selection (lines 7-9)
- :mod:`~cometa.core.schedules`: λ(e) (line 13) and the learning-rate schedules
- :mod:`~cometa.core.meta`: the MAML inner and outer step (lines 5-6, 10-11)
- :mod:`~cometa.core.strategies`: baseline, co-teaching+, Co-Meta (a registry of plug-ins), and
  the per-step statistics they report
- :mod:`~cometa.core.projections`: UMAP of a round's embeddings, aligned across rounds

Arrays in, arrays out; no file I/O. Imports the models layer and below.
"""
