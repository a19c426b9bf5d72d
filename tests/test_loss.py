from __future__ import annotations

import pytest
import torch

from vae.loss import active_units, reconstruction, vae_loss
from vae.model import DiagonalGaussian
from vae.schedule import BetaSchedule


def test_kl_nonnegative_and_zero_at_prior() -> None:
    post = DiagonalGaussian(torch.randn(64, 16) * 3, torch.randn(64, 16) * 2)
    assert bool((post.kl() >= 0).all())
    prior = DiagonalGaussian(torch.zeros(4, 16), torch.zeros(4, 16))
    assert float(prior.kl().abs().max()) == 0.0


def test_kl_matches_monte_carlo() -> None:
    torch.manual_seed(0)
    mu, logvar = torch.randn(1, 6), torch.randn(1, 6) * 0.5
    post = DiagonalGaussian(mu, logvar)
    z = post.mean + post.std * torch.randn(400_000, 6)
    q = torch.distributions.Normal(post.mean, post.std)
    p = torch.distributions.Normal(0.0, 1.0)
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)  # E_q[log q − log p] per dim
    torch.testing.assert_close(mc, post.kl()[0], atol=0.02, rtol=0.02)


def test_named_terms_and_conventions() -> None:
    x = torch.zeros(2, 1, 4, 4)
    x_hat = torch.full_like(x, 0.5)
    post = DiagonalGaussian(torch.ones(2, 3), torch.zeros(2, 3))  # KL = 0.5 per dim
    sse = vae_loss(x, x_hat, post, beta=2.0, convention="sse")
    mse = vae_loss(x, x_hat, post, beta=2.0, convention="mse")
    assert float(sse.recon) == pytest.approx(16 * 0.25)
    assert float(mse.recon) == pytest.approx(0.25)
    assert float(sse.kl) == pytest.approx(1.5)
    assert sse.kl_per_dim.shape == (3,)
    assert float(sse.total) == pytest.approx(4.0 + 2.0 * 1.5)
    assert float(mse.total) == pytest.approx(0.25 + 2.0 * 1.5)
    cap = vae_loss(x, x_hat, post, beta=10.0, convention="sse", capacity=2.0)
    assert float(cap.total) == pytest.approx(4.0 + 10.0 * 0.5)
    with pytest.raises(ValueError, match="convention"):
        reconstruction(x, x_hat, "l1")


def test_active_units_threshold() -> None:
    assert active_units(torch.tensor([0.0, 0.005, 0.02, 3.0])) == 2


def test_schedules() -> None:
    assert BetaSchedule("constant", beta=0.3).at(0) == (0.3, None)
    warm = BetaSchedule("warmup", beta=1.0, warmup_steps=100)
    assert warm.at(0)[0] == 0.0 and warm.at(50)[0] == pytest.approx(0.5) and warm.at(500)[0] == 1.0
    cyc = BetaSchedule("cyclical", beta=1.0, cycles=2, cycle_ratio=0.5, total_steps=200)
    assert cyc.at(0)[0] == 0.0 and cyc.at(25)[0] == pytest.approx(0.5) and cyc.at(75)[0] == 1.0
    assert cyc.at(100)[0] == 0.0  # the second cycle starts over
    cap = BetaSchedule("capacity", beta=100.0, capacity_max=20.0, capacity_steps=100)
    assert cap.at(50) == (100.0, pytest.approx(10.0)) and cap.at(1000)[1] == 20.0
    with pytest.raises(ValueError):
        BetaSchedule("sigmoid")
