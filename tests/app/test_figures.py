"""The pictures every slider move sends: the marker map and lossless PNGs."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from explorer.images import palette_png, to_png
from views.figures import MAP_PALETTE, marker_map


def test_marker_map_draws_the_samples_and_a_cross_where_asked() -> None:
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
    img = marker_map(coords, np.array([1.0, 1.0]), size=64)
    assert img.shape == (64, 64) and img.dtype == np.uint8
    ys, xs = np.nonzero(img == 2)
    # y is up, as on the Atlas: the top-right sample carries the cross.
    assert xs.mean() > 48 and ys.mean() < 16
    assert (img == 1).sum() >= 3 * 4  # the other three samples, 2×2 px each
    moved = marker_map(coords, np.array([0.0, 0.0]), size=64)
    ys, xs = np.nonzero(moved == 2)
    assert xs.mean() < 16 and ys.mean() > 48
    # The backdrop is cached per coordinate array, not shared between arrays.
    other = marker_map(coords[:2].copy(), np.array([0.0, 0.0]), size=64)
    assert (other == 1).sum() < (moved == 1).sum()


def test_pngs_are_lossless() -> None:
    indices = np.random.default_rng(0).integers(0, 3, (32, 32)).astype(np.uint8)
    with Image.open(io.BytesIO(palette_png(indices, MAP_PALETTE))) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), indices)
        assert im.getpalette()[:9] == MAP_PALETTE
    gray = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    with Image.open(io.BytesIO(to_png(gray, scale=3))) as im:
        assert im.size == (48, 48)
        px = np.asarray(im)
    np.testing.assert_array_equal(px[::3, ::3], (gray * 255).round().astype(np.uint8))
