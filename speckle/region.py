"""The array helpers every statistic shares, over the lit region of speckle frames
(`frames.lit_mask`).

Statistics of a fibre's frames are taken inside the core, never over the dark cladding around it:
there the intensity is 0, which raises the contrast from 1 to about 1.4.
"""

from __future__ import annotations

import numpy as np


def as_image(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {a.shape}")
    return a


def as_batch(imgs: np.ndarray) -> np.ndarray:
    a = np.asarray(imgs, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"expected an (n, H, W) stack, got shape {a.shape}")
    return a


def as_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """The lit-region mask as a boolean (H, W) array; all True when None."""
    if mask is None:
        return np.ones(shape[-2:], dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(shape[-2:]):
        raise ValueError(f"mask shape {m.shape} does not match images {tuple(shape[-2:])}")
    return m


def lit_pixels(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The pixels of each image inside the mask, (n, P)."""
    return a[:, as_mask(mask, a.shape)]


def lit_means(a: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image mean over the lit region, nan where it is not positive and finite (no intensity
    statistics there)."""
    v = lit_pixels(a, mask)
    m = v.mean(axis=1) if v.shape[1] else np.full(len(a), np.nan)
    return np.where(np.isfinite(m) & (m > 0), m, np.nan)


def flat_images(a: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Constant images, tested exactly: their std is not always exactly 0 in floating point."""
    v = lit_pixels(a, mask)
    return np.ptp(v, axis=1) == 0 if v.shape[1] else np.ones(len(a), dtype=bool)
