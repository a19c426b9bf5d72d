"""Noise schedules and samplers, all from diffusers: DDPM for training; DPM-Solver++, DDIM and
DDPM for sampling. One place sets what every one of them must agree on."""

from __future__ import annotations

import os

from diffusion.config import DenoiserConfig

SAMPLERS = ("dpm++", "ddim", "ddpm")
# diffusers imports huggingface_hub, which may look for the network: nothing is ever downloaded.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _common(config: DenoiserConfig) -> dict:
    return {
        "num_train_timesteps": config.train_timesteps,
        "beta_schedule": config.beta_schedule,
        "prediction_type": config.prediction,
        # Latents are standardized, not images in [-1, 1]: the default clipping would cut
        # every dimension's tails.
        "clip_sample": False,
        # Few-step sampling starts at the last training step (pure noise), not before it
        # (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps Are Flawed").
        "timestep_spacing": "trailing",
    }


def training_scheduler(config: DenoiserConfig):
    # Lazy: diffusers loads with the first scheduler, not with the pages that list SAMPLERS.
    from diffusers import DDPMScheduler

    return DDPMScheduler(**_common(config))


def sampler(name: str, config: DenoiserConfig):
    """A fresh scheduler per sampling run: multistep solvers keep state between steps."""
    # Lazy: as in training_scheduler.
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    common = _common(config)
    if name == "dpm++":
        # DPM-Solver has no clip_sample; its equivalent, thresholding, is off by default.
        del common["clip_sample"]
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    if name == "ddim":
        return DDIMScheduler(**common)
    if name == "ddpm":
        return DDPMScheduler(**common)
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {name!r}")
