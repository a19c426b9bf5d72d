"""Speckle physics: simulators (multimode fibre, free space), their file output, and speckle
statistics. Knows nothing of the VAE."""

__version__ = "0.1.0"
