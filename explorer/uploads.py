"""Users' own images through the loaded model: preprocessing exactly as in training, the
reconstruction and its metrics, placement on the map, nearest training samples and an
out-of-distribution check against the atlas's own distribution. A stack (multi-page TIFF, HDF5,
.mat, .npy/.npz) gives one upload per frame, up to MAX_UPLOAD_FRAMES. Speckle statistics are
taken in the lit region (speckle.lit_region): the dataset's when the sizes match, else the upload's
own threshold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from explorer.atlas import Atlas, neg_elbo
from explorer.latent_ops import nearest
from explorer.metrics import compare, percentile_of
from explorer.projection import Projection
from frames import (
    MAX_UPLOAD_FRAMES,
    ImageError,
    Layout,
    Normalization,
    preprocess,
    stack_frames,
)
from speckle.lit_region import LitRegion, dataset_region, upload_region
from vae.inference import decode, kl_terms

PLACEMENT_K = 10
OOD_PERCENTILE = 99.0  # beyond this percentile of the training set: the model never saw its like
REGION_FRAMES = 64  # dataset frames whose mean image finds the lit region


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
    region: str = ""  # which lit-region mask the speckle metrics used (LitRegion.source)

    @property
    def flagged(self) -> list[str]:
        return [k for k, p in self.ood.items() if p > OOD_PERCENTILE]


def load_upload(name: str, data: bytes, size: int, norm: Normalization) -> Upload:
    """Read and preprocess an upload holding one image (a stack's first frame); a bad file becomes
    an Upload with `error` set."""
    return load_uploads(name, data, size, norm, limit=1)[0]


def load_uploads(
    name: str,
    data: bytes,
    size: int,
    norm: Normalization,
    *,
    limit: int = MAX_UPLOAD_FRAMES,
    layout: Layout = Layout(),  # noqa: B008 (frozen)
    progress: Callable[[int, int], None] | None = None,
) -> list[Upload]:
    """Read and preprocess an upload: one Upload per frame of a stack ("name#12", or
    "name#key#12" for an array of an HDF5 or .mat file), up to `limit` frames; the frames beyond
    it are named in one more Upload's `error`. A bad file or frame becomes an Upload with `error`
    set. `layout` says which arrays are what, and their axis order (MATLAB's is "HWN"), as a
    dataset.toml would. `progress(done, total)` is called after each frame."""
    try:
        total, frames = stack_frames(data, name, layout, limit=limit)
        out = []
        for where, index, raw in _guarded(frames):
            label = where if index is None else f"{where}#{index}"
            if isinstance(raw, ImageError):
                out.append(Upload(label, error=str(raw)))
                break  # the rest of a damaged stack is not read
            image, notes = preprocess(raw, size, norm)
            out.append(Upload(label, image=image, notes=notes))
            if progress is not None:
                progress(len(out), min(total, limit))
    except ImageError as e:
        return [Upload(name, error=str(e))]
    if total > limit:
        out.append(
            Upload(
                f"{name} (frames {limit}–{total - 1})",
                error=f"{name}: frames {limit} to {total - 1} not read ({total} frames; an upload is capped at {limit})",
            )
        )
    return out


def _guarded(frames):
    """The frames, then the ImageError that ends a damaged stack, as one more item."""
    try:
        yield from frames
    except ImageError as e:
        yield "", None, e


def lit_region_of(dataset, size: int) -> LitRegion:
    """The current dataset's lit region at the model's size, from its folder (mask.png,
    simulation.json) or the mean of its first REGION_FRAMES frames."""
    n = min(len(dataset), REGION_FRAMES)
    images = np.stack([dataset.image(i) for i in range(n)]) if n else None
    return dataset_region(getattr(dataset, "root", None), size, images)


@torch.inference_mode()
def analyse(
    uploads: list[Upload],
    atlas: Atlas,
    projection: Projection | None,
    k: int = 5,
    window: int = 7,
    region: LitRegion | None = None,
) -> None:
    """Fill in latents, reconstruction, metrics, map position, neighbours and OOD percentiles of
    every good upload, in one encode and one decode batch. The speckle metrics are taken in
    `region` (the dataset's lit region) when its size matches, else in each upload's own."""
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
        lit = upload_region(u.image, region)
        u.metrics, u.region = compare(u.image, recon[i], window, mask=lit.mask), lit.source
        err = float(np.mean((recon[i] - u.image) ** 2))
        kl = float(kls[i])
        elbo = float(neg_elbo(atlas.checkpoint, err, kl))
        u.metrics |= {"kl": kl, "neg_elbo": elbo}
        u.ood = {"KL": percentile_of(kl, atlas.kl)}
        if atlas.errors_ready:  # a big store's errors may not be computed (yet): no rank then
            u.ood = {
                "-ELBO": percentile_of(elbo, atlas.elbo),
                "reconstruction error": percentile_of(err, atlas.recon_error),
            } | u.ood
        u.neighbours = idx[i, :k]
        u.position = positions[i] if positions is not None else None


def posterior_samples(upload: Upload, atlas: Atlas, n: int = 4, seed: int = 0) -> np.ndarray:
    """Decodes of z ~ q(z|x): how uncertain the model is about this image."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n, len(upload.mu))).astype(np.float32)
    z = upload.mu[None] + np.exp(0.5 * upload.logvar)[None] * eps
    return decode(atlas.checkpoint.model, z)
