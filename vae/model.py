"""The β-VAE our users train: ResNet conv encoder, two linear heads, transposed-conv decoder.

A pure `nn.Module`: no IO, no device choice, no printing. `VAE(config)` takes nothing else, and
the checkpoint stores `config.to_dict()`, so any checkpoint rebuilds its model alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

STAGES = 4  # four stride-2 stages: the image side must be divisible by 2**4 = 16
MAX_CHANNELS = 4096  # a config asking for more is refused before anything is allocated
MAX_IMAGE_SIZE = 1024
MAX_LATENT_DIM = 8192


@dataclass(frozen=True)
class VAEConfig:
    image_size: int = 64
    in_channels: int = 1
    channels: tuple[int, ...] = (16, 32, 64, 64)
    latent_dim: int = 512
    norm: str = "group"  # "group" (independent of batch size, safe under DDP) or "batch"
    norm_groups: int = 8

    def __post_init__(self) -> None:
        # Validate before any allocation: configs come from untrusted config.json files.
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        ints = {"image_size": self.image_size, "in_channels": self.in_channels}
        ints |= {"latent_dim": self.latent_dim, "norm_groups": self.norm_groups}
        for name, value in ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if len(self.channels) != STAGES:
            raise ValueError(f"channels needs {STAGES} entries, got {list(self.channels)}")
        if any(c < 1 or c > MAX_CHANNELS for c in self.channels):
            raise ValueError(f"channels must be in 1..{MAX_CHANNELS}, got {list(self.channels)}")
        if self.image_size % 2**STAGES or self.image_size > MAX_IMAGE_SIZE:
            raise ValueError(
                f"image_size must be a multiple of 16 up to {MAX_IMAGE_SIZE}, got {self.image_size}"
            )
        if self.latent_dim > MAX_LATENT_DIM:
            raise ValueError(f"latent_dim must be at most {MAX_LATENT_DIM}, got {self.latent_dim}")
        if self.norm not in ("group", "batch"):
            raise ValueError(f"norm must be 'group' or 'batch', got {self.norm!r}")
        if self.in_channels > 4:
            raise ValueError(f"in_channels must be 1..4, got {self.in_channels}")

    @property
    def bottleneck(self) -> int:
        """Side of the smallest feature map: image_size / 16."""
        return self.image_size // 2**STAGES

    @property
    def flat_features(self) -> int:
        """Size of the flattened encoder output: 512 × 6 × 6 = 18432 for the paper preset."""
        return self.channels[-1] * self.bottleneck**2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        if not isinstance(d, dict):
            raise ValueError(f"model config must be an object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        if "channels" in d and not isinstance(d["channels"], (list, tuple)):
            raise ValueError(f"channels must be a list, got {d['channels']!r}")
        return cls(**d)


PRESETS: dict[str, VAEConfig] = {
    # The users' published model: 96×96 input, flatten 512×6×6 = 18432.
    "paper": VAEConfig(image_size=96, channels=(64, 128, 256, 512), latent_dim=512),
    # Small enough to train on 2 CPU cores in minutes and to ship in git (about 8 MB of fp32).
    "demo": VAEConfig(image_size=64, channels=(16, 32, 64, 64), latent_dim=512),
}


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
