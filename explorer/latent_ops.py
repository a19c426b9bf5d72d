"""Operations on latent vectors: traversal, interpolation, nearest neighbours, dim ranking."""

from __future__ import annotations

import numpy as np

TRAVERSAL_MODES = ("sigma", "quantile", "absolute")
INTERPOLATIONS = ("lerp", "slerp")


def rank_dims(kl_per_dim: np.ndarray) -> np.ndarray:
    """Dims ordered by mean KL, most informative first (ties broken by index, so stable)."""
    return np.lexsort((np.arange(len(kl_per_dim)), -np.asarray(kl_per_dim)))


def traverse(
    z0: np.ndarray,
    dims: list[int] | np.ndarray,
    values: np.ndarray,
    mode: str = "sigma",
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """Latents varying each dim in `dims` over `values`, one dim at a time: (len(dims)·S, dz),
    dim-major, so the result reshapes to a dims × steps grid.

    - "sigma": z[d] = z0[d] + v·scale[d], with `scale` a per-dim σ (e.g. the spread of μ over the
      data, or a sample's posterior σ);
    - "quantile": z[d] = Φ⁻¹(v), v in (0, 1), a quantile of the N(0, 1) prior;
    - "absolute": z[d] = v.
    All other dims keep z0's values.
    """
    if mode not in TRAVERSAL_MODES:
        raise ValueError(f"mode must be one of {TRAVERSAL_MODES}, got {mode!r}")
    z0 = np.asarray(z0, dtype=np.float32)
    values = np.asarray(values, dtype=np.float64)
    dims = np.asarray(dims, dtype=int)
    if mode == "sigma" and scale is None:
        raise ValueError("mode 'sigma' needs a per-dim scale")
    if mode == "quantile" and ((values <= 0) | (values >= 1)).any():
        raise ValueError("quantiles must lie strictly between 0 and 1")
    out = np.repeat(z0[None], len(dims) * len(values), axis=0)
    for i, d in enumerate(dims):
        rows = slice(i * len(values), (i + 1) * len(values))
        if mode == "sigma":
            out[rows, d] = z0[d] + values * float(scale[d])
        elif mode == "quantile":
            # Lazy: scipy.special (0.2 s) loads at the first quantile traversal, not on the cached open.
            from scipy.special import ndtri

            out[rows, d] = ndtri(values)
        else:
            out[rows, d] = values
    return out


def tile(frames: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows·cols, H, W) frames, row-major, as one (rows·H, cols·W) image: the dims × steps
    traversal grid."""
    n, h, w = frames.shape
    if n != rows * cols:
        raise ValueError(f"{n} frames do not fill a {rows}×{cols} grid")
    return frames.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def set_dims(z0: np.ndarray, offsets: dict[int, float], scale: np.ndarray) -> np.ndarray:
    """z0 with several dims moved at once by `offsets` in units of `scale` (the sliders)."""
    z = np.array(z0, dtype=np.float32, copy=True)
    for d, v in offsets.items():
        z[d] = z0[d] + v * float(scale[d])
    return z


def lerp(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) * a[None] + t * b[None]).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Spherical interpolation (Shoemake 1985), which keeps latents at the typical norm of the
    prior instead of cutting through its low-density centre. The norm is interpolated linearly,
    so endpoints of equal norm keep that norm along the whole path."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0 or nb == 0:
        return lerp(a, b, n)
    ua, ub = a64 / na, b64 / nb
    omega = np.arccos(np.clip(ua @ ub, -1.0, 1.0))
    t = np.linspace(0.0, 1.0, n)[:, None]
    if omega < 1e-6:  # (anti)parallel: the great circle is undefined; fall back to lerp
        return lerp(a, b, n)
    dirs = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / np.sin(omega)
    norms = (1 - t) * na + t * nb
    return (dirs * norms).astype(np.float32)


def interpolate(a: np.ndarray, b: np.ndarray, n: int, method: str = "slerp") -> np.ndarray:
    if method not in INTERPOLATIONS:
        raise ValueError(f"method must be one of {INTERPOLATIONS}, got {method!r}")
    if n < 2:
        raise ValueError(f"need at least 2 frames, got {n}")
    return slerp(a, b, n) if method == "slerp" else lerp(a, b, n)


class NeighbourIndex:
    """Latents prepared once for many nearest() queries. The float64 copy and the squared norms
    are what each query would otherwise rebuild from all N rows: a one-latent query on
    50k × 60 took 7.7 ms that way and takes 1.3 ms with them kept. Above IN_MEMORY_MAX rows
    (a big recording's memory-mapped store) nothing is copied: each query reads the rows
    BLOCK at a time, exact as well, in about a second per million rows."""

    IN_MEMORY_MAX = 100_000
    BLOCK = 16_384

    def __init__(self, latents: np.ndarray) -> None:
        # Lazy: a cached atlas opens without torch (docs/architecture.md).
        import torch

        self.latents = latents
        self.data = self.sq = None
        if len(latents) <= self.IN_MEMORY_MAX:
            # In torch, not numpy: numpy's BLAS threads and torch's OpenMP threads contend on a
            # small machine, which made the next model call after a numpy matmul 4× slower.
            # float64: the |a|² − 2a·b + |b|² expansion cancels badly in float32 for near
            # neighbours.
            self.data = torch.as_tensor(np.asarray(latents, np.float64))
            self.sq = (self.data**2).sum(1)

    def __len__(self) -> int:
        return len(self.latents)

    def _blocks(self):
        """(first row, rows as float64, their squared norms), the whole set or BLOCK at a time."""
        # Lazy: a cached atlas opens without torch (docs/architecture.md).
        import torch

        if self.data is not None:
            yield 0, self.data, self.sq
            return
        for i in range(0, len(self.latents), self.BLOCK):
            rows = torch.as_tensor(np.asarray(self.latents[i : i + self.BLOCK], np.float64))
            yield i, rows, (rows**2).sum(1)

    def query(self, z: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        # Lazy: a cached atlas opens without torch (docs/architecture.md).
        import torch

        q_all = torch.as_tensor(np.atleast_2d(np.asarray(z, np.float64)))
        k = min(k, len(self.latents))
        best_d = torch.full((len(q_all), 0), float("inf"), dtype=torch.float64)
        best_i = torch.zeros((len(q_all), 0), dtype=torch.int64)
        for start, rows, sq in self._blocks():
            ds, ids = [], []
            for i in range(0, len(q_all), 256):
                q = q_all[i : i + 256]
                d2 = (sq[None] - 2 * q @ rows.T + (q**2).sum(1)[:, None]).clamp_min(0)
                dist, idx = torch.topk(d2, min(k, len(rows)), dim=1, largest=False, sorted=True)
                ds.append(dist)
                ids.append(idx + start)
            d, i = torch.cat([best_d, torch.cat(ds)], 1), torch.cat([best_i, torch.cat(ids)], 1)
            best_d, order = torch.topk(d, k, dim=1, largest=False, sorted=True)
            best_i = torch.gather(i, 1, order)
        return best_i.numpy(), best_d.sqrt().numpy()


def nearest(
    latents: np.ndarray | NeighbourIndex, z: np.ndarray, k: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of the k nearest rows of `latents` to each z: (M, k).
    Brute force in chunks: exact, and fast enough for 10⁵ × 512. Pass a NeighbourIndex to
    query the same latents many times."""
    index = latents if isinstance(latents, NeighbourIndex) else NeighbourIndex(latents)
    return index.query(z, k)
