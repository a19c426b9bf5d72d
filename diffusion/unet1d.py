"""`seed-unet1d`: the denoiser of the paper's figures. The 512-d latent is a one-channel 1-D
signal; ConvBlocks 1 → 64 → 128 → 256 with downsampling, a bottleneck ConvBlock 256 → 512 with
self-attention, then upsampling with skip connections back to one channel. Every ConvBlock is
FiLM-modulated (Perez et al. 2018) by the time + pattern conditioning."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.config import DenoiserConfig


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class ConvBlock(nn.Module):
    """Two 3-tap convs with GroupNorm and SiLU; FiLM (scale, shift) after the first; a 1×1 skip."""

    def __init__(self, cin: int, cout: int, cond_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.film = nn.Linear(cond_dim, 2 * cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = nn.functional.silu(self.norm1(self.conv1(x)))  # (B, cout, L)
        scale, shift = self.film(c)[:, :, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
        h = nn.functional.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).transpose(1, 2)  # (B, L, C)
        out, _ = self.attn(h, h, h, need_weights=False)
        return x + out.transpose(1, 2)


class UNet1D(nn.Module):
    """(B, dz) noisy latent, (B, cond_dim) conditioning → (B, dz)."""

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        c, k = config.channels, config.cond_dim
        ins = (1, *c[:-1])
        self.down = nn.ModuleList(ConvBlock(a, b, k) for a, b in zip(ins, c, strict=True))
        self.pool = nn.ModuleList(nn.Conv1d(b, b, 3, stride=2, padding=1) for b in c)
        self.mid = ConvBlock(c[-1], config.bottleneck, k)
        self.attn = SelfAttention(config.bottleneck, config.heads)
        outs = (config.bottleneck, *reversed(c[1:]))
        self.upsample = nn.ModuleList(
            nn.ConvTranspose1d(a, b, 4, stride=2, padding=1)
            for a, b in zip(outs, reversed(c), strict=True)
        )
        # After upsampling, the skip of the same resolution is concatenated: 2b channels in.
        self.up = nn.ModuleList(ConvBlock(2 * b, b, k) for b in reversed(c))
        self.out = nn.Conv1d(c[0], 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = nn.functional.silu(c)
        h = x[:, None]  # (B, 1, dz)
        skips = []
        for block, pool in zip(self.down, self.pool, strict=True):
            h = block(h, c)
            skips.append(h)
            h = pool(h)  # length halves
        h = self.attn(self.mid(h, c))  # (B, bottleneck, dz / 2^levels)
        for up, block in zip(self.upsample, self.up, strict=True):
            h = up(h)
            h = block(torch.cat([h, skips.pop()], dim=1), c)
        return self.out(h)[:, 0]
