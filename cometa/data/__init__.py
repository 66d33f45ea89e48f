"""Layer 1, data: the corpus a run reads.

- :mod:`~cometa.data.voxceleb`: the VoxCeleb layout (manifests, trial lists, audio and face readers)
- :mod:`~cometa.data.synthetic`: the embedded corpus generator (same layout, known identities)
- :mod:`~cometa.data.corpus`: which corpus a run uses, opened strictly or scanned for ``--dry-run``
- :mod:`~cometa.data.crops`: random training crops, two non-overlapping segments, evaluation crops
- :mod:`~cometa.data.datasets`: the in-memory banks and the torch Datasets that feed training

Imports only :mod:`cometa.config` and :mod:`cometa.runs` from cometa.
"""
