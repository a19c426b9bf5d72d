"""The conditioning: a sinusoidal embedding of the diffusion timestep and a small encoder of the
input pattern, summed into one vector that FiLM (seed-unet1d) or adaLN (mlp-adaln) reads."""

from __future__ import annotations

import math

import torch
from torch import nn

FREQUENCIES = 128


def timestep_embedding(t: torch.Tensor, dim: int = FREQUENCIES) -> torch.Tensor:
    """(B,) timesteps → (B, dim) sin/cos features at geometric frequencies (Vaswani et al. 2017,
    as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class PatternEncoder(nn.Module):
    """(B, P, P) pattern amplitudes in [0, 1] → (B, cond_dim): a flattening MLP. It keeps every
    pixel's position, which matters: the fibre is linear in the input field, and moving a stroke
    on the SLM changes the whole speckle."""

    def __init__(self, pattern_size: int, cond_dim: int) -> None:
        super().__init__()
        hidden = 2 * pattern_size**2
        self.mlp = nn.Sequential(
            nn.Linear(pattern_size**2, hidden),
            nn.SiLU(),
            nn.Linear(hidden, cond_dim),
        )

    def forward(self, pattern: torch.Tensor) -> torch.Tensor:
        return self.mlp(pattern.flatten(1))


class Conditioning(nn.Module):
    """time embedding + pattern embedding, with a learned null pattern for classifier-free
    guidance (Ho & Salimans 2022): rows where `keep` is False get the null embedding."""

    def __init__(self, pattern_size: int, cond_dim: int) -> None:
        super().__init__()
        self.time = nn.Sequential(
            nn.Linear(FREQUENCIES, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim)
        )
        self.pattern = PatternEncoder(pattern_size, cond_dim)
        self.null = nn.Parameter(torch.zeros(cond_dim))

    def forward(
        self, t: torch.Tensor, pattern: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        c = self.pattern(pattern)
        if keep is not None:
            c = torch.where(keep[:, None], c, self.null.to(c.dtype)[None])
        return self.time(timestep_embedding(t)) + c
