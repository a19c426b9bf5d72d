"""The SLM's input patterns: the bundled digits and the other pattern families, their fixed
train/test split, and each sample's drawn pattern and placement.

A 16x16 amplitude pattern on the SLM: a scikit-learn handwritten digit (upsampled from 8x8) or a
pattern of another family (speckle.families), randomly shifted, rotated and scaled. The sample
`seed` alone draws the patterns and their placement, one row of uniforms per sample, so that
sample i is the same whatever n is (prefix-stable sets), and a simulation record rebuilds them
without the fibre (`simulated_patterns`). The fibre they go through is speckle.mmf's.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from speckle.families import FAMILIES, family_bases, split_pool
from speckle.simulated import MMF_TAG, PATTERN_SIZE, scaled_to, value_range

DIGIT_SPLITS = ("train", "test", "all")


def digit_pool(split: str) -> np.ndarray:
    """Indices of the bundled digits in a split. The split is fixed, so that a `test` set never
    holds handwriting that a `train` set was drawn from, whatever the seeds."""
    if split not in DIGIT_SPLITS:
        raise ValueError(f"digits must be one of {', '.join(DIGIT_SPLITS)}, got {split!r}")
    return split_pool(len(_digits()[0]), split)


def family_names(family: str) -> tuple[str, ...]:
    """The families of a `family` value: one name, or a comma list such as "digits,dots,bars"
    (a mixed set), each checked and named once."""
    names = tuple(f.strip() for f in str(family).split(","))
    bad = [f for f in names if f not in FAMILIES]
    if bad or len(set(names)) != len(names):
        raise ValueError(
            f"pattern family must be one of {', '.join(FAMILIES)} or a comma list of them, "
            f"each once, got {family!r}"
        )
    return names


def family_pool(family: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bases, each base's class, the split's base indices) of a pattern family
    (speckle.families): the bundled digits, or letters, dots or bars. A comma list pools the
    families' bases in its order, each family's own split kept, so a sample's family is drawn
    in proportion to its split's size (`base_family` names it)."""
    names = family_names(family)
    if len(names) > 1:
        parts = [family_pool(f, split) for f in names]
        offsets = np.cumsum([0] + [len(b) for b, _, _ in parts[:-1]])
        return (
            np.concatenate([b for b, _, _ in parts]),
            np.concatenate([t for _, t, _ in parts]),
            np.concatenate([p + o for (_, _, p), o in zip(parts, offsets, strict=True)]),
        )
    if family == "digits":
        base, target = _digits()
        return base, target, digit_pool(split)
    base, target = family_bases(family)
    return base, target, split_pool(len(base), split)


def base_family(family: str) -> np.ndarray:
    """The family name of each base of `family_pool(family, ...)`, in its order."""
    names = family_names(family)
    sizes = [len(family_pool(f, "all")[0]) for f in names]
    return np.repeat(np.array(names, dtype=object), sizes)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 bundled 8x8 digits as 16x16 amplitudes in [0, 1] (bilinear), and their classes."""
    images, target = _digits_8x8()
    up = ndimage.zoom(images / 16.0, (1, 2, 2), order=1)
    up = np.clip(up, 0.0, 1.0).astype(np.float32)
    up.flags.writeable = False
    target = np.asarray(target, dtype=np.int64)
    target.flags.writeable = False
    return up, target


def _digits_8x8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (images 0..16, classes), read from its data file when it is
    where load_digits keeps it: importing scikit-learn costs 1.3 s, which a fresh clone's first
    map would wait for. Otherwise through load_digits itself."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as f:
                data = np.loadtxt(f, delimiter=",", dtype=np.float64)
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    # Lazy: scikit-learn's import (1.3 s) stays off the first map (docs/architecture.md).
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def transform_patterns(
    base: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    angle: np.ndarray,
    scale: np.ndarray,
) -> np.ndarray:
    """Scale, rotate (degrees, counter-clockwise as displayed) about the centre, then shift
    (pixels; +dx right, +dy down) each (n, S, S) pattern; bilinear, zero outside. float32 in [0, 1].
    """
    base = np.asarray(base, dtype=np.float32)
    n, h, w = base.shape
    c_y, c_x = (h - 1) / 2, (w - 1) / 2
    y, x = np.indices((h, w), dtype=np.float64)
    th = np.deg2rad(np.asarray(angle, dtype=np.float64))[:, None, None]
    s = np.asarray(scale, dtype=np.float64)[:, None, None]
    yp = y[None] - c_y - np.asarray(dy, dtype=np.float64)[:, None, None]
    xp = x[None] - c_x - np.asarray(dx, dtype=np.float64)[:, None, None]
    # Inverse map of the on-screen CCW rotation (rows grow downwards): where each output pixel
    # samples the source.
    cos, sin = np.cos(th), np.sin(th)
    xs = (xp * cos - yp * sin) / s + c_x
    ys = (xp * sin + yp * cos) / s + c_y
    idx = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], xs.shape)
    out = ndimage.map_coordinates(base, [idx, ys, xs], order=1, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def placements(
    n: int, seed: int, pool: np.ndarray, shift: float, rotation: float, sc: tuple[float, float]
) -> tuple[np.ndarray, ...]:
    """Each sample's source pattern and its shift, rotation and scale."""
    # One row of uniforms per sample: sample i is the same whatever n is (prefix-stable sets).
    u = np.random.default_rng([MMF_TAG, int(seed)]).random((n, 5))
    source = pool[np.minimum((u[:, 0] * len(pool)).astype(np.int64), len(pool) - 1)]
    dx = scaled_to(u[:, 1], (-shift, shift))
    dy = scaled_to(u[:, 2], (-shift, shift))
    angle = scaled_to(u[:, 3], (-rotation, rotation))
    return source, dx, dy, angle, scaled_to(u[:, 4], sc)


def simulated_patterns(meta: dict) -> np.ndarray | None:
    """The SLM patterns (n, 16, 16) of a bundled-digit set from its simulation record alone, as
    simulate_mmf drew them (without the fibre, so in a fraction of its time); None for a set of
    the user's own patterns, which the record cannot rebuild."""
    if meta.get("kind") != "mmf" or meta.get("digits") not in DIGIT_SPLITS:
        return None
    base, _, pool = family_pool(meta.get("family", "digits"), meta["digits"])
    sc = value_range(tuple(meta["scale"]), "scale")
    placed = placements(
        int(meta["n"]),
        int(meta["seed"]),
        pool,
        float(meta["shift"]),
        float(meta["rotation"]),
        sc,
    )
    source, dx, dy, angle, factor = placed
    return transform_patterns(base[source], dx, dy, angle, factor)


def to_pattern(pixels: np.ndarray, full_scale: float = 1.0, size: int = PATTERN_SIZE) -> np.ndarray:
    """An image as an SLM amplitude pattern: (size, size) float32 in [0, 1], area-resampled
    (centre-cropped to a square first), scaled by the file's full scale as the dataset's own
    patterns are."""
    a = np.asarray(pixels, np.float32) / float(full_scale)
    h, w = a.shape
    s = min(h, w)
    a = a[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    if s != size:
        method = Image.Resampling.BOX if s > size else Image.Resampling.BILINEAR
        a = np.asarray(
            Image.fromarray(np.ascontiguousarray(a), mode="F").resize((size, size), method)
        )
    return np.clip(a, 0.0, 1.0).astype(np.float32)
