"""Speckle VAE core: model, loss, data, checkpoints and training. Knows nothing of Streamlit."""

__version__ = "0.1.0"
