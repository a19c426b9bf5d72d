"""The generator's architecture as data: `DenoiserConfig`. No torch here, so that a generator's
config can be read and matched to its VAE without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

ARCHS = ("mlp-adaln", "seed-unet1d")
PREDICTIONS = ("epsilon", "v_prediction")
MAX_WIDTH = 8192


@dataclass(frozen=True)
class DenoiserConfig:
    arch: str = "mlp-adaln"
    latent_dim: int = 512
    pattern_size: int = 16  # the SLM pattern side; patterns are resized to it
    cond_dim: int = 128  # width of the time + pattern embedding
    # mlp-adaln: residual blocks of this width and depth, MLP hidden = width * mlp_ratio. The
    # defaults keep the generator and its regressor under 10 MB together in float16.
    width: int = 256
    depth: int = 4
    mlp_ratio: int = 2
    # seed-unet1d: ConvBlock channels of the down path, then the bottleneck's (the paper's figure:
    # 1 → 64 → 128 → 256, bottleneck 256 → 512 with self-attention).
    channels: tuple[int, ...] = (64, 128, 256)
    bottleneck: int = 512
    heads: int = 4
    # What the network predicts: v (Salimans & Ho 2022), or ε, whose x̂₀ = (x − √(1−ᾱ) ε)/√ᾱ
    # divides by √ᾱ ≈ 5e-5 at the first trailing step.
    prediction: str = "v_prediction"
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"  # the cosine schedule (Nichol & Dhariwal 2021)

    def __post_init__(self) -> None:
        # Configs come from untrusted config.json files: validate before anything is allocated.
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        ints = (
            "latent_dim",
            "pattern_size",
            "cond_dim",
            "width",
            "depth",
            "mlp_ratio",
            "bottleneck",
            "heads",
            "train_timesteps",
        )
        for name in ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            if value > MAX_WIDTH and name != "train_timesteps":
                raise ValueError(f"{name} must be at most {MAX_WIDTH}, got {value}")
        if not self.channels or any(c < 1 or c > MAX_WIDTH for c in self.channels):
            raise ValueError(f"channels must be in 1..{MAX_WIDTH}, got {list(self.channels)}")
        if self.arch == "seed-unet1d":
            if self.latent_dim % 2 ** len(self.channels):
                raise ValueError(
                    f"seed-unet1d halves the latent {len(self.channels)} times: latent_dim "
                    f"{self.latent_dim} must divide by {2 ** len(self.channels)}"
                )
            if self.bottleneck % self.heads:
                raise ValueError(f"bottleneck {self.bottleneck} must divide by heads {self.heads}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DenoiserConfig:
        if not isinstance(d, dict):
            raise ValueError("denoiser config must be a JSON object")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown denoiser config keys {sorted(unknown)}")
        return cls(**d)
