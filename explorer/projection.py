"""2-D maps of the latents: UMAP (umap-learn) or PCA, with placement of new points.

For more than `max_fit` points the reducer is fitted on a random sample and the rest are placed
with `transform`, as latent-scope does for a million points. The fitted reducer stays in memory
to place uploads; coordinates are what the disk cache keeps (no pickles), and a map restored from
disk places new points by inverse-distance weighting of their nearest latents' coordinates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from common import cache
from explorer.latent_ops import NeighbourIndex, nearest

METHODS = ("umap", "pca")
METRICS = ("euclidean", "cosine", "correlation", "manhattan")
# UMAP is fitted on every point up to here, and on a sample of this many above it. At 50,000
# latents a fit on all of them took 27 s against 91 s for a fit on 20,000 and `transform` of the
# other 30,000, and kept neighbourhoods better (trustworthiness 0.926 against 0.907,
# benchmarks.map_scale, docs/scale.md): UMAP's transform costs about 5 times a fit per point.
# The sample path stays for sets whose fit would not fit in memory.
MAX_FIT = 1_000_000
TRANSFORM_ROWS = 50_000  # points per UMAP transform call, and per progress step


@dataclass
class Projection:
    coords: np.ndarray  # (N, 2) float32
    method: str
    params: dict
    note: str = ""  # e.g. "fitted on 1000000 of 1500000 points; the rest placed with transform"
    seconds: float = 0.0
    reducer: object | None = field(default=None, repr=False)

    def transform(self, latents: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Map positions (M, 2) for new latents z (M, dz), with the fitted reducer when it is in
        memory, else through the nearest latents."""
        z = np.atleast_2d(np.asarray(z, np.float32))
        if self.reducer is not None:
            return np.asarray(self.reducer.transform(z), np.float32)
        return self.place_nearest(latents, z)

    def place_nearest(
        self, latents: np.ndarray | NeighbourIndex, z: np.ndarray, k: int = 10
    ) -> np.ndarray:
        """Inverse-distance-weighted mean of the k nearest latents' map positions: milliseconds,
        so a slider move can redraw its marker without running UMAP's optimizing transform."""
        idx, dist = nearest(latents, np.atleast_2d(np.asarray(z, np.float32)), k)
        return self.place_from_neighbours(idx, dist)

    def place_from_neighbours(self, idx: np.ndarray, dist: np.ndarray) -> np.ndarray:
        w = 1.0 / np.maximum(dist, 1e-6)
        w /= w.sum(1, keepdims=True)
        return np.einsum("mk,mkc->mc", w, self.coords[idx]).astype(np.float32)


class PCA:
    """The top two principal axes, in numpy: importing scikit-learn's PCA costs 1.4 s on 2 cores,
    which a first start would pay before its first map. Eigenvectors of the covariance (dz × dz,
    small next to N × dz), each with its largest loading made positive so the map's orientation
    is stable from run to run.

    The mean and the covariance are accumulated ROWS rows at a time (exact, not an
    approximation), so a memory-mapped float16 store of a million latents is fitted and
    projected without a float64 copy of it all (4 GB at dz = 512)."""

    ROWS = 65_536

    def __init__(self, x: np.ndarray, n_components: int = 2) -> None:
        n, dz = x.shape
        total = np.zeros(dz)
        for i in range(0, n, self.ROWS):
            total += np.asarray(x[i : i + self.ROWS], np.float64).sum(0)
        self.mean_ = total / n
        scatter = np.zeros((dz, dz))
        for i in range(0, n, self.ROWS):
            centred = np.asarray(x[i : i + self.ROWS], np.float64) - self.mean_
            scatter += centred.T @ centred
        values, vectors = np.linalg.eigh(scatter / max(n - 1, 1))
        top = vectors[:, ::-1][:, :n_components].T  # eigh sorts ascending
        signs = np.sign(top[np.arange(len(top)), np.abs(top).argmax(1)])
        self.components_ = top * np.where(signs == 0, 1.0, signs)[:, None]
        self.explained_variance_ = values[::-1][:n_components]

    def transform(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), len(self.components_)), np.float32)
        for i in range(0, len(x), self.ROWS):
            centred = np.asarray(x[i : i + self.ROWS], np.float64) - self.mean_
            out[i : i + self.ROWS] = centred @ self.components_.T
        return out


def umap_backend() -> tuple[str, type]:
    """("cuml", cuML's UMAP) on a machine where cuML is installed and finds a CUDA GPU (a fit of
    a million points in minutes instead of hours), else ("umap-learn", umap.UMAP). cuML is not
    in the requirements: GPU users install it themselves (docs/architecture.md)."""
    try:
        # Lazy: cuML is optional, and importable only where its CUDA runtime is.
        from cuml.manifold import UMAP as CumlUMAP  # noqa: N811
    except Exception:  # noqa: BLE001 (absent, or present without a usable GPU: umap-learn)
        CumlUMAP = None  # noqa: N806
    if CumlUMAP is not None:
        return "cuml", CumlUMAP
    cache.numba_cache_dir()
    # Lazy: umap-learn and numba load only where UMAP runs (docs/architecture.md: first map).
    import umap

    return "umap-learn", umap.UMAP


def fit_projection(
    latents: np.ndarray,
    method: str = "umap",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    seed: int | None = 0,
    max_fit: int = MAX_FIT,
    progress: Callable[[float, str], None] | None = None,
) -> Projection:
    """Fit a 2-D map. `seed=None` lets UMAP use every core (a fixed seed forces one thread).

    PCA is fitted on every point, streamed (a memory-mapped float16 store is never copied
    whole). UMAP is fitted on at most `max_fit` points drawn at random, and the rest are placed
    with its `transform`, TRANSFORM_ROWS at a time, each step reported to `progress`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    x = latents if isinstance(latents, np.ndarray) else np.asarray(latents, np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"need at least 3 points (N, dz) to project, got shape {x.shape}")
    report = progress or (lambda fraction, text: None)
    t0 = time.perf_counter()
    if method == "pca":
        reducer = PCA(x)
        coords = reducer.transform(x)
        return Projection(coords, method, {"seed": seed}, "", time.perf_counter() - t0, reducer)
    rng = np.random.default_rng(0 if seed is None else seed)
    fit_idx = np.sort(rng.choice(len(x), max_fit, replace=False)) if len(x) > max_fit else None
    x_fit = np.asarray(x if fit_idx is None else x[fit_idx], np.float32)
    params = {"n_neighbors": n_neighbors, "min_dist": min_dist, "metric": metric, "seed": seed}
    sampled = f"{len(x_fit)} of {len(x)}" if fit_idx is not None else f"all {len(x)}"
    report(0.0, f"fitting UMAP on {sampled} points")
    backend, umap_class = umap_backend()
    settings = {"n_neighbors": min(n_neighbors, len(x_fit) - 1), "min_dist": min_dist}
    settings |= {"metric": metric, "random_state": seed}
    if backend == "umap-learn":
        settings["n_jobs"] = 1 if seed is not None else -1
    reducer = umap_class(**settings).fit(x_fit)
    params["backend"] = backend
    if fit_idx is None:
        coords, note = reducer.embedding_, ""
    else:
        coords = np.empty((len(x), 2), np.float32)
        rest = np.setdiff1d(np.arange(len(x)), fit_idx)
        coords[fit_idx] = reducer.embedding_
        share = len(fit_idx) / len(x)  # the fit's share of the work, roughly
        for i in range(0, len(rest), TRANSFORM_ROWS):
            report(
                share + (1 - share) * i / len(rest),
                f"placing the other points with UMAP's transform: {i} of {len(rest)}",
            )
            ids = rest[i : i + TRANSFORM_ROWS]
            coords[ids] = reducer.transform(np.asarray(x[ids], np.float32))
        note = f"fitted on {len(fit_idx)} of {len(x)} points; the rest placed with transform"
    return Projection(
        np.asarray(coords, np.float32), method, params, note, time.perf_counter() - t0, reducer
    )
