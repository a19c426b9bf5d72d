"""A map of many points drawn as a density image on the server: counts per pixel, log-scaled,
coloured by a label (the categories' colours blended by their counts) or by the mean of a value.

Above DENSITY_ABOVE points the Atlas page draws this image under a random sample of SAMPLE
points that carry ids (hover, click), and resolves box and lasso selections to every point's id
on the server (explorer.selection.region_ids): a WebGL scatter of a million points takes tens of
seconds in a software-rendered browser, and its box selection overflows Streamlit's widget
message (docs/scale.md)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from PIL import Image

DENSITY_ABOVE = 50_000  # more points than this: the map is a density image
SAMPLE = 5_000  # points drawn over the image, carrying their ids for hover and click
PIXELS = 720  # the image's longer side
FLOOR = 0.3  # opacity of a pixel holding one point: a lone point stays visible

# RGB in [0, 1] of a map without a colour, and of plotly's default qualitative colours (the
# order plotly gives a scatter's traces, so the legend and the WebGL map below agree).
PLAIN = (0.25, 0.35, 0.6)
PALETTE = [
    "#636efa",
    "#EF553B",
    "#00cc96",
    "#ab63fa",
    "#FFA15A",
    "#19d3f3",
    "#FF6692",
    "#B6E880",
    "#FF97FF",
    "#FECB52",
]


def hex_rgb(colour: str) -> tuple[float, float, float]:
    c = colour.lstrip("#")
    return tuple(int(c[i : i + 2], 16) / 255 for i in (0, 2, 4))


@dataclass(frozen=True)
class DensityImage:
    rgba: np.ndarray  # (H, W, 4) uint8; row 0 is the top (largest y)
    extent: tuple[float, float, float, float]  # x0, x1, y0, y1 of the image's outer edges
    counts: np.ndarray  # (H, W) points per pixel, same orientation
    categories: list[str] | None = None  # in colour order (PALETTE, cycled)
    vrange: tuple[float, float] | None = None  # the colour scale's ends for a value

    def png(self) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(self.rgba, "RGBA").save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png()).decode()


def map_extent(coords: np.ndarray, pad: float = 0.02) -> tuple[float, float, float, float]:
    """The points' bounding box widened by `pad` of its size on each side (never empty)."""
    lo, hi = coords.min(0).astype(float), coords.max(0).astype(float)
    span = np.maximum(hi - lo, 1e-9)
    lo, hi = lo - pad * span, hi + pad * span
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def grid_shape(extent: tuple[float, float, float, float], pixels: int) -> tuple[int, int]:
    """(height, width) with square pixels and the longer side `pixels` long."""
    x0, x1, y0, y1 = extent
    w, h = x1 - x0, y1 - y0
    if w >= h:
        return max(1, round(pixels * h / w)), pixels
    return pixels, max(1, round(pixels * w / h))


def pixel_of(
    coords: np.ndarray, extent: tuple[float, float, float, float], shape: tuple[int, int]
) -> np.ndarray:
    """Flat pixel index (row-major, row 0 at the top) of each point."""
    x0, x1, y0, y1 = extent
    height, width = shape
    col = ((coords[:, 0] - x0) / (x1 - x0) * width).astype(np.int64)
    row = ((y1 - coords[:, 1]) / (y1 - y0) * height).astype(np.int64)
    return np.clip(row, 0, height - 1) * width + np.clip(col, 0, width - 1)


def density_image(
    coords: np.ndarray,
    values: np.ndarray | None = None,
    pixels: int = PIXELS,
    vrange: tuple[float, float] | None = None,
) -> DensityImage:
    """The density image of (N, 2) `coords`. `values` (N,) of strings or booleans colour it by
    category: a pixel's colour is its categories' colours weighted by their counts. Numbers
    colour it by the pixel's mean value on viridis, over `vrange` (default: the values' finite
    range). Opacity grows with log(count) from FLOOR for one point to 1 for the densest
    pixel."""
    coords = np.asarray(coords, np.float64)
    extent = map_extent(coords)
    shape = grid_shape(extent, pixels)
    flat = pixel_of(coords, extent, shape)
    size = shape[0] * shape[1]
    counts = np.bincount(flat, minlength=size).astype(np.float64)
    seen = counts > 0
    rgb = np.empty((size, 3))
    categories = None
    if values is None:
        rgb[:] = PLAIN
    elif np.asarray(values).dtype.kind in "OUSb":
        # pandas' hash-based factorize: np.unique sorts a million strings in about a second.
        codes, uniques = pd.factorize(np.asarray(values).astype(str), sort=True)
        categories = [str(u) for u in uniques]
        palette = np.array([hex_rgb(PALETTE[k % len(PALETTE)]) for k in range(len(categories))])
        # Summing each point's colour per pixel costs O(N) whatever the number of categories.
        for c in range(3):
            total = np.bincount(flat, weights=palette[codes, c], minlength=size)
            rgb[:, c] = np.divide(total, counts, out=np.zeros(size), where=seen)
    else:
        v = np.asarray(values, np.float64)
        finite = np.isfinite(v)
        if vrange is None:
            vrange = (float(v[finite].min()), float(v[finite].max())) if finite.any() else (0, 1)
        n_finite = np.bincount(flat[finite], minlength=size)
        total = np.bincount(flat[finite], weights=v[finite], minlength=size)
        mean = np.divide(total, n_finite, out=np.full(size, np.nan), where=n_finite > 0)
        lo, hi = vrange
        scaled = np.clip((mean - lo) / max(hi - lo, 1e-12), 0, 1)
        lut = colormaps["viridis"](np.linspace(0, 1, 256))[:, :3]
        rgb[:] = lut[np.nan_to_num(scaled * 255, nan=0).round().astype(int)]
        rgb[seen & (n_finite == 0)] = (0.6, 0.6, 0.6)  # only NaN values here: grey
    alpha = np.zeros(size)
    top = np.log(counts.max()) if counts.max() > 1 else 0.0
    alpha[seen] = FLOOR + (1 - FLOOR) * (np.log(counts[seen]) / top if top else 1.0)
    rgba = np.concatenate([rgb, alpha[:, None]], axis=1)
    rgba = (np.clip(rgba, 0, 1) * 255).round().astype(np.uint8).reshape(*shape, 4)
    return DensityImage(rgba, extent, counts.reshape(shape), categories, vrange)


def sample_ids(n: int, k: int = SAMPLE, seed: int = 0) -> np.ndarray:
    """A fixed random sample of min(n, k) ids in increasing order: the same points on every
    rerun, so hover and click land where they did."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
