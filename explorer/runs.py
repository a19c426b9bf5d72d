"""Saving a finished retraining run under runs/, where the model picker finds it."""

from __future__ import annotations

import shutil
from pathlib import Path

from common.atomic import atomic_dir
from explorer import sources
from vae.checkpoint import load_checkpoint


def save_run(checkpoint_dir: str | Path, name: str) -> Path:
    """Copy a run's checkpoint (without its resume state) to runs/NAME/checkpoint and return
    runs/NAME. The name is checked (sources.safe_name), an existing run is never replaced, and a
    checkpoint that does not load is refused. The run appears whole or not at all."""
    target = sources.runs_root() / sources.safe_name(name)
    if target.exists():
        raise sources.PathError(f"runs/{name} exists already")
    load_checkpoint(checkpoint_dir)  # CheckpointError (a ValueError) if it does not load
    with atomic_dir(target) as tmp:
        shutil.copytree(checkpoint_dir, tmp / "checkpoint", ignore=shutil.ignore_patterns("resume"))
    return target
