"""Users' own images through the loaded model: preprocessing exactly as in training, the
reconstruction and its metrics, placement on the map, nearest training samples and an
out-of-distribution check against the atlas's own distribution."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from explorer.atlas import Atlas, neg_elbo
from explorer.latent_ops import nearest
from explorer.metrics import compare, percentile_of
from explorer.projection import Projection
from vae.data import ImageError, Normalization, preprocess, read_image
from vae.inference import decode, kl_terms

PLACEMENT_K = 10
OOD_PERCENTILE = 99.0  # beyond this percentile of the training set: the model never saw its like


@dataclass
class Upload:
    name: str
    image: np.ndarray | None = None  # preprocessed input (S, S) in [0, 1]
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    mu: np.ndarray | None = None
    logvar: np.ndarray | None = None
    recon: np.ndarray | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    position: np.ndarray | None = None  # (2,) on the map
    neighbours: np.ndarray | None = None  # atlas ids, nearest first
    ood: dict[str, float] = field(default_factory=dict)  # percentiles of the atlas's values

    @property
    def flagged(self) -> list[str]:
        return [k for k, p in self.ood.items() if p > OOD_PERCENTILE]


def load_upload(name: str, data: bytes, size: int, norm: Normalization) -> Upload:
    """Read and preprocess one upload; a bad file becomes an Upload with `error` set."""
    try:
        raw = read_image(data, name)
        image, notes = preprocess(raw, size, norm)
    except ImageError as e:
        return Upload(name, error=str(e))
    return Upload(name, image=image, notes=notes)


@torch.inference_mode()
def analyse(uploads: list[Upload], atlas: Atlas, projection: Projection | None, k: int = 5,
            window: int = 7) -> None:  # fmt: skip
    """Fill in latents, reconstruction, metrics, map position, neighbours and OOD percentiles of
    every good upload, in one encode and one decode batch."""
    good = [u for u in uploads if u.error is None]
    if not good:
        return
    model = atlas.checkpoint.model
    device = next(model.parameters()).device
    x = torch.from_numpy(np.stack([u.image for u in good]))[:, None].to(device)
    post = model.encode(x)
    mu, logvar = post.mean.float().cpu().numpy(), post.logvar.float().cpu().numpy()
    recon = decode(model, mu)
    # One neighbour search, over the active units (the rest is posterior noise), serves both the
    # neighbour strip and the map placement. Placement weights the nearest latents' positions
    # (where UMAP's own transform starts from) rather than calling the reducer: the same upload
    # then lands in the same place whether the map was fitted in this process or read from the
    # cache, and it costs 0.1 ms instead of ~4 ms.
    idx, dist = nearest(atlas.active_index, mu[:, atlas.active], max(k, PLACEMENT_K))
    positions = None
    if projection is not None:
        positions = projection.place_from_neighbours(idx[:, :PLACEMENT_K], dist[:, :PLACEMENT_K])
    kls = kl_terms(mu, logvar).sum(1)
    for i, u in enumerate(good):
        u.mu, u.logvar, u.recon = mu[i], logvar[i], recon[i]
        u.metrics = compare(u.image, recon[i], window)
        err = float(np.mean((recon[i] - u.image) ** 2))
        kl = float(kls[i])
        elbo = float(neg_elbo(atlas.checkpoint, err, kl))
        u.metrics |= {"kl": kl, "neg_elbo": elbo}
        u.ood = {"-ELBO": percentile_of(elbo, atlas.elbo),
                 "reconstruction error": percentile_of(err, atlas.recon_error), "KL": percentile_of(kl, atlas.kl)}  # fmt: skip
        u.neighbours = idx[i, :k]
        u.position = positions[i] if positions is not None else None


def posterior_samples(upload: Upload, atlas: Atlas, n: int = 4, seed: int = 0) -> np.ndarray:
    """Decodes of z ~ q(z|x): how uncertain the model is about this image."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n, len(upload.mu))).astype(np.float32)
    z = upload.mu[None] + np.exp(0.5 * upload.logvar)[None] * eps
    return decode(atlas.checkpoint.model, z)
