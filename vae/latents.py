"""A data set's latents under a VAE: μ, log σ², KL and the z = μ reconstruction error of every
sample, encoded once and cached on disk (`common.cache`).

The entry is keyed by the checkpoint id (sha256 of its weights) and the data set's fingerprint, so
a second start does not encode again, and a new model or changed data never reuses it. Opening a
cached entry does not import torch: encoding does, on a miss only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common import cache
from vae.checkpoint import Checkpoint
from vae.kl import kl_terms
from vae.latent_store import LatentStore, open_store

Progress = Callable[[float, str], None]


def latents_path(checkpoint: Checkpoint, dataset) -> Path:
    return cache.cache_root() / "latents" / cache.key(checkpoint.id, dataset.fingerprint())


def store_path(checkpoint: Checkpoint, dataset) -> Path:
    """Where `python -m explorer.encode` streams the data set's latents (vae.latent_store)."""
    path = latents_path(checkpoint, dataset)
    return path.with_name(path.name + ".store")


def complete_store(checkpoint: Checkpoint, dataset) -> LatentStore | None:
    """The complete store that explorer.encode wrote for this model and data set, if any."""
    store = open_store(store_path(checkpoint, dataset))
    if store is None or not store.complete:
        return None
    if (store.meta["checkpoint"], store.meta["fingerprint"]) != (
        checkpoint.id,
        dataset.fingerprint(),
    ):
        return None
    return store


def from_store(checkpoint: Checkpoint, dataset) -> dict[str, np.ndarray] | None:
    """The arrays of a complete store for this model and data set, read in place
    (LatentStore.mapped: μ and log σ² stay float16 memory maps)."""
    store = complete_store(checkpoint, dataset)
    return None if store is None else store.mapped()


def encode_to_store(
    checkpoint: Checkpoint,
    dataset,
    store: LatentStore,
    rank: int = 0,
    world: int = 1,
    batch_size: int = 256,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Encode this rank's unfinished chunks (i % world == rank) into `store`, one batch at a
    time, writing each chunk when its last batch is in; return the frames encoded. `progress`
    gets the frames of each batch."""
    # Lazy: torch, as in encode_latents.
    from vae.inference import encode_batches

    done = store.done()
    todo = [i for i in range(store.n_chunks) if i % world == rank and not done[i]]
    batches = []
    for i in todo:
        rows = store.chunk_rows(i)
        ids = list(range(rows.start, rows.stop))
        batches += [ids[j : j + batch_size] for j in range(0, len(ids), batch_size)]
    names = ("mu", "logvar", "recon_error") if store.errors else ("mu", "logvar")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
    encoded = 0
    stream = encode_batches(checkpoint.model, dataset, batches, store.errors, workers)
    for ids, out in stream:
        for k in names:
            parts[k].append(out[k])
        encoded += len(ids)
        if progress:
            progress(len(ids))
        chunk = ids[-1] // store.chunk
        if ids[-1] + 1 == store.chunk_rows(chunk).stop:
            arrays = {k: np.concatenate(v) for k, v in parts.items()}
            arrays["kl"] = kl_terms(arrays["mu"], arrays["logvar"]).sum(1).astype(np.float32)
            store.write_chunk(chunk, arrays)
            parts = {k: [] for k in names}
    return encoded


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

    t0 = time.perf_counter()

    def report(done: int, total: int) -> None:
        if progress:
            rate = done / max(time.perf_counter() - t0, 1e-9)
            progress(
                share * done / max(total, 1),
                f"encoding {done}/{total} images, {rate:.0f} frames/s, "
                f"about {(total - done) / rate:.0f} s left",
            )

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
    """(arrays, cache hit): "mu", "logvar", "kl" and "recon_error" from the cache, else read in
    place from a complete store that explorer.encode wrote (its errors computed now and added to
    the store if it has none), else encoded now, and stored.

    With errors=False a miss encodes (or reads) μ, log σ² and KL only, stores nothing and
    returns no "recon_error": the caller computes them later (file_errors)."""
    path = latents_path(checkpoint, dataset)
    cached = cache.load(path)
    store = None if cached is not None else complete_store(checkpoint, dataset)
    if cached is not None:
        arrays, hit = cached[0], True
    elif store is not None:
        arrays, hit = store.mapped(), True
        if errors and "recon_error" not in arrays:
            arrays = arrays | {"recon_error": file_errors(checkpoint, dataset, arrays, progress)}
    elif not errors:
        # Not under the cache's lock: a second process building the same entry meanwhile
        # duplicates the work, and the atomic writes keep either result whole.
        arrays, hit = encode_latents(checkpoint, dataset, progress, errors=False), False
    else:

        def build():
            meta = {"checkpoint": checkpoint.id, "from_store": False}
            return encode_latents(checkpoint, dataset, progress), meta

        arrays, _, hit = cache.get_or_build(path, build)
    if len(arrays["mu"]) != len(dataset):
        raise ValueError(f"{path}: cached latents do not match the dataset size")
    return arrays, hit


def file_errors(
    checkpoint: Checkpoint,
    dataset,
    arrays: dict[str, np.ndarray],
    progress: Progress | None = None,
) -> np.ndarray:
    """The reconstruction errors of latents that have none yet, computed now and filed where
    the latents came from: added to the data set's store (no second copy of its μ), else with
    them in one cache entry (store_latents)."""
    path = latents_path(checkpoint, dataset)
    err = reconstruction_errors_of(checkpoint, dataset, arrays["mu"], progress)
    store = complete_store(checkpoint, dataset)
    if store is not None and len(arrays["mu"]) == store.n:
        store.add_errors(err)
    else:
        store_latents(path, checkpoint, arrays | {"recon_error": err})
    return err


def store_latents(path: Path, checkpoint: Checkpoint, arrays: dict[str, np.ndarray]) -> None:
    """Write a whole entry (μ, log σ², KL and reconstruction errors) at `path` (latents_path,
    taken when the encoding started: the cache folder may have changed since)."""
    full = {k: arrays[k] for k in ("mu", "logvar", "kl", "recon_error")}
    cache.store(path, full, {"checkpoint": checkpoint.id, "from_store": False})
