"""The ensemble scores of diffusion.ensemble against known answers: the energy score of samples
from N(0, 1) is the closed-form CRPS, the true distribution scores best among biased, collapsed
and over-dispersed samplers, a single sample scores its mean distance, and coverage is at least
the mean sample's PCC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sst

from diffusion.ensemble import coverage, energy_score, pcc_grid, unit_frames
from vae.metrics import pcc_batch

SEED = 0


def test_energy_score_of_normal_samples_is_the_closed_form_crps() -> None:
    # In one dimension the energy score is the CRPS; for N(0, 1) against y (Gneiting and
    # Raftery 2007, eq. 5): y (2Φ(y) − 1) + 2φ(y) − 1/√π.
    rng = np.random.default_rng(SEED)
    for y in (0.0, 0.7, 2.5):
        x = rng.standard_normal((1, 3000, 1))
        want = y * (2 * sst.norm.cdf(y) - 1) + 2 * sst.norm.pdf(y) - 1 / math.sqrt(math.pi)
        got = energy_score(x, np.full((1, 1, 1), y))[0]
        assert got == pytest.approx(want, abs=0.03)


def test_the_true_distribution_scores_best() -> None:
    rng = np.random.default_rng(SEED)
    n, k, s, d = 300, 8, 8, 20
    centre = rng.standard_normal((n, 1, d)) * 3
    truths = centre + rng.standard_normal((n, s, d))
    perfect = centre + rng.standard_normal((n, k, d))
    scores = {
        "perfect": energy_score(perfect, truths).mean(),
        "biased": energy_score(perfect + 0.5, truths).mean(),
        "collapsed to the mean": energy_score(centre, truths).mean(),
        "too narrow": energy_score(centre + 0.3 * (perfect - centre), truths).mean(),
        "too wide": energy_score(centre + 2.0 * (perfect - centre), truths).mean(),
    }
    for name, value in scores.items():
        if name != "perfect":
            assert scores["perfect"] < value - 0.05, (name, scores)


def test_one_sample_scores_its_mean_distance() -> None:
    truths = np.array([[[1.0, 0.0], [0.0, 3.0]]])  # distances 1 and 3 from the origin
    assert energy_score(np.zeros((1, 1, 2)), truths)[0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="must agree"):
        energy_score(np.zeros((2, 1, 2)), truths)


def test_unit_frames_give_pcc_and_coverage_is_at_least_the_mean_sample() -> None:
    rng = np.random.default_rng(SEED)
    mask = np.zeros((8, 8), bool)
    mask[1:7, 2:8] = True
    truths = rng.random((5, 3, 8, 8))
    samples = truths[:, :1] + 0.5 * rng.random((5, 4, 8, 8))
    u, v = unit_frames(samples, mask), unit_frames(truths, mask)
    grid = pcc_grid(u, v)
    want = pcc_batch(samples[:, 2], truths[:, 1], mask)
    np.testing.assert_allclose(grid[:, 2, 1], want, atol=1e-12)
    cov = coverage(grid)
    assert (cov >= grid.mean((1, 2)) - 1e-12).all() and (cov < 1).all()
    # A sample equal to every true state covers it perfectly.
    exact = coverage(pcc_grid(np.concatenate([u, v], axis=1), v))
    np.testing.assert_allclose(exact, 1.0, atol=1e-12)
    assert not unit_frames(np.ones((1, 8, 8)), mask).any()  # a flat frame: zeros, not nan
