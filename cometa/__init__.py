"""cometa: a workbench for self-supervised audio-visual speaker representation learning (Co-Meta)."""

__version__ = "0.1.0"
