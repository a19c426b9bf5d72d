from __future__ import annotations

import numpy as np
import pytest
from sklearn.manifold import trustworthiness as sk_trustworthiness

from explorer.map_quality import trustworthiness


def test_with_every_point_as_a_query_it_is_scikit_learns_figure() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12))
    y = x[:, :2] + rng.normal(scale=0.3, size=(400, 2))  # a lossy map
    ours, err = trustworthiness(x, y, k=10, queries=400)
    assert err == 0.0
    assert ours == pytest.approx(sk_trustworthiness(x, y, n_neighbors=10), abs=1e-12)


def test_a_sample_of_queries_estimates_it_within_its_interval() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 8))
    y = x[:, :2] + rng.normal(scale=0.5, size=(3000, 2))
    exact, _ = trustworthiness(x, y, k=15, queries=3000)
    estimate, err = trustworthiness(x, y, k=15, queries=400, seed=3)
    assert 0 < err < 0.02
    assert abs(estimate - exact) < 4 * err
    # A map that ignores the latents scores chance, 0.5, well below one that follows them.
    noise, noise_err = trustworthiness(x, rng.normal(size=(3000, 2)), k=15, queries=400)
    assert abs(noise - 0.5) < 4 * noise_err + 0.01 and noise < estimate - 0.1


def test_bad_arguments_are_refused() -> None:
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match="9 map points for 10 latents"):
        trustworthiness(x, np.zeros((9, 2)))
    with pytest.raises(ValueError, match="k must be"):
        trustworthiness(x, np.zeros((10, 2)), k=5)
