"""Sampling latents for patterns: a diffusers scheduler's loop around the denoiser, with
classifier-free guidance and the denoised estimate x̂₀ along the way. Deterministic by seed: each
(pattern, sample j) row draws all its noise from its own generator, seeded by (seed, the
pattern's content, j). Two patterns never share a noise draw, so K samples of N patterns are
N·K independent draws, and a pattern's samples are the same whatever other patterns are
sampled beside it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from diffusion.model import Denoiser
from diffusion.schedulers import sampler as make_sampler

# Defaults of the CLIs and the Generate page: the highest single-sample PCC, with contrast and
# grain ratios within 0.05 of 1, on a validation split of the *training* handwriting (new
# placements: `python -m speckle mmf --n 500 --seed 77 --digits train`, 200 patterns × 8 draws),
# never on test handwriting (docs/generator.md has the grid).
STEPS = 5
SAMPLER = "ddpm"
GUIDANCE = 1.5
SAMPLES = 8  # samples per pattern: enough for a mean and a spread


@dataclass
class Samples:
    latents: np.ndarray  # (K, n, dz) in the VAE's μ space
    # The denoised estimate x̂₀ (VAE μ space) after the steps listed in `trajectory_steps`.
    trajectory: np.ndarray | None  # (T, K, n, dz)
    trajectory_steps: list[int]


def pattern_key(pattern: np.ndarray) -> int:
    """A 64-bit key of a pattern's content, at 16-bit precision so that float rounding of the
    same pattern does not change it."""
    q = np.round(np.clip(np.asarray(pattern, np.float64), 0.0, 1.0) * 65535).astype("<u2")
    return int.from_bytes(hashlib.blake2b(q.tobytes(), digest_size=8).digest(), "little")


def row_generators(seed: int, patterns: np.ndarray, n: int) -> list[torch.Generator]:
    """One generator per (pattern, sample) row, ordered pattern-major, seeded by (seed, the
    pattern's content, j)."""
    gens = []
    for p in patterns:
        key = pattern_key(p)
        for j in range(n):
            state = np.random.SeedSequence(int(seed), spawn_key=(key, j)).generate_state(
                1, np.uint64
            )
            gens.append(torch.Generator().manual_seed(int(state[0]) >> 1))
    return gens


def x0_estimate(scheduler, x: torch.Tensor, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x̂₀ from the network output at step t: x = √ᾱ x₀ + √(1−ᾱ) ε, and v = √ᾱ ε − √(1−ᾱ) x₀."""
    a = scheduler.alphas_cumprod[int(t)].to(x.dtype)
    if scheduler.config.prediction_type == "v_prediction":
        return a.sqrt() * x - (1 - a).sqrt() * out
    return (x - (1 - a).sqrt() * out) / a.sqrt()


@torch.inference_mode()
def sample_latents(
    model: Denoiser,
    patterns: np.ndarray | torch.Tensor,
    n: int = SAMPLES,
    steps: int = STEPS,
    sampler: str = SAMPLER,
    guidance: float = GUIDANCE,
    seed: int = 0,
    trajectory: int = 0,
    start: np.ndarray | None = None,
    strength: float = 1.0,
) -> Samples:
    """n latents for each of the K patterns (K, P, P) in [0, 1]. guidance w: the output is
    uncond + w (cond − uncond) (Ho & Salimans 2022); w = 1 is the plain conditional model and
    skips the unconditional pass. `trajectory` > 0 keeps x̂₀ after that many evenly spaced steps.

    `start` (K, dz), latents in μ space (a physics model's prediction, encoded): each pattern's
    samples start from its start latent noised to the fraction `strength` of the schedule, and
    run the last round(strength · steps) steps only (SDEdit, Meng et al. 2022; diffusers'
    img2img rule). strength 1 is pure noise, as without `start`."""
    if n < 1 or steps < 1:
        raise ValueError(f"n and steps must be >= 1, got n={n}, steps={steps}")
    if start is not None and not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    device = next(model.parameters()).device
    p = torch.as_tensor(np.asarray(patterns, np.float32), device=device)
    k, dz = len(p), model.config.latent_dim
    rows = k * n
    pat = p.repeat_interleave(n, dim=0)  # (K n, P, P)
    gens = row_generators(seed, p.cpu().numpy(), n)
    scheduler = make_sampler(sampler, model.config)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    x = torch.stack([torch.randn(dz, generator=g) for g in gens]).to(device)
    if start is None:
        x = x * scheduler.init_noise_sigma
    else:
        run = max(1, min(steps, round(strength * steps)))
        timesteps = timesteps[steps - run :]
        s0 = torch.as_tensor(np.asarray(start, np.float32), device=device)
        if s0.shape != (k, dz):
            raise ValueError(f"start must be ({k}, {dz}) latents, got {tuple(s0.shape)}")
        x0 = model.standardize(s0).repeat_interleave(n, dim=0)
        x = scheduler.add_noise(x0, x, timesteps[:1].repeat(rows))
    guided = guidance != 1.0
    if guided:
        pat2 = torch.cat([pat, pat])
        keep = torch.cat([torch.ones(rows, dtype=torch.bool), torch.zeros(rows, dtype=torch.bool)])
        keep = keep.to(device)
    keep_at = set(np.linspace(0, len(timesteps) - 1, trajectory).round().astype(int).tolist())
    traj, traj_steps = [], []
    for i, t in enumerate(timesteps):
        xin = scheduler.scale_model_input(x, t)
        tt = torch.full((rows,), int(t), device=device)
        if guided:
            both = model(torch.cat([xin, xin]), torch.cat([tt, tt]), pat2, keep)
            cond, uncond = both[:rows], both[rows:]
            out = uncond + guidance * (cond - uncond)
        else:
            out = model(xin, tt, pat)
        if i in keep_at:
            traj.append(model.unstandardize(x0_estimate(scheduler, x, out, t)))
            traj_steps.append(i + 1)
        x = scheduler.step(out, t, x, generator=gens).prev_sample
    latents = model.unstandardize(x).float().cpu().numpy().reshape(k, n, dz)
    tr = torch.stack(traj).float().cpu().numpy().reshape(len(traj), k, n, dz) if traj else None
    return Samples(latents, tr, traj_steps)


@torch.inference_mode()
def regress_latents(model: Denoiser, patterns: np.ndarray | torch.Tensor) -> np.ndarray:
    """The deterministic regressor's μ for each pattern: (K, dz)."""
    device = next(model.parameters()).device
    p = torch.as_tensor(np.asarray(patterns, np.float32), device=device)
    return model.unstandardize(model.regress(p)).float().cpu().numpy()
