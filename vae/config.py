"""The model's architecture as data: `VAEConfig` and the presets. No torch here, so that a
checkpoint's config can be read and checked, and a cached atlas opened, without importing torch
(1.4-2 s of a fresh process on 2 cores)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

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

    def describe(self) -> str:
        """The architecture in a few words, for a model card."""
        return f"{self.image_size}² px, channels {list(self.channels)}, dz {self.latent_dim}"

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
