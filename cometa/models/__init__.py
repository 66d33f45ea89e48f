"""Layer 2, models: the networks and what they are built from.

- :mod:`~cometa.models.features`: the log-mel front end (and the crops of :mod:`cometa.data.crops`)
- :mod:`~cometa.models.augment`: MUSAN/RIR audio augmentation and the visual transforms
- :mod:`~cometa.models.losses`: contrastive loss (Eq. 1-2), AAM-softmax, the augmentation discriminator
- :mod:`~cometa.models.encoders`: ECAPA-TDNN and the face ResNet (a registry of plug-ins)
- :mod:`~cometa.models.build`: an audio or visual model from the config
- :mod:`~cometa.models.distributed`: torch.distributed helpers (gradients all-reduced by hand)

Imports the data layer and below.
"""
