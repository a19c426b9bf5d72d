"""Speckle VAE core: model, loss, checkpoints, latents, training and evaluation. Knows nothing of
Streamlit."""

__version__ = "0.1.0"
