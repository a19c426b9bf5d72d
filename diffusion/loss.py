"""The generator's training losses: the denoiser's (ε or v prediction under the DDPM schedule)
and the deterministic regressor's."""

from __future__ import annotations

import torch


def diffusion_loss(net, scheduler, x0, pattern, noise, t, keep) -> torch.Tensor:
    """MSE between the network output and its target (ε, or v = √ᾱ ε − √(1−ᾱ) x₀)."""
    xt = scheduler.add_noise(x0, noise, t)
    target = (
        noise
        if scheduler.config.prediction_type == "epsilon"
        else scheduler.get_velocity(x0, noise, t)
    )
    return torch.nn.functional.mse_loss(net(xt, t, pattern, keep).float(), target)


def regressor_loss(net, x0, pattern) -> torch.Tensor:
    """MSE of the regressor's standardized μ. Through net's forward (DDP hooks it), as
    Denoiser.regress does: x = 0, t = 0, and keep=all so every parameter is in the graph."""
    b = len(x0)
    keep = torch.ones(b, dtype=torch.bool, device=x0.device)
    out = net(torch.zeros_like(x0), torch.zeros(b, device=x0.device), pattern, keep)
    return torch.nn.functional.mse_loss(out.float(), x0)
