"""A data set's latents on disk, for recordings too big to hold in memory: μ and log σ² as
float16 in memory-mapped `.npy` files, the per-sample KL and reconstruction error as float32,
written chunk by chunk, so that an encode that stops resumes at the first unfinished chunk.

    <cache>/latents/<key>.store/
        meta.json         format, n, latent_dim, chunk, the checkpoint's id, the data set's
                          fingerprint, whether errors are stored
        mu.npy            (n, latent_dim) float16, np.lib.format memory map
        logvar.npy        (n, latent_dim) float16
        kl.npy            (n,) float32: KL(q(z|x) ‖ N(0, I)) of each sample, from float32 μ, log σ²
        recon_error.npy   (n,) float32: MSE of the z = μ reconstruction (when errors are stored)
        done.npy          (n_chunks,) uint8: 1 once a chunk's rows are written and flushed

float16 keeps 3 significant digits of μ (|μ| ≲ 10 for a trained VAE), half of float32's disk and
page cache; a million 512-dim frames take 1 GB for μ. A chunk is marked done only after its rows
are flushed, so a kill at any instant loses at most the chunks in flight. Under torchrun, rank r
encodes the chunks i with i % world == r into the same files (disjoint rows), and a later run with
another world size resumes the same store. The store is created whole in a temporary sibling and
renamed into place.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import atomic_path, atomic_write

FORMAT = "speckle-vae-latent-store"
FORMAT_VERSION = 1
CHUNK = 4096  # rows per unit of work and of resume: ~4 MB of float16 μ at dz = 512
META = "meta.json"
ROWS = ("mu", "logvar")  # (n, latent_dim) float16
COLUMNS = ("kl", "recon_error")  # (n,) float32


class StoreError(ValueError):
    """A store that is damaged or belongs to another model, data set or layout."""


@dataclass
class LatentStore:
    path: Path
    meta: dict

    @property
    def n(self) -> int:
        return int(self.meta["n"])

    @property
    def latent_dim(self) -> int:
        return int(self.meta["latent_dim"])

    @property
    def chunk(self) -> int:
        return int(self.meta["chunk"])

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.chunk)

    @property
    def errors(self) -> bool:
        return bool(self.meta["errors"])

    def array(self, name: str, mode: str = "r") -> np.memmap:
        """One of the store's arrays as a memory map (no copy in memory)."""
        return np.load(self.path / f"{name}.npy", mmap_mode=mode, allow_pickle=False)

    def done(self) -> np.ndarray:
        """(n_chunks,) bool: the chunks written and flushed."""
        return np.array(self.array("done"), dtype=bool)

    def rows_done(self) -> int:
        done = self.done()
        sizes = np.minimum(self.chunk, self.n - np.arange(self.n_chunks) * self.chunk)
        return int(sizes[done].sum())

    @property
    def complete(self) -> bool:
        return bool(self.done().all())

    def chunk_rows(self, i: int) -> slice:
        return slice(i * self.chunk, min((i + 1) * self.chunk, self.n))

    def write_chunk(self, i: int, arrays: dict[str, np.ndarray]) -> None:
        """Write chunk i's rows of every array, flush them, then mark the chunk done."""
        rows = self.chunk_rows(i)
        names = ROWS + (COLUMNS if self.errors else COLUMNS[:1])
        for name in names:
            target = self.array(name, "r+")
            target[rows] = arrays[name]
            target.flush()
            del target
        done = self.array("done", "r+")
        done[i] = 1
        done.flush()

    def load(self) -> dict[str, np.ndarray]:
        """Every array in memory: μ and log σ² as float32, as the in-memory cache holds them."""
        return {name: np.array(a, dtype=np.float32) for name, a in self.mapped().items()}

    def mapped(self) -> dict[str, np.ndarray]:
        """Every array read in place: μ and log σ² as read-only float16 memory maps (their pages
        are the file's, which the kernel can drop and read again), KL and the errors (when
        stored) in memory, 4 bytes a frame each. What the app holds of a big recording."""
        if not self.complete:
            raise StoreError(f"{self.path}: {self.rows_done()} of {self.n} rows written")
        out = {name: self.array(name) for name in ROWS}
        names = COLUMNS if self.errors else COLUMNS[:1]
        return out | {name: np.array(self.array(name)) for name in names}

    def add_errors(self, errors: np.ndarray) -> None:
        """Store the (n,) reconstruction errors of a store encoded without them: the column is
        written and renamed into place first, then meta.json says it is there."""
        errors = np.asarray(errors, np.float32)
        if errors.shape != (self.n,):
            raise StoreError(f"{self.path}: {errors.shape} errors for {self.n} rows")
        with atomic_path(self.path / "recon_error.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, errors, allow_pickle=False)
        self.meta = self.meta | {"errors": True}
        atomic_write(self.path / META, json.dumps(self.meta, indent=1))


def _expected(
    n: int, latent_dim: int, checkpoint: str, fingerprint: str, errors: bool, chunk: int
) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n": int(n),
        "latent_dim": int(latent_dim),
        "chunk": int(chunk),
        "checkpoint": checkpoint,
        "fingerprint": fingerprint,
        "errors": bool(errors),
    }


def open_store(path: str | Path) -> LatentStore | None:
    """The store at `path`, or None when there is none. A damaged one is a StoreError."""
    path = Path(path)
    if not (path / META).is_file():
        return None
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StoreError(f"{path / META}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreError(f"{path / META}: not a {FORMAT}")
    store = LatentStore(path, meta)
    for name in ROWS + COLUMNS[: 2 if store.errors else 1] + ("done",):
        try:
            shape = store.array(name).shape
        except (OSError, ValueError) as e:
            raise StoreError(f"{path / (name + '.npy')}: unreadable ({e})") from None
        want = {"done": (store.n_chunks,)}.get(
            name, (store.n, store.latent_dim) if name in ROWS else (store.n,)
        )
        if shape != want:
            raise StoreError(f"{path / (name + '.npy')}: shape {shape}, expected {want}")
    return store


def create_store(
    path: str | Path,
    n: int,
    latent_dim: int,
    checkpoint: str,
    fingerprint: str,
    errors: bool,
    chunk: int = CHUNK,
) -> LatentStore:
    """Open the store for this model and data set at `path`, creating it when absent; a store of
    another model, data set or layout there is replaced (its latents could never be reused)."""
    if chunk < 1 or n < 1:
        raise StoreError(f"{path}: need n ≥ 1 and chunk ≥ 1, got {n} and {chunk}")
    path = Path(path)
    want = _expected(n, latent_dim, checkpoint, fingerprint, errors, chunk)
    try:
        store = open_store(path)
    except StoreError:
        store = None
    if store is not None and (
        store.meta == want or store.meta == want | {"errors": True}  # errors added since
    ):
        return store
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ROWS:
        np.lib.format.open_memmap(tmp / f"{name}.npy", "w+", np.float16, (n, latent_dim)).flush()
    for name in COLUMNS[: 2 if errors else 1]:
        np.lib.format.open_memmap(tmp / f"{name}.npy", "w+", np.float32, (n,)).flush()
    n_chunks = -(-n // chunk)
    np.lib.format.open_memmap(tmp / "done.npy", "w+", np.uint8, (n_chunks,)).flush()
    atomic_write(tmp / META, json.dumps(want, indent=1))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return LatentStore(path, want)
