"""KL of diagonal Gaussian posteriors against the N(0, I) prior, in numpy, and active units.
Torch-free, so that a cached atlas can be summarised without importing torch."""

from __future__ import annotations

import numpy as np

ACTIVE_NATS = 0.01  # a dim whose mean KL exceeds this carries information (an "active unit")


def kl_terms(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(q(z|x) || N(0, I)) of every sample and dim, in nats: (N, dz)."""
    return -0.5 * (1.0 + logvar - mu**2 - np.exp(logvar))


ROWS = 65_536  # rows per step over a memory-mapped store: no (N, dz) temporary at once


def kl_per_dim(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Mean KL per dimension over the data: (dz,) float32, summed ROWS rows at a time in
    float64 (a float16 store's rows too)."""
    total = np.zeros(mu.shape[1], np.float64)
    for i in range(0, len(mu), ROWS):
        m = np.asarray(mu[i : i + ROWS], np.float64)
        total += kl_terms(m, np.asarray(logvar[i : i + ROWS], np.float64)).sum(0)
    return (total / max(len(mu), 1)).astype(np.float32)


def active_units(kl_per_dim, threshold: float = ACTIVE_NATS) -> int:
    """Dims whose mean KL over the data exceeds `threshold` nats carry information. Works on a
    tensor or an array."""
    return int((kl_per_dim > threshold).sum())


def neg_elbo(recon: str, image_size: int, mse, kl):
    """−ELBO at β = 1 from the per-pixel MSE and the KL (nats), with the reconstruction term in
    the model's convention: summed over the image_size² pixels for "sse", the mean for "mse"."""
    return mse * (image_size * image_size if recon == "sse" else 1.0) + kl
