"""UMAP maps fitted in a child process at a lower CPU priority, for the app. Kept because it pays:
key press → image while a cold fit runs, p50 92 → 81 ms for one session, 204 → 142 ms for four
(benchmarks/concurrency.py, docs/architecture.md).

A UMAP fit holds Python's GIL for most of its run: numba compiles in Python, and the compiled
layout code does not release the GIL. Measured on 2 cores with a busy Python loop on another
thread (its speed against the same loop alone): 23% during a cold fit of 2000 × 512 latents
(numba's first compile), 14% during a warm one, 60% during `import umap`. A nice value on the
fitting thread cannot help the page's thread, which waits for the GIL, not for a core; a child
process at nice +10 leaves the server's GIL alone. Its start (an interpreter, numpy, umap) runs
at that priority too, while the page shows the PCA map.

The child is `python -m explorer.map_process`, not multiprocessing's "spawn": under Streamlit
the script (app.py) is the __main__ module, which spawn would run again in the child. The map
is fitted and cached by explorer.atlas.build_projection in the child; the parent gets the
coordinates back, and places new points through their nearest latents, as for a map read
from the cache (the fitted reducer stays in the child).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import cache
from common.atomic import atomic_write
from common.cli import summary
from explorer.atlas import build_projection as fit_projection
from explorer.atlas import map_path
from explorer.projection import Projection

REPO = Path(__file__).resolve().parents[1]

# Benchmark switch (benchmarks/concurrency.py): "map_process" in it fits in the calling thread
# at the same nice value, the plain variant the child process is measured against.
PLAIN = "map_process" in os.environ.get("SPECKLE_VAE_BENCH_PLAIN", "").split(",")

_children: set[subprocess.Popen] = set()
_children_lock = threading.Lock()


@atexit.register
def _stop_children() -> None:
    """A fit still running when the server exits is of no use to anyone."""
    with _children_lock:
        for child in _children:
            with contextlib.suppress(OSError):
                child.kill()


def build_projection(
    atlas,
    method: str = "umap",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    nice: int = 10,
) -> tuple[Projection, bool]:
    """explorer.atlas.build_projection(atlas, ...) run in a child process at `nice` above this
    one; the same (projection, cache hit), without the fitted reducer. A cached map is read
    here, without a child."""
    params = {"n_neighbors": n_neighbors, "min_dist": min_dist, "metric": metric, "seed": 0}
    # The key build_projection files the map under (its default seed, 0).
    path = map_path(atlas, method, n_neighbors, min_dist, metric)
    hit = cache.load(path)
    if hit is not None and len(hit[0]["coords"]) == len(atlas.mu):
        arrays, meta = hit
        return Projection(
            arrays["coords"], method, params, meta.get("note", ""), meta.get("seconds", 0.0)
        ), True
    if PLAIN:
        lower_priority(nice)
        proj, hit = fit_projection(atlas, method, n_neighbors, min_dist, metric)
        return Projection(proj.coords, method, params, proj.note, proj.seconds), hit
    with tempfile.TemporaryDirectory(prefix="speckle-map-") as tmp:
        latents, out = latents_file(atlas.mu, Path(tmp)), Path(tmp) / "map.npz"
        args = [
            sys.executable,
            "-m",
            "explorer.map_process",
            "--latents",
            str(latents),
            "--out",
            str(out),
            "--checkpoint-id",
            atlas.checkpoint.id,
            "--dataset-fingerprint",
            atlas.dataset.fingerprint(),
            "--method",
            method,
            "--n-neighbors",
            str(n_neighbors),
            "--min-dist",
            repr(float(min_dist)),
            "--metric",
            metric,
            "--nice",
            str(nice),
            "--progress",
            str(progress_path(path)),
        ]
        child = subprocess.Popen(
            args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        with _children_lock:
            _children.add(child)
        try:
            _, err = child.communicate()
        finally:
            with _children_lock:
                _children.discard(child)
            progress_path(path).unlink(missing_ok=True)
        if child.returncode != 0:
            last = (err or "").strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
            raise RuntimeError(f"the {method} fit failed: {last[0]}")
        with np.load(out) as f:
            coords, meta = f["coords"], json.loads(str(f["meta"]))
    return Projection(coords, method, params, meta["note"], meta["seconds"]), meta["hit"]


def latents_file(mu: np.ndarray, tmp: Path) -> Path:
    """The .npy file the child reads the latents from: a store's own file when they are read in
    place from one whole (vae.latent_store; no copy on disk or in this process), else a float32
    copy saved in `tmp`."""
    name = mu.filename if isinstance(mu, np.memmap) else None
    if name and np.load(name, mmap_mode="r").shape == mu.shape:
        return Path(name)
    path = tmp / "mu.npy"
    np.save(path, np.asarray(mu, np.float32))
    return path


# The child's stand-in for an Atlas: what build_projection reads of one (the cache key's ids and
# the latents), without the checkpoint and the dataset.
@dataclass
class _Checkpoint:
    id: str


@dataclass
class _Dataset:
    fp: str

    def fingerprint(self) -> str:
        return self.fp


@dataclass
class _Latents:
    checkpoint: _Checkpoint
    dataset: _Dataset
    mu: np.ndarray


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m explorer.map_process", description=summary(__doc__))
    p.add_argument("--latents", required=True, help=".npy file of the latents (N, dz)")
    p.add_argument("--out", required=True, help=".npz file to write the map to")
    p.add_argument("--checkpoint-id", required=True, help="the model's id, for the cache key")
    p.add_argument(
        "--dataset-fingerprint", required=True, help="the data set's fingerprint, for the cache key"
    )
    p.add_argument("--method", default="umap", help="umap or pca")
    p.add_argument("--n-neighbors", type=int, default=15, help="UMAP's n_neighbors")
    p.add_argument("--min-dist", type=float, default=0.1, help="UMAP's min_dist")
    p.add_argument("--metric", default="euclidean", help="UMAP's distance metric")
    p.add_argument("--nice", type=int, default=10, help="added to this process's nice value")
    p.add_argument("--progress", help="JSON file to keep the fit's progress in, for the page")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.nice > 0:
        with contextlib.suppress(OSError):  # a sandbox that forbids it: normal priority
            os.nice(args.nice)

    latents = _Latents(
        _Checkpoint(args.checkpoint_id),
        _Dataset(args.dataset_fingerprint),
        np.load(args.latents, mmap_mode="r", allow_pickle=False),
    )

    def report(fraction: float, text: str) -> None:
        if args.progress:
            atomic_write(args.progress, json.dumps({"fraction": fraction, "text": text}))

    proj, hit = fit_projection(
        latents, args.method, args.n_neighbors, args.min_dist, args.metric, progress=report
    )
    meta = {"note": proj.note, "seconds": proj.seconds, "hit": hit}
    np.savez(args.out, coords=proj.coords, meta=json.dumps(meta))
    return 0


def progress_path(path: Path) -> Path:
    return path.with_name(path.name + ".progress.json")


def fit_progress(
    atlas, method: str, n_neighbors: int, min_dist: float, metric: str
) -> tuple[float, str] | None:
    """(fraction, text) of the child's fit of this map, while it runs; None otherwise."""
    path = progress_path(map_path(atlas, method, n_neighbors, min_dist, metric))
    try:
        state = json.loads(path.read_text())
        return float(state["fraction"]), str(state["text"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by `nice` (the plain variant's fit in a thread). On
    Linux a thread is a task of its own, so this leaves the rest of the process alone; elsewhere
    the same call would renice the whole process, so it does nothing there."""
    if sys.platform != "linux" or nice <= 0:
        return
    tid = threading.get_native_id()
    # A sandbox that forbids it: the work still runs, at normal priority.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


if __name__ == "__main__":
    raise SystemExit(main())
