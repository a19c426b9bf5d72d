"""The latent explorer: latents, projection, traversal, interpolation and jobs. numpy/torch in,
numpy out; no Streamlit."""
