"""2-D maps of the latents: UMAP (umap-learn) or PCA, with placement of new points.

For more than `max_fit` points the reducer is fitted on a random sample and the rest are placed
with `transform`, as latent-scope does for a million points. The fitted reducer stays in memory
to place uploads; coordinates are what the disk cache keeps (no pickles), and a map restored from
disk places new points by inverse-distance weighting of their nearest latents' coordinates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from common import cache
from explorer.latent_ops import NeighbourIndex, nearest

METHODS = ("umap", "pca")
METRICS = ("euclidean", "cosine", "correlation", "manhattan")
MAX_FIT = 20_000


@dataclass
class Projection:
    coords: np.ndarray  # (N, 2) float32
    method: str
    params: dict
    note: str = ""  # e.g. "fitted on 20000 of 50000 points; the rest placed with transform"
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
    is stable from run to run."""

    def __init__(self, x: np.ndarray, n_components: int = 2) -> None:
        x = np.asarray(x, np.float64)
        self.mean_ = x.mean(0)
        centred = x - self.mean_
        values, vectors = np.linalg.eigh(centred.T @ centred / max(len(x) - 1, 1))
        top = vectors[:, ::-1][:, :n_components].T  # eigh sorts ascending
        signs = np.sign(top[np.arange(len(top)), np.abs(top).argmax(1)])
        self.components_ = top * np.where(signs == 0, 1.0, signs)[:, None]
        self.explained_variance_ = values[::-1][:n_components]

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean_) @ self.components_.T).astype(np.float32)


def fit_projection(
    latents: np.ndarray,
    method: str = "umap",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    seed: int | None = 0,
    max_fit: int = MAX_FIT,
) -> Projection:
    """Fit a 2-D map. `seed=None` lets UMAP use every core (a fixed seed forces one thread)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    x = np.asarray(latents, np.float32)
    if len(x) < 3:
        raise ValueError(f"need at least 3 points to project, got {len(x)}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(0 if seed is None else seed)
    fit_idx = np.sort(rng.choice(len(x), max_fit, replace=False)) if len(x) > max_fit else None
    x_fit = x if fit_idx is None else x[fit_idx]
    params = {"n_neighbors": n_neighbors, "min_dist": min_dist, "metric": metric, "seed": seed}
    if method == "pca":
        reducer = PCA(x_fit)
        params = {"seed": seed}
    else:
        cache.numba_cache_dir()
        # Lazy: umap-learn and numba load only where UMAP runs (docs/architecture.md: first map).
        import umap

        reducer = umap.UMAP(
            n_neighbors=min(n_neighbors, len(x_fit) - 1),
            min_dist=min_dist,
            metric=metric,
            random_state=seed,
            n_jobs=1 if seed is not None else -1,
        ).fit(x_fit)
    if fit_idx is None:
        coords = reducer.embedding_ if method == "umap" else reducer.transform(x)
        note = ""
    else:
        coords = np.empty((len(x), 2), np.float32)
        rest = np.setdiff1d(np.arange(len(x)), fit_idx)
        coords[fit_idx] = reducer.embedding_ if method == "umap" else reducer.transform(x_fit)
        for i in range(0, len(rest), 50_000):
            coords[rest[i : i + 50_000]] = reducer.transform(x[rest[i : i + 50_000]])
        note = f"fitted on {len(fit_idx)} of {len(x)} points; the rest placed with transform"
    return Projection(
        np.asarray(coords, np.float32), method, params, note, time.perf_counter() - t0, reducer
    )
