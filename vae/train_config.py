"""The training run's settings: `TrainConfig`, a frozen dataclass from which the command line of
`python -m vae.train` is generated, so that the CLI and the code cannot drift apart."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from common.cli import DATA_HELP, config_from_args, parser_for
from frames import Normalization
from vae.loss import RECON_CONVENTIONS
from vae.model import PRESETS, VAEConfig
from vae.schedule import SCHEDULES, BetaSchedule

DESCRIPTION = "Train the β-VAE on a folder of speckle images."


def _help(text: str, **kw) -> dict:
    return {"metadata": {"help": text, **kw}}


@dataclass(frozen=True)
class TrainConfig:
    # The β schedule's settings take their defaults from BetaSchedule, where they are defined.
    data: str = field(default="", **_help(DATA_HELP, required=True))
    out: str = field(default="", **_help("run directory to write", required=True))
    preset: str = field(default="demo", **_help("model size", choices=tuple(PRESETS)))
    beta: float = field(
        default=BetaSchedule.beta, **_help("KL weight β (γ for the capacity schedule)")
    )
    recon: str = field(
        default="sse",
        **_help(
            "reconstruction term: per-image sum (sse) or mean (mse) of squared errors",
            choices=RECON_CONVENTIONS,
        ),
    )
    schedule: str = field(default=BetaSchedule.kind, **_help("β schedule", choices=SCHEDULES))
    warmup_steps: int = field(
        default=BetaSchedule.warmup_steps, **_help("warmup: steps to ramp β from 0")
    )
    cycles: int = field(
        default=BetaSchedule.cycles, **_help("cyclical: number of cycles over max-steps")
    )
    cycle_ratio: float = field(
        default=BetaSchedule.cycle_ratio, **_help("cyclical: fraction of a cycle spent ramping")
    )
    capacity_max: float = field(
        default=BetaSchedule.capacity_max, **_help("capacity: final KL target C in nats")
    )
    capacity_steps: int = field(
        default=BetaSchedule.capacity_steps, **_help("capacity: steps to reach C_max")
    )
    max_steps: int = field(default=10000, **_help("optimizer steps in total"))
    batch_size: int = field(default=64, **_help("global batch size, split across ranks"))
    lr: float = field(default=1e-4, **_help("Adam learning rate"))
    grad_clip: float = field(default=1.0, **_help("gradient clipping max-norm (0 = off)"))
    val_fraction: float = field(default=0.1, **_help("held-out validation fraction"))
    seed: int = field(default=0, **_help("seed for init, split, data order and noise"))
    normalization: str = field(
        default="max",
        **_help("per-image max, per-image mean, or fixed range", choices=("max", "mean", "fixed")),
    )
    norm_high: float = field(default=0.0, **_help("fixed: full-scale value (0 = file's own)"))
    image_size: int = field(default=0, **_help("override the preset's image size (multiple of 16)"))
    latent_dim: int = field(default=0, **_help("override the preset's latent size"))
    device: str = field(default="auto", **_help("auto, cuda, mps or cpu"))
    compile: bool = field(default=False, **_help("torch.compile the model (CUDA)"))
    workers: int = field(default=0, **_help("DataLoader workers when not preloading"))
    preload: str = field(
        default="auto", **_help("load the dataset into RAM", choices=("auto", "yes", "no"))
    )
    checkpoint_every: int = field(default=500, **_help("steps between checkpoints"))
    log_every: int = field(default=10, **_help("steps between metric records"))
    eval_every: int = field(default=0, **_help("steps between validations (0 = each epoch)"))
    init_from: str = field(default="", **_help("fine-tune from this checkpoint"))
    subset: str = field(
        default="", **_help("file listing the sample names to train on, one per line")
    )
    resume: bool = field(default=False, **_help("continue the run in --out exactly"))
    deterministic: bool = field(default=False, **_help("use torch's deterministic algorithms"))
    threads: int = field(default=0, **_help("CPU threads (0 = torch default)"))
    progress: bool = field(default=True, **_help("show a progress bar"))
    exit_with_parent: bool = field(
        default=False, **_help("save and stop if the launching process dies (the app's jobs)")
    )

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("--val-fraction must be in [0, 1)")
        if self.lr <= 0:
            raise ValueError("--lr must be > 0")
        if self.beta < 0:
            raise ValueError("--beta must be >= 0")

    def schedule_obj(self) -> BetaSchedule:
        return BetaSchedule(
            kind=self.schedule,
            beta=self.beta,
            warmup_steps=self.warmup_steps,
            cycles=self.cycles,
            cycle_ratio=self.cycle_ratio,
            capacity_max=self.capacity_max,
            capacity_steps=self.capacity_steps,
            total_steps=self.max_steps,
        )

    def normalization_obj(self) -> Normalization:
        high = self.norm_high if self.norm_high > 0 else None
        return Normalization(mode=self.normalization, high=high)


# Changing these between a run and its --resume would silently break exactness.
RESUME_MUST_MATCH = (
    "preset",
    "beta",
    "recon",
    "schedule",
    "warmup_steps",
    "cycles",
    "cycle_ratio",
    "capacity_max",
    "capacity_steps",
    "batch_size",
    "lr",
    "grad_clip",
    "val_fraction",
    "seed",
    "normalization",
    "norm_high",
    "image_size",
    "latent_dim",
    "init_from",
    "subset",
)


def build_parser() -> argparse.ArgumentParser:
    """The CLI is generated from TrainConfig, so the two cannot drift apart."""
    return parser_for(TrainConfig, "python -m vae.train", DESCRIPTION)


def parse_args(argv: list[str] | None) -> TrainConfig:
    return config_from_args(build_parser(), TrainConfig, argv)


def model_config_for(cfg: TrainConfig) -> VAEConfig:
    base = PRESETS[cfg.preset].to_dict()
    if cfg.image_size:
        base["image_size"] = cfg.image_size
    if cfg.latent_dim:
        base["latent_dim"] = cfg.latent_dim
    return VAEConfig.from_dict(base)
