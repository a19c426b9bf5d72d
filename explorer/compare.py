"""Comparing models on the same data: the rate–distortion point of a model, and which latent dims
of two models encode the same thing."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from explorer.atlas import Atlas
from vae.evaluate import contrast_ratio
from vae.inference import decode


def rate_distortion(atlas: Atlas, sample: int = 256, mask: np.ndarray | None = None) -> dict:
    """Rate = mean KL per image (nats); distortion = mean squared error per pixel of the z = μ
    reconstruction; plus active units and the speckle contrast ratio in the lit region `mask`
    on up to `sample` images."""
    idx = np.arange(min(sample, len(atlas.mu)))
    x = np.stack([atlas.dataset.image(int(i)) for i in idx])
    rec = decode(atlas.checkpoint.model, atlas.mu[idx])
    return {
        "rate_nats": float(atlas.kl.mean()),
        "distortion_mse": float(atlas.recon_error.mean()),
        "active_units": int(atlas.active_units),
        "contrast_ratio": contrast_ratio(x, rec, mask),
        "beta": atlas.checkpoint.beta,
        "recon": atlas.checkpoint.recon,
    }


def match_dims(mu_a: np.ndarray, mu_b: np.ndarray, dims_a: np.ndarray, dims_b: np.ndarray) -> dict:
    """|Pearson ρ| between every dim in `dims_a` of model A and every dim in `dims_b` of model B
    (μ on the same images), and the one-to-one matching that maximizes the total |ρ| (the
    Hungarian algorithm). Rows and columns of `corr` are reordered so matched pairs lie on the
    diagonal."""
    a = mu_a[:, dims_a] - mu_a[:, dims_a].mean(0)
    b = mu_b[:, dims_b] - mu_b[:, dims_b].mean(0)
    a /= np.maximum(np.linalg.norm(a, axis=0), 1e-12)
    b /= np.maximum(np.linalg.norm(b, axis=0), 1e-12)
    corr = np.abs(a.T @ b)  # (Ka, Kb)
    rows, cols = linear_sum_assignment(-corr)
    order_a = np.concatenate([rows, np.setdiff1d(np.arange(len(dims_a)), rows)])
    order_b = np.concatenate([cols, np.setdiff1d(np.arange(len(dims_b)), cols)])
    return {
        "corr": corr[np.ix_(order_a, order_b)],
        "dims_a": np.asarray(dims_a)[order_a],
        "dims_b": np.asarray(dims_b)[order_b],
        "pairs": [
            (int(dims_a[r]), int(dims_b[c]), float(corr[r, c]))
            for r, c in zip(rows, cols, strict=True)
        ],
    }
