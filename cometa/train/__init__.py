"""Layer 5, training: the loops that turn a corpus and labels into trained encoders.

- :mod:`~cometa.train.stage1`: contrastive pretraining of the audio encoder (Sec. 2.1)
- :mod:`~cometa.train.stage2`: one Stage II round with a strategy (Algorithm 1)
- :mod:`~cometa.train.embed`: embeddings of every utterance (sharded over DDP ranks)
- :mod:`~cometa.train.checkpoint`: resumable checkpoints and RNG state

Imports the evaluation layer and below.
"""
