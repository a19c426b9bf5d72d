from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from explorer.latent_ops import (
    NeighbourIndex,
    interpolate,
    nearest,
    rank_dims,
    set_dims,
    tile,
    traverse,
)

RNG = np.random.default_rng(0)


def test_traversal_changes_only_the_chosen_dims() -> None:
    z0 = RNG.normal(size=32).astype(np.float32)
    scale = RNG.uniform(0.5, 2.0, 32)
    grid = traverse(z0, [3, 7], np.linspace(-3, 3, 5), "sigma", scale)
    assert grid.shape == (10, 32)
    changed = np.any(grid != z0, axis=0)
    assert set(np.flatnonzero(changed)) == {3, 7}
    # Rows 0..4 move dim 3 only, rows 5..9 dim 7 only.
    assert np.all(grid[:5, 7] == z0[7]) and np.all(grid[5:, 3] == z0[3])
    np.testing.assert_allclose(grid[:5, 3], z0[3] + np.linspace(-3, 3, 5) * scale[3], rtol=1e-6)


def test_traversal_modes() -> None:
    z0 = np.zeros(4, np.float32)
    q = traverse(z0, [1], np.array([0.05, 0.5, 0.95]), "quantile")
    np.testing.assert_allclose(q[:, 1], norm.ppf([0.05, 0.5, 0.95]), rtol=1e-5)
    a = traverse(z0, [2], np.array([-1.0, 4.0]), "absolute")
    np.testing.assert_array_equal(a[:, 2], [-1.0, 4.0])
    with pytest.raises(ValueError):
        traverse(z0, [1], np.array([0.0, 0.5]), "quantile")
    with pytest.raises(ValueError):
        traverse(z0, [1], np.array([1.0]), "sigma")


def test_set_dims_moves_several_at_once() -> None:
    z0 = np.ones(6, np.float32)
    z = set_dims(z0, {0: 2.0, 4: -1.0}, np.full(6, 0.5))
    np.testing.assert_array_equal(z, [2.0, 1, 1, 1, 0.5, 1])
    assert z0[0] == 1.0  # the start is not mutated


def test_slerp_keeps_equal_norm_and_lerp_does_not() -> None:
    a = RNG.normal(size=64)
    b = RNG.normal(size=64)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    s = interpolate(a, b, 9, "slerp")
    l = interpolate(a, b, 9, "lerp")  # noqa: E741
    norms_s, norms_l = np.linalg.norm(s, axis=1), np.linalg.norm(l, axis=1)
    np.testing.assert_allclose(norms_s, np.linalg.norm(a), rtol=1e-5)
    assert norms_l[4] < 0.9 * np.linalg.norm(a)
    np.testing.assert_allclose(s[0], a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s[-1], b, rtol=1e-5, atol=1e-6)


def test_nearest_matches_brute_force() -> None:
    data = RNG.normal(size=(500, 16)).astype(np.float32)
    q = RNG.normal(size=(3, 16)).astype(np.float32)
    idx, dist = nearest(data, q, k=4)
    full = np.linalg.norm(data[None] - q[:, None], axis=2)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :4])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :4], rtol=1e-4)
    assert nearest(data, data[7], k=1)[0][0, 0] == 7
    # A prepared index answers the same, query after query (300 queries: more than one chunk).
    index = NeighbourIndex(data)
    many = RNG.normal(size=(300, 16)).astype(np.float32)
    for _ in range(2):  # the index is not changed by a query
        idx_many, dist_many = nearest(index, many, k=4)
        full = np.linalg.norm(data[None] - many[:, None], axis=2)
        np.testing.assert_array_equal(idx_many, np.argsort(full, axis=1)[:, :4])
        np.testing.assert_allclose(dist_many, np.sort(full, axis=1)[:, :4], rtol=1e-4)


def test_rank_dims_most_informative_first() -> None:
    assert list(rank_dims(np.array([0.1, 3.0, 0.0, 3.0, 1.0]))) == [1, 3, 4, 0, 2]


def test_match_dims_recovers_a_permutation() -> None:
    from explorer.compare import match_dims

    a = RNG.normal(size=(500, 6))
    perm = np.array([3, 0, 5, 1, 4, 2])
    b = a[:, perm] * np.array([1, -1, 2, 1, -3, 1]) + RNG.normal(
        0, 0.05, (500, 6)
    )  # signs and scales differ
    m = match_dims(a, b, np.arange(6), np.arange(6))
    pairs = {da: db for da, db, _ in m["pairs"]}
    assert all(perm[pairs[d]] == d for d in range(6))
    assert np.all(np.diag(m["corr"]) > 0.95)


def test_tile_lays_frames_out_row_major() -> None:
    frames = np.arange(6 * 2 * 3, dtype=np.float32).reshape(6, 2, 3)
    grid = tile(frames, 2, 3)
    assert grid.shape == (4, 9)
    # Row 1, column 2 of the grid is frame 5.
    np.testing.assert_array_equal(grid[2:4, 6:9], frames[5])
    np.testing.assert_array_equal(grid[0:2, 3:6], frames[1])
    with pytest.raises(ValueError, match="do not fill"):
        tile(frames, 2, 2)
