"""A data set's latents under a VAE: μ, log σ², KL and the z = μ reconstruction error of every
sample, encoded once and cached on disk (`common.cache`).

The entry is keyed by the checkpoint id (sha256 of its weights) and the data set's fingerprint, so
a second start does not encode again, and a new model or changed data never reuses it. Opening a
cached entry does not import torch: encoding does, on a miss only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from common import cache
from vae.checkpoint import Checkpoint
from vae.kl import kl_terms

Progress = Callable[[float, str], None]


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


def encode_latents(
    checkpoint: Checkpoint,
    dataset,
    progress: Progress | None = None,
    workers: int = 0,
    batch_size: int = 256,
    errors: bool = True,
) -> dict[str, np.ndarray]:
    """μ, log σ² and KL of every sample, and unless errors=False its reconstruction error (MSE of
    z = μ), computed in a second pass (reconstruction_errors_of) so that no pass holds the whole
    dataset's images."""
    # Lazy: torch is not needed to open a cached entry (cached open, docs/architecture.md).
    from vae.inference import encode_dataset

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
        arrays["recon_error"] = reconstruction_errors_of(
            checkpoint, dataset, enc.mu, progress, share, workers, batch_size
        )
    return arrays


def reconstruction_errors_of(
    checkpoint: Checkpoint,
    dataset,
    mu: np.ndarray,
    progress: Progress | None = None,
    start: float = 0.0,
    workers: int = 0,
    batch_size: int = 256,
) -> np.ndarray:
    """(N,) per-sample MSE of the z = μ reconstruction; progress runs from `start` to 1."""
    # Lazy: torch, as in encode_latents.
    from vae.inference import reconstruction_errors

    def report(done: int, total: int) -> None:
        if progress:
            progress(
                start + (1 - start) * done / max(total, 1), f"reconstructing {done}/{total} images"
            )

    return reconstruction_errors(
        checkpoint.model, dataset, mu, batch_size=batch_size, workers=workers, progress=report
    )


def dataset_latents(
    checkpoint: Checkpoint, dataset, progress: Progress | None = None, errors: bool = True
) -> tuple[dict[str, np.ndarray], bool]:
    """(arrays, cache hit): "mu", "logvar", "kl" and "recon_error" from the cache, else merged
    from explorer.encode's shards, else encoded now, and stored.

    With errors=False a miss without shards encodes μ, log σ² and KL only, stores nothing and
    returns no "recon_error": the caller computes the errors (reconstruction_errors_of) and then
    stores the whole entry at latents_path (store_latents)."""
    path = latents_path(checkpoint, dataset)
    cached = cache.load(path)
    merged = None if cached is not None else merge_shards(path, len(dataset))

    def build():
        arrays = merged if merged is not None else encode_latents(checkpoint, dataset, progress)
        return arrays, {"checkpoint": checkpoint.id, "from_shards": merged is not None}

    if cached is not None:
        arrays, hit = cached[0], True
    elif not errors and merged is None:
        # Not under the cache's lock: a second process building the same entry meanwhile
        # duplicates the work, and the atomic writes keep either result whole.
        arrays, hit = encode_latents(checkpoint, dataset, progress, errors=False), False
    else:
        arrays, _, hit = cache.get_or_build(path, build)
    if len(arrays["mu"]) != len(dataset):
        raise ValueError(f"{path}: cached latents do not match the dataset size")
    return arrays, hit


def store_latents(path: Path, checkpoint: Checkpoint, arrays: dict[str, np.ndarray]) -> None:
    """Write a whole entry (μ, log σ², KL and reconstruction errors) at `path` (latents_path,
    taken when the encoding started: the cache folder may have changed since)."""
    full = {k: arrays[k] for k in ("mu", "logvar", "kl", "recon_error")}
    cache.store(path, full, {"checkpoint": checkpoint.id, "from_shards": False})
