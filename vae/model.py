"""The β-VAE our users train: ResNet conv encoder, two linear heads, transposed-conv decoder.

A pure `nn.Module`: no IO, no device choice, no printing. `VAE(config)` takes nothing else, and
the checkpoint stores `config.to_dict()`, so any checkpoint rebuilds its model alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vae.config import (  # noqa: F401 (the model's public names)
    MAX_CHANNELS,
    MAX_IMAGE_SIZE,
    MAX_LATENT_DIM,
    PRESETS,
    STAGES,
    VAEConfig,
)


def _norm(config: VAEConfig, channels: int) -> nn.Module:
    if config.norm == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(math.gcd(config.norm_groups, channels), channels)


class ResBlock(nn.Module):
    """Two 3×3 convs with normalization and SiLU, plus an identity (or 1×1) skip."""

    def __init__(self, config: VAEConfig, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(config, c_in),
            nn.SiLU(),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            _norm(config, c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class DiagonalGaussian:
    """q(z|x) = N(μ, diag σ²), parameterized by μ and log σ²."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean = mean  # (B, dz)
        # Clamp as diffusers does: exp() of an untrained head's output must not overflow.
        self.logvar = logvar.clamp(-30.0, 20.0)  # (B, dz)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(
        self, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Reparameterization trick (Kingma & Welling 2014): z = μ + σ·ε, ε ~ N(0, I)."""
        if noise is None:
            noise = torch.randn(
                self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
            )
        return self.mean + self.std * noise.to(self.mean.dtype)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per dimension, closed form: −½ (1 + log σ² − μ² − σ²). Shape (B, dz)."""
        return -0.5 * (1.0 + self.logvar - self.mean.pow(2) - self.logvar.exp())


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_prev = config.in_channels
        for c in config.channels:
            # Each stage: a 3×3 stride-2 conv halves the side, then a ResNet block.
            layers += [nn.Conv2d(c_prev, c, 3, stride=2, padding=1), nn.SiLU()]
            layers += [ResBlock(config, c, c)]
            c_prev = c
        self.features = nn.Sequential(*layers)
        self.to_mean = nn.Linear(config.flat_features, config.latent_dim)
        self.to_logvar = nn.Linear(config.flat_features, config.latent_dim)

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        h = self.features(x).flatten(1)  # (B, C·(H/16)·(W/16))
        return DiagonalGaussian(self.to_mean(h), self.to_logvar(h))


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        chans = list(reversed(config.channels))  # e.g. 512, 256, 128, 64
        side = config.bottleneck
        self.from_latent = nn.Linear(config.latent_dim, config.flat_features)
        self.unflatten = nn.Unflatten(1, (chans[0], side, side))
        layers: list[nn.Module] = []
        for i, c in enumerate(chans):
            c_out = chans[i + 1] if i + 1 < len(chans) else chans[-1]
            # output_padding=1 makes the 3×3 stride-2 transposed conv exactly double the side.
            layers += [ResBlock(config, c, c)]
            layers += [nn.ConvTranspose2d(c, c_out, 3, stride=2, padding=1, output_padding=1)]
            layers += [nn.SiLU()]
        layers += [nn.Conv2d(chans[-1], config.in_channels, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.unflatten(self.from_latent(z)))  # (B, 1, H, W) in [0, 1]


class VAE(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def check_input(self, x: torch.Tensor) -> None:
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"expected input of shape (B, {want[0]}, {want[1]}, {want[2]}), "
                f"got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        self.check_input(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"expected z of shape (B, {self.config.latent_dim}), got {tuple(z.shape)}"
            )
        return self.decoder(z)

    def forward(
        self,
        x: torch.Tensor,
        sample: bool = True,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Reconstruct x. `sample=False` decodes z = μ; `noise` supplies ε explicitly, which is how
        data-parallel ranks reproduce a single process's draws."""
        posterior = self.encode(x)
        z = posterior.sample(generator, noise) if sample else posterior.mode()
        return self.decode(z), posterior


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
