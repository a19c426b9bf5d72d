"""The reconstructors' training settings: `TrainConfig`, a frozen dataclass from which the
command line of `python -m inverse.train` is generated."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from common.cli import config_from_args, parser_for
from inverse.features import STRIDE
from inverse.methods import METHOD_NAMES
from inverse.readout import RIDGE_ALPHA
from inverse.tm_inverse import STARTS, STEPS
from speckle.tm_fit import TM_LR

DESCRIPTION = (
    "Train a speckle → pattern reconstructor (a ridge read-out from the VAE's μ or the pixels, "
    "a one-hidden-layer dense net on the pixels, an MLP from μ, or a transmission matrix to "
    "invert) on paired frames and patterns."
)
PAIRS_HELP = (
    "data set folder of speckle frames paired with their input patterns: a labels.csv whose "
    "pattern column names each frame's pattern (python -m speckle mmf writes one), or paired "
    "recordings (HDF5 or .mat files holding a speckle array and a pattern array)"
)
# Hidden widths when --hidden is 0: the dense net's one layer, the MLP's two.
DEFAULT_HIDDEN = {"dense": 512, "mlp": 512}
# The pixels read when --stride is 0: every lit pixel for the ridge; every other one in each
# direction (652 of 2608 at 64²) for the dense net and the matrix, a quarter of the work.
METHOD_STRIDE = {"ridge-pixels": STRIDE, "dense-pixels": 2, "tm": 2}


def _help(text: str, **kw) -> dict:
    return {"metadata": {"help": text, **kw}}


@dataclass(frozen=True)
class TrainConfig:
    method: str = field(default="", **_help("reconstructor", required=True, choices=METHOD_NAMES))
    data: str = field(default="", **_help(PAIRS_HELP, required=True))
    out: str = field(default="", **_help("run directory to write", required=True))
    vae: str = field(
        default="",
        **_help(
            "VAE checkpoint: the μ methods read its μ, and every method reads frames with its "
            "preprocessing (default without one: 64×64, per-frame max)"
        ),
    )
    stride: int = field(
        default=0,
        **_help(
            "read every stride-th lit pixel in each direction (0: 1 for the ridge, 2 for the "
            "dense net and the transmission matrix)"
        ),
    )
    alpha: float = field(default=RIDGE_ALPHA, **_help("ridge penalty per sample (standardized)"))
    hidden: int = field(default=0, **_help("hidden width (0: 512)"))
    max_steps: int = field(default=2000, **_help("optimizer steps (iterative methods)"))
    batch_size: int = field(default=128, **_help("batch size (dense, mlp); the tm uses 1024"))
    lr: float = field(default=1e-3, **_help("Adam learning rate (dense, mlp)"))
    tm_lr: float = field(default=TM_LR, **_help("tm: Adam step in units of the entries' σ"))
    weight_decay: float = field(default=1e-5, **_help("Adam weight decay (dense, mlp)"))
    starts: int = field(default=STARTS, **_help("tm: starts of each frame's inversion"))
    inversion_steps: int = field(default=STEPS, **_help("tm: gradient steps per start"))
    photons: float = field(
        default=0.0,
        **_help(
            "train on frames through a camera of this many photo-electrons per lit pixel (0: off)"
        ),
    )
    read_noise: float = field(default=0.0, **_help("camera read noise, e- rms"))
    bit_depth: int = field(default=0, **_help("camera ADC bits (0: none)"))
    val_fraction: float = field(default=0.05, **_help("held-out fraction for validation"))
    seed: int = field(default=0, **_help("seed for init, split, data order and camera noise"))
    device: str = field(default="cpu", **_help("auto, cuda, mps or cpu"))
    checkpoint_every: int = field(default=500, **_help("steps between checkpoints"))
    log_every: int = field(default=50, **_help("steps between metric records"))
    eval_every: int = field(default=500, **_help("steps between validations"))
    resume: bool = field(default=False, **_help("continue the run in --out exactly"))
    deterministic: bool = field(default=False, **_help("use torch's deterministic algorithms"))
    threads: int = field(default=0, **_help("CPU threads (0 = torch default)"))
    progress: bool = field(default=True, **_help("show a progress bar"))
    exit_with_parent: bool = field(
        default=False, **_help("save and stop if the launching process dies")
    )

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "checkpoint_every", "log_every", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("stride", "hidden", "bit_depth", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("--val-fraction must be in [0, 1)")
        if self.lr <= 0 or self.tm_lr <= 0 or self.alpha <= 0:
            raise ValueError("--lr, --tm-lr and --alpha must be > 0")
        if self.starts < 1 or self.inversion_steps < 0:
            raise ValueError("--starts must be >= 1 and --inversion-steps >= 0")
        if self.photons < 0 or self.read_noise < 0:
            raise ValueError("--photons and --read-noise must be >= 0")
        if (self.read_noise or self.bit_depth) and not self.photons:
            raise ValueError("--read-noise and --bit-depth need --photons")

    @property
    def pixel_stride(self) -> int:
        return self.stride or METHOD_STRIDE.get(self.method, STRIDE)


# Changing these between a run and its --resume would silently break exactness.
RESUME_MUST_MATCH = (
    "method",
    "stride",
    "hidden",
    "batch_size",
    "lr",
    "tm_lr",
    "weight_decay",
    "photons",
    "read_noise",
    "bit_depth",
    "val_fraction",
    "seed",
)


def build_parser() -> argparse.ArgumentParser:
    """The CLI is generated from TrainConfig, so the two cannot drift apart."""
    return parser_for(TrainConfig, "python -m inverse.train", DESCRIPTION)


def parse_args(argv: list[str] | None) -> TrainConfig:
    return config_from_args(build_parser(), TrainConfig, argv)
