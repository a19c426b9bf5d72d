from __future__ import annotations

import pytest
import torch

from vae.model import PRESETS, VAE, VAEConfig


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_preset_shapes(name: str) -> None:
    config = PRESETS[name]
    model = VAE(config).eval()
    x = torch.rand(2, 1, config.image_size, config.image_size)
    with torch.no_grad():
        x_hat, post = model(x)
    assert x_hat.shape == x.shape
    assert post.mean.shape == post.logvar.shape == (2, 512)
    assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0


def test_paper_preset_flattens_to_18432() -> None:
    config = PRESETS["paper"]
    assert (config.image_size, config.channels) == (96, (64, 128, 256, 512))
    assert config.flat_features == 18432
    assert VAE(config).encoder.to_mean.in_features == 18432


@pytest.mark.parametrize("size", [16, 32, 48, 80])
def test_any_size_divisible_by_16(size: int) -> None:
    config = VAEConfig(image_size=size, channels=(4, 8, 8, 8), latent_dim=8, norm_groups=2)
    x = torch.rand(1, 1, size, size)
    assert VAE(config)(x)[0].shape == x.shape


def test_wrong_input_shape_is_a_clear_error(tiny_config: VAEConfig) -> None:
    model = VAE(tiny_config)
    with pytest.raises(
        ValueError, match=r"expected input of shape \(B, 1, 16, 16\), got \(1, 1, 32, 32\)"
    ):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="expected input"):
        model(torch.rand(1, 16, 16))


@pytest.mark.parametrize(
    "bad",
    [
        {"image_size": 60},
        {"channels": (4, 8, 8)},
        {"channels": (4, 8, 8, 10**9)},
        {"latent_dim": 0},
        {"norm": "layer"},
        {"image_size": "64"},
    ],
)
def test_bad_config_rejected(bad: dict) -> None:
    base = {"image_size": 16, "channels": (4, 8, 8, 8), "latent_dim": 8}
    with pytest.raises(ValueError):
        VAEConfig(**(base | bad))


def test_config_round_trip(tiny_config: VAEConfig) -> None:
    assert VAEConfig.from_dict(tiny_config.to_dict()) == tiny_config
    with pytest.raises(ValueError, match="unknown model config keys"):
        VAEConfig.from_dict(tiny_config.to_dict() | {"depth": 3})


def test_deterministic_mode_and_seeded_sampling(tiny_config: VAEConfig) -> None:
    model = VAE(tiny_config).eval()
    x = torch.rand(3, 1, 16, 16)
    a, _ = model(x, sample=False)
    b, _ = model(x, sample=False)
    assert torch.equal(a, b)
    s1, _ = model(x, generator=torch.Generator().manual_seed(1))
    s2, _ = model(x, generator=torch.Generator().manual_seed(1))
    s3, _ = model(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(s1, s2)
    assert not torch.equal(s1, s3)


def test_same_seed_same_init(tiny_config: VAEConfig) -> None:
    torch.manual_seed(5)
    a = VAE(tiny_config).state_dict()
    torch.manual_seed(5)
    b = VAE(tiny_config).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_explicit_noise_is_reparameterization(tiny_config: VAEConfig) -> None:
    model = VAE(tiny_config)
    x = torch.rand(2, 1, 16, 16)
    post = model.encode(x)
    eps = torch.randn(2, 8)
    z = post.sample(noise=eps)
    torch.testing.assert_close(z, post.mean + torch.exp(0.5 * post.logvar) * eps)
