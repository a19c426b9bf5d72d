"""The denoiser: conditioning + one of the two trunks, with the latent standardization it was
trained with kept as buffers, so that the weights file alone maps to and from VAE latents."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.config import DenoiserConfig
from diffusion.embed import Conditioning
from diffusion.mlp_adaln import MLPAdaLN
from diffusion.unet1d import UNet1D


class Denoiser(nn.Module):
    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        self.config = config
        self.cond = Conditioning(config.pattern_size, config.cond_dim)
        self.trunk = MLPAdaLN(config) if config.arch == "mlp-adaln" else UNet1D(config)
        # Per-dimension statistics of the training latents: the diffusion runs on (μ − mean)/std,
        # where every dimension has unit variance as the noise schedule assumes.
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        pattern: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, dz) standardized noisy latent, t (B,) timesteps, pattern (B, P, P) in [0, 1],
        keep (B,) bool (False: unconditional). Returns ε or v (B, dz), per config.prediction."""
        return self.trunk(x, self.cond(t, pattern, keep))

    def regress(self, pattern: torch.Tensor) -> torch.Tensor:
        """The deterministic regressor's use of the same network: no noise, t = 0, x = 0; it is
        trained to output the standardized μ directly."""
        b = len(pattern)
        zero = torch.zeros(b, self.config.latent_dim, device=pattern.device, dtype=pattern.dtype)
        # keep=all: the null embedding stays in the graph (with a zero gradient), which
        # DistributedDataParallel needs of every parameter.
        keep = torch.ones(b, dtype=torch.bool, device=pattern.device)
        return self(zero, torch.zeros(b, device=pattern.device), pattern, keep)

    def standardize(self, mu: torch.Tensor) -> torch.Tensor:
        return (mu - self.latent_mean) / self.latent_std

    def unstandardize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.latent_std + self.latent_mean

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.latent_mean.copy_(mean)
        # A dimension the encoder never moves would divide by ~0: floor its scale.
        self.latent_std.copy_(std.clamp_min(1e-3))
