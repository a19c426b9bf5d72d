"""The model bundle: a checkpoint plus a dataset, its latents encoded once and cached on disk
(vae.latents), and the map of them (cached the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from common import cache
from explorer.latent_ops import NeighbourIndex, interpolate, rank_dims
from explorer.projection import Projection, fit_projection
from explorer.tasks import Task
from vae.checkpoint import Checkpoint
from vae.kl import ACTIVE_NATS, active_units, kl_per_dim
from vae.kl import neg_elbo as kl_neg_elbo
from vae.latents import Progress, dataset_latents, file_errors

ROWS = 65_536  # rows per step over μ: a memory-mapped store is read a slice at a time
# Above this many frames a store's missing reconstruction errors are computed on request only.
ERRORS_AUTO_MAX = 100_000


@dataclass
class Atlas:
    checkpoint: Checkpoint
    dataset: object  # frames.ImageFolder (or ArrayDataset): images, labels, fingerprint()
    mu: np.ndarray  # (N, dz)
    logvar: np.ndarray  # (N, dz)
    # (N,) per-image MSE of the z = μ reconstruction, or on a first build with defer_errors the
    # background task computing it; read it as recon_error.
    errors: np.ndarray | Task
    kl: np.ndarray  # (N,) per-image KL in nats
    cache_hit: bool = False

    @property
    def errors_ready(self) -> bool:
        return not isinstance(self.errors, Task) or self.errors.done

    @cached_property
    def recon_error(self) -> np.ndarray:
        """The reconstruction errors; waits for them while they are still being computed (and
        starts them if they wait to be asked for)."""
        if not isinstance(self.errors, Task):
            return self.errors
        self.request_errors()
        result = self.errors.wait()
        if self.errors.error:
            raise RuntimeError(f"computing the reconstruction errors failed: {self.errors.error}")
        return result

    # Derived arrays are cached: pages read them on every slider move.
    @cached_property
    def kl_per_dim(self) -> np.ndarray:
        return kl_per_dim(self.mu, self.logvar)

    @cached_property
    def active(self) -> np.ndarray:
        """Mask of the active units (mean KL > 0.01 nats); all dims if none is."""
        mask = self.kl_per_dim > ACTIVE_NATS
        return mask if mask.any() else np.ones_like(mask)

    @cached_property
    def mu_active(self) -> np.ndarray:
        """μ of the active dims: μ itself (a store's memory map, uncopied) when all are."""
        return self.mu if self.active.all() else np.ascontiguousarray(self.mu[:, self.active])

    @cached_property
    def active_index(self) -> NeighbourIndex:
        """The active units' μ, ready for repeated nearest-neighbour queries (map placement)."""
        return NeighbourIndex(self.mu_active)

    @cached_property
    def dim_order(self) -> np.ndarray:
        """Dims ranked by mean KL: the informative ones first everywhere in the UI."""
        return rank_dims(self.kl_per_dim)

    @cached_property
    def active_units(self) -> int:
        return active_units(self.kl_per_dim)

    @cached_property
    def scale(self) -> np.ndarray:
        """Per-dim σ for traversal sliders: the spread of μ over the data (the aggregate
        posterior). A collapsed dim, whose μ does not vary, gets the prior's σ = 1. Summed
        ROWS rows at a time in float64, so a memory-mapped store is never copied whole."""
        n = len(self.mu)
        total = np.zeros(self.mu.shape[1], np.float64)
        for i in range(0, n, ROWS):
            total += np.asarray(self.mu[i : i + ROWS], np.float64).sum(0)
        mean, spread = total / max(n, 1), np.zeros_like(total)
        for i in range(0, n, ROWS):
            spread += ((np.asarray(self.mu[i : i + ROWS], np.float64) - mean) ** 2).sum(0)
        std = np.sqrt(spread / max(n, 1))
        return np.where(std > 1e-3, std, 1.0).astype(np.float32)

    def request_errors(self) -> None:
        """Start computing the reconstruction errors if they wait to be asked for (a big
        store's: see build_atlas)."""
        if isinstance(self.errors, Task) and not self.errors.begun:
            self.errors.start()

    @property
    def errors_requested(self) -> bool:
        return not isinstance(self.errors, Task) or self.errors.begun

    @property
    def labels(self) -> pd.DataFrame:
        return self.dataset.labels

    @cached_property
    def elbo(self) -> np.ndarray:
        """Per-image negative ELBO in the checkpoint's own convention: recon + KL (β = 1)."""
        return neg_elbo(self.checkpoint, self.recon_error, self.kl)


def neg_elbo(checkpoint: Checkpoint, mse: np.ndarray | float, kl: np.ndarray | float):
    """−ELBO at β = 1 from the per-pixel MSE and the KL, with the reconstruction term in the
    checkpoint's convention (summed over pixels for "sse")."""
    return kl_neg_elbo(checkpoint.recon, checkpoint.model_config.image_size, mse, kl)


def build_atlas(
    checkpoint: Checkpoint,
    dataset,
    progress: Progress | None = None,
    defer_errors: bool = False,
) -> Atlas:
    """The dataset's latents, from the cache or a store, or encoded now (vae.latents). On a
    cache miss with defer_errors, this returns as soon as μ and log σ² are there (a map can be
    drawn), and a background task computes the reconstruction errors and files them
    (vae.latents.file_errors): on a first start the decode would otherwise hold the first map
    back by two thirds of the encoding time. Above ERRORS_AUTO_MAX frames the task waits until
    a page asks for the errors (Atlas.request_errors): one decode per frame of a million-frame
    recording is most of an hour on a laptop's cores."""
    arrays, hit = dataset_latents(checkpoint, dataset, progress, errors=not defer_errors)
    if "recon_error" not in arrays:
        task = Task("atlas-errors", lambda: file_errors(checkpoint, dataset, arrays, task.report))
        arrays["recon_error"] = task if len(arrays["mu"]) > ERRORS_AUTO_MAX else task.start()
    return Atlas(
        checkpoint,
        dataset,
        arrays["mu"],
        arrays["logvar"],
        arrays["recon_error"],
        arrays["kl"],
        cache_hit=hit,
    )


def map_path(
    atlas: Atlas,
    method: str,
    n_neighbors: int,
    min_dist: float,
    metric: str,
    seed: int | None = 0,
) -> Path:
    """Where the map of these latents with these settings is cached."""
    params = (method, n_neighbors, min_dist, metric, seed)
    return (
        cache.cache_root()
        / "maps"
        / cache.key(atlas.checkpoint.id, atlas.dataset.fingerprint(), *params)
    )


def build_projection(
    atlas: Atlas,
    method: str = "umap",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    seed: int | None = 0,
    progress: Progress | None = None,
) -> tuple[Projection, bool]:
    """The map, cached like the latents. Returns (projection, cache hit). A map from the cache
    has no reducer in memory; new points are then placed through their nearest latents."""
    path = map_path(atlas, method, n_neighbors, min_dist, metric, seed)
    fitted: list[Projection] = []

    def build():
        proj = fit_projection(
            atlas.mu, method, n_neighbors, min_dist, metric, seed, progress=progress
        )
        fitted.append(proj)
        return {"coords": proj.coords}, {"note": proj.note, "seconds": proj.seconds}

    arrays, meta, hit = cache.get_or_build(path, build)
    if len(arrays["coords"]) != len(atlas.mu):
        raise ValueError(f"{path}: cached map does not match the latents")
    if fitted:
        return fitted[0], False
    kw = {"n_neighbors": n_neighbors, "min_dist": min_dist, "metric": metric, "seed": seed}
    return Projection(
        arrays["coords"], method, kw, meta.get("note", ""), meta.get("seconds", 0.0)
    ), hit


def interpolation(
    atlas: Atlas,
    projection: Projection,
    za: np.ndarray,
    zb: np.ndarray,
    n: int,
    method: str = "slerp",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A decoded path between two latents: (latents (n, dz), frames (n, H, W), map positions
    (n, 2)). Positions go through the nearest latents, which is fast and stable for a path."""
    # Lazy: a cached atlas opens without torch (docs/architecture.md).
    from vae.inference import decode

    zs = interpolate(za, zb, n, method)
    return zs, decode(atlas.checkpoint.model, zs), projection.place_nearest(atlas.mu, zs)
