from __future__ import annotations

import numpy as np
import pytest

from explorer.drift import (
    MIN_REFERENCE,
    drift,
    noise_level,
    reference_frames,
    rolling_mean,
)


def test_reference_window_is_a_minute_or_a_share_of_the_frames() -> None:
    assert reference_frames(1_000_000, fps=1000.0) == 60_000
    assert reference_frames(10_000) == 500  # 5% without a frame rate
    assert reference_frames(40) == MIN_REFERENCE
    assert reference_frames(4) == 4
    with pytest.raises(ValueError, match="no frames"):
        reference_frames(0)


def test_a_creeping_latent_shows_as_rising_drift_above_the_reference_noise() -> None:
    rng = np.random.default_rng(0)
    n, dz = 2000, 16
    mu = rng.normal(0, 0.1, (n, dz)).astype(np.float16)  # a memory-mapped store's dtype
    mu[:, 3] += np.linspace(0, 2, n).astype(np.float16)  # a slow walk along one dim
    ref = reference_frames(n)
    d = drift(mu, ref)
    assert d.dtype == np.float32 and d.shape == (n,)
    expected = np.linalg.norm(mu.astype(np.float64) - mu[:ref].astype(np.float64).mean(0), axis=1)
    np.testing.assert_allclose(d, expected, rtol=1e-5)
    noise = noise_level(d, ref)
    assert np.median(d[-ref:]) > 3 * noise  # a walk of 2 against a frame spread of ~0.4
    smooth = rolling_mean(d, 50)
    assert np.all(np.diff(smooth[100:-100]) > -0.01)  # the trend, without the frame noise


def test_a_still_fibre_stays_at_the_reference_level() -> None:
    mu = np.random.default_rng(1).normal(0, 0.1, (3000, 8)).astype(np.float32)
    d = drift(mu, 150)
    assert np.median(d[-150:]) < 1.2 * noise_level(d, 150)
    with pytest.raises(ValueError, match="reference window"):
        drift(mu, 0)
