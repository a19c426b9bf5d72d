"""β-VAE loss: L = reconstruction + β·KL, or Burgess et al.'s capacity form γ·|KL − C|.

The reconstruction convention matters as much as β: with "sse" (sum of squared errors per image,
the Gaussian log-likelihood up to a constant, as in Kingma & Welling 2014) β = 1 is the ELBO; with
"mse" (mean over pixels) the same β weighs KL H·W times more. Every checkpoint records both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vae.kl import ACTIVE_NATS, active_units  # noqa: F401 (public here)
from vae.model import DiagonalGaussian

RECON_CONVENTIONS = ("sse", "mse")
DEFAULT_RECON = "sse"


@dataclass
class LossTerms:
    total: torch.Tensor  # scalar that is optimized
    recon: torch.Tensor  # scalar, in the chosen convention, mean over the batch
    kl: torch.Tensor  # scalar, nats per image (sum over dims, mean over the batch)
    kl_per_dim: torch.Tensor  # (dz,), nats, mean over the batch


def reconstruction(
    x: torch.Tensor, x_hat: torch.Tensor, convention: str = DEFAULT_RECON
) -> torch.Tensor:
    """Per-image reconstruction error (B,): sum ("sse") or mean ("mse") of squared errors."""
    if convention not in RECON_CONVENTIONS:
        raise ValueError(
            f"reconstruction convention must be one of {RECON_CONVENTIONS}, got {convention!r}"
        )
    sq = (x_hat.float() - x.float()).pow(2).flatten(1)  # (B, C·H·W)
    return sq.sum(1) if convention == "sse" else sq.mean(1)


def vae_loss(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    posterior: DiagonalGaussian,
    beta: float,
    convention: str = DEFAULT_RECON,
    capacity: float | None = None,
) -> LossTerms:
    """β-VAE objective (Higgins et al. 2017). With `capacity` C, the objective is
    recon + β·|KL − C| (Burgess et al. 2018, eq. 8, where β plays the role of γ)."""
    recon = reconstruction(x, x_hat, convention).mean()
    kl_per_dim = posterior.kl().float().mean(0)  # (dz,)
    kl = kl_per_dim.sum()
    weighted = (kl - capacity).abs() if capacity is not None else kl
    return LossTerms(total=recon + beta * weighted, recon=recon, kl=kl, kl_per_dim=kl_per_dim)
