"""`mlp-adaln`: residual MLP blocks over the flat latent, each LayerNorm's shift, scale and gate
set by the conditioning vector, zero-initialized so every block starts as the identity (adaLN-zero,
Peebles & Xie 2023, "Scalable Diffusion Models with Transformers"). A fully connected latent has
no spatial order, so no convolution over its index is assumed."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.config import DenoiserConfig


class AdaLNBlock(nn.Module):
    def __init__(self, width: int, hidden: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, width))
        self.modulation = nn.Linear(cond_dim, 3 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=1)  # (B, width) each
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class MLPAdaLN(nn.Module):
    """(B, dz) noisy latent, (B, cond_dim) conditioning → (B, dz)."""

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        w = config.width
        self.inp = nn.Linear(config.latent_dim, w)
        self.blocks = nn.ModuleList(
            AdaLNBlock(w, w * config.mlp_ratio, config.cond_dim) for _ in range(config.depth)
        )
        self.final_norm = nn.LayerNorm(w, elementwise_affine=False)
        self.final_modulation = nn.Linear(config.cond_dim, 2 * w)
        self.out = nn.Linear(w, config.latent_dim)
        for layer in (self.final_modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = nn.functional.silu(c)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=1)
        return self.out(self.final_norm(h) * (1 + scale) + shift)
