"""On-disk cache of arrays (latents, projections), in the platform's user cache folder.

The cache lives in `platformdirs.user_cache_path("speckle-vae")` (`~/.cache/speckle-vae` on
Linux, `~/Library/Caches/speckle-vae` on macOS, `%LOCALAPPDATA%\\speckle-vae\\Cache` on Windows)
unless SPECKLE_VAE_CACHE names another folder: never in the folder a command is run from, nor in
an installed package.

Each entry is `NAME.npz` plus `NAME.json` holding the npz's byte size and sha256: a truncated or
altered file is detected on read and rebuilt, never used. Writes are atomic (`common.atomic`) and
builders take a file lock (`filelock`, which works on POSIX and Windows alike), so two processes
building the same entry do not corrupt it and the second one reuses the first one's result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from filelock import FileLock
from platformdirs import user_cache_path

from common.atomic import atomic_path, atomic_write
from common.checkpoint_files import file_sha256

CACHE_ENV = "SPECKLE_VAE_CACHE"
APP_NAME = "speckle-vae"  # the cache's folder name under the platform's user cache folder
NUMBA_ENV = "NUMBA_CACHE_DIR"
log = logging.getLogger("common.cache")


def cache_root() -> Path:
    """The cache folder: SPECKLE_VAE_CACHE, else the platform's user cache folder for the app.
    Created when missing."""
    root = os.environ.get(CACHE_ENV)
    path = Path(root) if root else user_cache_path(APP_NAME, appauthor=False)
    path.mkdir(parents=True, exist_ok=True)
    return path


def numba_cache_dir() -> Path:
    """Where numba keeps its compiled code (umap-learn's): NUMBA_CACHE_DIR, else `numba/` in the
    cache folder. Sets NUMBA_CACHE_DIR, which numba reads when it is imported, so call it first;
    a persistent cache means only the first process pays umap-learn's ~25 s compile."""
    os.environ.setdefault(NUMBA_ENV, str(cache_root() / "numba"))
    path = Path(os.environ[NUMBA_ENV])
    path.mkdir(parents=True, exist_ok=True)
    return path


def key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


def scan_record(folder: str | Path) -> Path:
    """Where ImageFolder keeps what its last scan of `folder` checked (`frames.scan`'s record),
    so that a restarted app does not decode every unchanged image again."""
    return cache_root() / "scans" / f"{key(Path(folder).resolve())}.json"


def save(path: Path, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
    path = Path(path)
    npz = path.with_suffix(".npz")
    with atomic_path(npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    info = {"bytes": npz.stat().st_size, "sha256": file_sha256(npz), "meta": meta or {}}
    atomic_write(path.with_suffix(".json"), json.dumps(info))


def load(path: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """The cached arrays and meta, or None when absent. A damaged entry is removed and logged."""
    npz, sidecar = Path(path).with_suffix(".npz"), Path(path).with_suffix(".json")
    if not npz.exists() or not sidecar.exists():
        return None
    try:
        info = json.loads(sidecar.read_text())
        if npz.stat().st_size != info["bytes"] or file_sha256(npz) != info["sha256"]:
            raise ValueError("size or hash differs from its record")
        with np.load(npz, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        return arrays, info.get("meta", {})
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        log.warning("%s: damaged cache entry (%s); rebuilding", npz, e)
        npz.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold `path`'s lock file (`NAME.lock`) for the block, across processes."""
    lock_path = Path(path).with_suffix(".lock")
    lock = FileLock(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as e:  # unwritable cache: nothing can be shared, so nothing to lock
        log.warning("%s: cannot lock (%s); building without the cache", lock_path, e)
        yield
        return
    try:
        yield
    finally:
        lock.release()


def get_or_build(
    path: Path, build: Callable[[], tuple[dict[str, np.ndarray], dict]]
) -> tuple[dict[str, np.ndarray], dict, bool]:
    """(arrays, meta, hit). Builds under the lock when the entry is missing or damaged."""
    hit = load(path)
    if hit is not None:
        return hit[0], hit[1], True
    with locked(path):
        hit = load(path)  # another process may have built it while we waited
        if hit is not None:
            return hit[0], hit[1], True
        arrays, meta = build()
        store(path, arrays, meta)
        return arrays, meta, False


def store(path: Path, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
    """save(), but a read-only or full disk only costs the cache: the caller still serves the
    result, uncached."""
    try:
        save(path, arrays, meta)
    except OSError as e:
        log.warning("%s: cannot write cache (%s); continuing without it", path, e)
