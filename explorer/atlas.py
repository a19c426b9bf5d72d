"""The model bundle: a checkpoint plus a dataset, encoded once and cached on disk.

The latents are keyed by the checkpoint id (sha256 of its weights) and the dataset fingerprint,
so a second start does not encode again, and a new model or changed data never reuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from explorer import cache
from explorer.latent_ops import NeighbourIndex, rank_dims
from explorer.projection import Projection, fit_projection
from explorer.tasks import Task
from vae.checkpoint import Checkpoint
from vae.kl import ACTIVE_NATS, active_units, kl_per_dim, kl_terms
from vae.kl import neg_elbo as kl_neg_elbo

Progress = Callable[[float, str], None]


@dataclass
class Atlas:
    checkpoint: Checkpoint
    dataset: object  # vae.data.ImageFolder (or ArrayDataset): images, labels, fingerprint()
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
        """The reconstruction errors; waits for them while they are still being computed."""
        if not isinstance(self.errors, Task):
            return self.errors
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
        return np.ascontiguousarray(self.mu[:, self.active])

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
        posterior). A collapsed dim, whose μ does not vary, gets the prior's σ = 1."""
        std = self.mu.std(0)
        return np.where(std > 1e-3, std, 1.0).astype(np.float32)

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


def encode_arrays(
    checkpoint: Checkpoint,
    dataset,
    progress: Progress | None = None,
    workers: int = 0,
    batch_size: int = 256,
    errors: bool = True,
) -> dict[str, np.ndarray]:
    """μ, log σ² and KL of every sample, and unless errors=False its reconstruction error (MSE of
    z = μ), computed in a second pass (reconstruction_errors) so that no pass holds the whole
    dataset's images."""
    from vae.inference import encode_dataset  # torch: not needed to open a cached atlas

    share = 0.4 if errors else 1.0  # the decode of the second pass costs more than the encode

    def report(done: int, total: int) -> None:
        if progress:
            progress(share * done / max(total, 1), f"encoding {done}/{total} images")

    enc = encode_dataset(
        checkpoint.model, dataset, batch_size=batch_size, workers=workers, progress=report
    )
    kl = kl_terms(enc.mu, enc.logvar).sum(1)
    arrays = {"mu": enc.mu, "logvar": enc.logvar, "kl": kl.astype(np.float32)}
    if errors:
        arrays["recon_error"] = errors_of(
            checkpoint, dataset, enc.mu, progress, share, workers, batch_size
        )
    return arrays


def errors_of(
    checkpoint: Checkpoint,
    dataset,
    mu: np.ndarray,
    progress: Progress | None = None,
    start: float = 0.0,
    workers: int = 0,
    batch_size: int = 256,
) -> np.ndarray:
    from vae.inference import reconstruction_errors

    def report(done: int, total: int) -> None:
        if progress:
            progress(
                start + (1 - start) * done / max(total, 1), f"reconstructing {done}/{total} images"
            )

    return reconstruction_errors(
        checkpoint.model, dataset, mu, batch_size=batch_size, workers=workers, progress=report
    )


def latents_path(checkpoint: Checkpoint, dataset) -> Path:
    return cache.cache_root() / "latents" / cache.key(checkpoint.id, dataset.fingerprint())


def shard_path(path: Path, rank: int, world: int) -> Path:
    return path.with_name(f"{path.name}_shard-{rank}-of-{world}")  # no dot: cache adds .npz


def merge_shards(path: Path, n: int) -> dict[str, np.ndarray] | None:
    """Merge the per-rank shards `python -m explorer.encode` wrote under torchrun, if all of
    them are present and together cover every sample exactly once."""
    shards = sorted(path.parent.glob(f"{path.name}_shard-*-of-*.npz"))
    if not shards:
        return None
    world = int(shards[0].stem.rsplit("-of-", 1)[1])
    parts = [cache.load(shard_path(path, r, world)) for r in range(world)]
    if any(p is None for p in parts):
        return None
    index = np.concatenate([p[0]["index"] for p in parts])
    if len(index) != n or not np.array_equal(np.sort(index), np.arange(n)):
        return None
    order = np.argsort(index)
    keys = [k for k in parts[0][0] if k != "index"]
    return {k: np.concatenate([p[0][k] for p in parts])[order] for k in keys}


def build_atlas(
    checkpoint: Checkpoint,
    dataset,
    progress: Progress | None = None,
    defer_errors: bool = False,
    background_nice: int = 0,
) -> Atlas:
    """The dataset's latents, from the cache or encoded now. On a cache miss with defer_errors,
    this returns as soon as μ and log σ² are there (a map can be drawn), and a background task
    computes the reconstruction errors and then writes the cache entry: on a first start the
    decode would otherwise hold the first map back by two thirds of the encoding time."""
    path = latents_path(checkpoint, dataset)

    cached = cache.load(path)
    merged = None if cached is not None else merge_shards(path, len(dataset))

    def build():
        arrays = merged if merged is not None else encode_arrays(checkpoint, dataset, progress)
        return arrays, {"checkpoint": checkpoint.id, "from_shards": merged is not None}

    if cached is not None:
        arrays, hit = cached[0], True
    elif defer_errors and merged is None:
        # Not under the cache's lock: a second process building the same entry meanwhile
        # duplicates the work, and the atomic writes keep either result whole.
        arrays = encode_arrays(checkpoint, dataset, progress, errors=False)
        # Deferred (Task.defer) until the caller's page is drawn, unless it is asked for sooner.
        arrays["recon_error"] = Task(
            "atlas-errors",
            lambda: _finish(checkpoint, dataset, path, arrays),
            nice=background_nice,
            defer=True,
        ).start()
        hit = False
    else:
        arrays, _, hit = cache.get_or_build(path, build)
    if len(arrays["mu"]) != len(dataset):
        raise ValueError(f"{path}: cached latents do not match the dataset size")
    return Atlas(
        checkpoint,
        dataset,
        arrays["mu"],
        arrays["logvar"],
        arrays["recon_error"],
        arrays["kl"],
        cache_hit=hit,
    )


def _finish(checkpoint: Checkpoint, dataset, path: Path, arrays: dict) -> np.ndarray:
    err = errors_of(checkpoint, dataset, arrays["mu"])
    full = {k: arrays[k] for k in ("mu", "logvar", "kl")} | {"recon_error": err}
    cache.store(path, full, {"checkpoint": checkpoint.id, "from_shards": False})
    return err


def build_projection(
    atlas: Atlas,
    method: str = "umap",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    seed: int | None = 0,
) -> tuple[Projection, bool]:
    """The map, cached like the latents. Returns (projection, cache hit). A map from the cache
    has no reducer in memory; new points are then placed through their nearest latents."""
    params = (method, n_neighbors, min_dist, metric, seed)
    path = (
        cache.cache_root()
        / "maps"
        / cache.key(atlas.checkpoint.id, atlas.dataset.fingerprint(), *params)
    )
    fitted: list[Projection] = []

    def build():
        proj = fit_projection(atlas.mu, method, n_neighbors, min_dist, metric, seed)
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
    from explorer.latent_ops import interpolate
    from vae.inference import decode

    zs = interpolate(za, zb, n, method)
    return zs, decode(atlas.checkpoint.model, zs), projection.place_nearest(atlas.mu, zs)
