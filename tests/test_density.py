"""The density image of a large map and the server-side resolution of box and lasso selections
to point ids (explorer.density, explorer.selection)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from explorer.density import FLOOR, PALETTE, density_image, hex_rgb, sample_ids
from explorer.selection import inside_lasso, region_ids, selected_ids

SEED = 0


def test_counts_add_up_and_the_image_is_oriented_y_up() -> None:
    rng = np.random.default_rng(SEED)
    coords = np.concatenate([rng.normal((0, 5), 0.1, (900, 2)), rng.normal((0, -5), 0.1, (100, 2))])
    image = density_image(coords, pixels=100)
    assert image.counts.sum() == len(coords)
    h, w, _ = image.rgba.shape
    assert max(h, w) == 100 and h > w  # square pixels of a tall map
    rows = np.flatnonzero(image.counts.sum(1))
    top, bottom = image.counts[: h // 2].sum(), image.counts[h // 2 :].sum()
    assert (top, bottom) == (900, 100) and rows.min() < h // 2 < rows.max()
    alpha = image.rgba[..., 3]
    assert alpha[image.counts == 0].max() == 0
    assert alpha.max() == 255  # the densest pixel
    lone = image.counts == 1
    if lone.any():
        assert abs(alpha[lone].min() - FLOOR * 255) <= 1
    png = Image.open(io.BytesIO(image.png()))
    assert png.size == (w, h) and png.mode == "RGBA"
    assert image.data_uri().startswith("data:image/png;base64,")


def test_categories_blend_by_count() -> None:
    coords = np.array([[0.0, 0.0]] * 3 + [[10.0, 10.0]] * 2 + [[0.0, 10.0]])
    labels = np.array(["b", "b", "a", "a", "a", "b"], dtype=object)
    image = density_image(coords, labels, pixels=20)
    assert image.categories == ["a", "b"]
    a, b = np.array(hex_rgb(PALETTE[0])), np.array(hex_rgb(PALETTE[1]))
    h, w = image.counts.shape
    bottom_left = image.rgba[h - 1, 0, :3] / 255
    np.testing.assert_allclose(bottom_left, (a + 2 * b) / 3, atol=1 / 255)  # 1 a, 2 b
    np.testing.assert_allclose(image.rgba[0, w - 1, :3] / 255, a, atol=1 / 255)
    np.testing.assert_allclose(image.rgba[0, 0, :3] / 255, b, atol=1 / 255)


def test_a_value_colours_by_its_mean_per_pixel() -> None:
    coords = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    values = np.array([0.0, 1.0, 1.0, 1.0])
    image = density_image(coords, values, pixels=10)
    assert image.vrange == (0.0, 1.0) and image.categories is None
    viridis = colormaps["viridis"]
    h, w = image.counts.shape
    np.testing.assert_allclose(image.rgba[h - 1, 0, :3] / 255, viridis(0.5)[:3], atol=0.02)
    np.testing.assert_allclose(image.rgba[0, w - 1, :3] / 255, viridis(1.0)[:3], atol=0.01)


def test_the_sample_is_fixed_and_small() -> None:
    assert sample_ids(10).tolist() == list(range(10))
    a = sample_ids(1_000_000, 5000)
    assert len(a) == len(set(a.tolist())) == 5000 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, sample_ids(1_000_000, 5000))


def _event(box=(), lasso=(), points=()) -> dict:
    return {"selection": {"points": list(points), "box": list(box), "lasso": list(lasso)}}


def test_a_box_selects_every_point_inside_in_either_corner_order() -> None:
    rng = np.random.default_rng(SEED)
    coords = rng.uniform(-1, 1, (20_000, 2))
    expected = np.flatnonzero((np.abs(coords[:, 0] - 0.1) <= 0.3) & (np.abs(coords[:, 1]) <= 0.5))
    for x, y in (([-0.2, 0.4], [-0.5, 0.5]), ([0.4, -0.2], [0.5, -0.5])):
        ids = region_ids(_event(box=[{"xref": "x", "yref": "y", "x": x, "y": y}]), coords)
        assert ids == expected.tolist()
    # Edges are inside; an event without a region leaves the clicked points to selected_ids.
    grid = np.array([[0.0, 0.0], [1.0, 1.0], [1.0001, 0.5]])
    assert region_ids(_event(box=[{"x": [0, 1], "y": [0, 1]}]), grid) == [0, 1]
    click = _event(points=[{"customdata": 2}])
    assert region_ids(click, grid) is None and selected_ids(click, 3) == [2]
    assert region_ids(None, grid) is None and region_ids(_event(), grid) is None


def test_a_lasso_follows_its_outline_not_its_hull() -> None:
    """An L-shaped lasso: the points in its bounding box (and its convex hull) but outside the
    L are not selected."""
    l_x = [0, 2, 2, 1, 1, 0]
    l_y = [0, 0, 1, 1, 2, 2]
    points = np.array([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [1.5, 1.5], [1.2, 1.2], [3, 3]])
    ids = region_ids(_event(lasso=[{"x": l_x, "y": l_y}]), points)
    assert ids == [0, 1, 2]
    # Fewer than three vertices enclose nothing; a self-crossing bow tie holds both lobes.
    assert not inside_lasso(points, [0, 2], [0, 2]).any()
    bow = inside_lasso(np.array([[0.2, 0.5], [1.8, 0.5], [1.0, 0.1]]), [0, 2, 2, 0], [0, 1, 0, 1])
    assert bow.tolist() == [True, True, False]


def test_several_regions_give_their_union() -> None:
    coords = np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 10.0]])
    event = _event(
        box=[{"x": [-1, 1], "y": [-1, 1]}], lasso=[{"x": [9, 11, 11, 9], "y": [9, 9, 11, 11]}]
    )
    assert region_ids(event, coords) == [0, 2]


@pytest.mark.parametrize("n", [200_000])
def test_a_large_box_and_lasso_match_a_direct_count(n: int) -> None:
    """The same code path as a million points, on fewer: the ids equal a brute-force test, and
    the density image counts every point."""
    rng = np.random.default_rng(SEED)
    coords = rng.normal(size=(n, 2)).astype(np.float32)
    box = region_ids(_event(box=[{"x": [-1, 1.5], "y": [-0.5, 2]}]), coords)
    direct = np.flatnonzero(
        (coords[:, 0] >= -1) & (coords[:, 0] <= 1.5) & (coords[:, 1] >= -0.5) & (coords[:, 1] <= 2)
    )
    assert box == direct.tolist() and len(box) > n // 4
    t = np.linspace(0, 2 * np.pi, 300, endpoint=False)
    circle = region_ids(_event(lasso=[{"x": np.cos(t).tolist(), "y": np.sin(t).tolist()}]), coords)
    r = np.hypot(coords[:, 0], coords[:, 1])
    inside = set(np.flatnonzero(r < 0.999).tolist())
    outside = set(np.flatnonzero(r > 1.0).tolist())
    assert inside <= set(circle) and not (outside & set(circle))
    assert density_image(coords, rng.integers(0, 3, n).astype(str)).counts.sum() == n
