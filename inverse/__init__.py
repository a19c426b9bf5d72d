"""Speckle → pattern: reconstruct the SLM pattern behind a speckle frame. Learned read-outs
(ridge from the VAE's μ or the pixels, a one-hidden-layer dense net from the pixels, an MLP from
μ) and a physical inverse through a fitted transmission matrix; training, prediction and
evaluation CLIs. Beside diffusion/ (pattern → speckle), on the same floor: neither imports the
other. See docs/inverse.md."""
