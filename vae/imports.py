"""What the two import commands share (vae.import_weights, vae.import_exported): the options that
describe how the model was trained elsewhere (normalization, β and its reconstruction convention,
with vae.train's defaults), the config entries every checkpoint carries, and where the files came
from."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from common.checkpoint_files import file_sha256
from frames.normalize import NORMALIZATIONS, Normalization
from vae.loss import RECON_CONVENTIONS
from vae.train_config import TrainConfig


def add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="checkpoint directory to write, e.g. models/mine")
    p.add_argument(
        "--normalization",
        default=TrainConfig.normalization,
        choices=NORMALIZATIONS,
        help="how the model's inputs were scaled to [0, 1] (see docs/data.md)",
    )
    p.add_argument(
        "--norm-high", type=float, default=0.0, help="fixed: full-scale value (0 = file's own)"
    )
    p.add_argument(
        "--beta", type=float, default=None, help="the KL weight it was trained with, if known"
    )
    p.add_argument(
        "--recon",
        default=TrainConfig.recon,
        choices=RECON_CONVENTIONS,
        help="its reconstruction term: per-image sum (sse) or mean (mse) of squared errors",
    )


def training_meta(args: argparse.Namespace, image_size: int, module: str, argv) -> dict:
    """Config entries from the options above, and the exact command."""
    norm = Normalization(mode=args.normalization, high=args.norm_high or None)
    argv = list(sys.argv[1:] if argv is None else argv)
    return {
        "preprocessing": {"image_size": image_size, "normalization": norm.to_dict()},
        "beta": args.beta,
        "recon": args.recon,
        "command": f"python -m {module} {shlex.join(argv)}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def source_record(path: Path) -> dict:
    """Where an imported file came from: its path as given and its sha256."""
    return {"path": str(path), "sha256": file_sha256(path)}
