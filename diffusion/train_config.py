"""The generator's training settings: `TrainConfig`, a frozen dataclass from which the command
line of `python -m diffusion.train` is generated."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from common.cli import config_from_args, parser_for
from diffusion.config import ARCHS, PREDICTIONS, DenoiserConfig

DESCRIPTION = (
    "Train the pattern-conditioned latent diffusion model (and its deterministic regressor) "
    "on the latents of a frozen VAE."
)

PAIRS_HELP = (
    "data set folder of speckle images paired with their input patterns: a labels.csv whose "
    "pattern column names each image's pattern (the simulator writes one), or paired recordings "
    "(HDF5 or .mat files holding a speckle array and a pattern array)"
)


def _help(text: str, **kw) -> dict:
    return {"metadata": {"help": text, **kw}}


@dataclass(frozen=True)
class TrainConfig:
    vae: str = field(default="", **_help("the VAE checkpoint (frozen)", required=True))
    data: str = field(default="", **_help(PAIRS_HELP, required=True))
    out: str = field(default="", **_help("run directory to write", required=True))
    arch: str = field(default="mlp-adaln", **_help("denoiser architecture", choices=ARCHS))
    prediction: str = field(
        default="v_prediction", **_help("what the network predicts", choices=PREDICTIONS)
    )
    width: int = field(default=256, **_help("mlp-adaln: block width"))
    depth: int = field(default=4, **_help("mlp-adaln: number of blocks"))
    mlp_ratio: int = field(default=2, **_help("mlp-adaln: MLP hidden = width × ratio"))
    cond_dim: int = field(default=128, **_help("time + pattern embedding width"))
    channels: str = field(default="64,128,256", **_help("seed-unet1d: down-path channels"))
    bottleneck: int = field(default=512, **_help("seed-unet1d: bottleneck channels"))
    max_steps: int = field(default=20000, **_help("optimizer steps in total"))
    batch_size: int = field(default=256, **_help("global batch size, split across ranks"))
    lr: float = field(default=1e-3, **_help("AdamW learning rate, constant after the warmup"))
    warmup_steps: int = field(default=200, **_help("steps of linear learning-rate warmup"))
    grad_clip: float = field(default=1.0, **_help("gradient clipping max-norm (0 = off)"))
    ema_decay: float = field(default=0.999, **_help("EMA decay of the sampled weights"))
    cfg_dropout: float = field(
        default=0.1,
        **_help("fraction of samples trained without their pattern (classifier-free guidance)"),
    )
    regressor: bool = field(default=True, **_help("also train the deterministic regressor"))
    val_fraction: float = field(default=0.05, **_help("held-out fraction for validation loss"))
    seed: int = field(default=0, **_help("seed for init, split, data order and noise"))
    device: str = field(default="auto", **_help("auto, cuda, mps or cpu"))
    compile: bool = field(default=False, **_help("torch.compile the denoiser (CUDA)"))
    checkpoint_every: int = field(default=500, **_help("steps between checkpoints"))
    log_every: int = field(default=50, **_help("steps between metric records"))
    eval_every: int = field(default=500, **_help("steps between validations"))
    resume: bool = field(default=False, **_help("continue the run in --out exactly"))
    deterministic: bool = field(default=False, **_help("use torch's deterministic algorithms"))
    threads: int = field(default=0, **_help("CPU threads (0 = torch default)"))
    progress: bool = field(default=True, **_help("show a progress bar"))
    exit_with_parent: bool = field(
        default=False, **_help("save and stop if the launching process dies (the app's jobs)")
    )

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "checkpoint_every", "log_every", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("--val-fraction must be in [0, 1)")
        if not 0 <= self.cfg_dropout < 1:
            raise ValueError("--cfg-dropout must be in [0, 1)")
        if not 0 <= self.ema_decay < 1:
            raise ValueError("--ema-decay must be in [0, 1)")
        if self.lr <= 0:
            raise ValueError("--lr must be > 0")
        self.denoiser_config(16)  # validates the architecture's settings

    def denoiser_config(self, pattern_size: int, latent_dim: int = 512) -> DenoiserConfig:
        try:
            channels = tuple(int(c) for c in self.channels.split(","))
        except ValueError:
            raise ValueError(
                f"--channels: expected integers like 64,128,256, got {self.channels!r}"
            ) from None
        return DenoiserConfig(
            arch=self.arch,
            latent_dim=latent_dim,
            pattern_size=pattern_size,
            cond_dim=self.cond_dim,
            width=self.width,
            depth=self.depth,
            mlp_ratio=self.mlp_ratio,
            channels=channels,
            bottleneck=self.bottleneck,
            prediction=self.prediction,
        )


# Changing these between a run and its --resume would silently break exactness.
RESUME_MUST_MATCH = (
    "arch",
    "prediction",
    "width",
    "depth",
    "mlp_ratio",
    "cond_dim",
    "channels",
    "bottleneck",
    "batch_size",
    "lr",
    "warmup_steps",
    "grad_clip",
    "ema_decay",
    "cfg_dropout",
    "regressor",
    "val_fraction",
    "seed",
)


def build_parser() -> argparse.ArgumentParser:
    """The CLI is generated from TrainConfig, so the two cannot drift apart."""
    return parser_for(TrainConfig, "python -m diffusion.train", DESCRIPTION)


def parse_args(argv: list[str] | None) -> TrainConfig:
    return config_from_args(build_parser(), TrainConfig, argv)
