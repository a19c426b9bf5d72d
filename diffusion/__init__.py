"""The pattern → speckle generator: a latent diffusion model, conditioned on the input pattern,
that works in a trained VAE's latent space (the second stage of "Diffusion Modeling for Speckle
Generation in Multimode Fibers"). No Streamlit here; the app's Generate page calls
explorer.generate."""
