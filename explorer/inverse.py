"""The Inverse page's work: finding the reconstructors usable with the loaded VAE, running every
one on a frame (timed, scored against the true pattern when it is known), and the round trip, a
reconstruction sent through the generator (pattern → speckle) and compared with the frame."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.checkpoint_files import CheckpointError
from explorer import sources
from explorer.generate import Served, generate
from inverse.checkpoint import Reconstructor, is_reconstructor, load_reconstructor
from inverse.checkpoint import read_reconstructor_config as read_config
from inverse.features import encode_mu
from inverse.methods import METHOD_NAMES
from inverse.reconstruct import reconstruct
from inverse.scoring import pcc_rows
from speckle.slm_patterns import to_pattern
from vae.checkpoint import Checkpoint

INVERSE_DIR = "inverse"  # models/inverse/NAME: shipped reconstructors
ROUND_TRIP_SAMPLES = 4


def reconstructor_dirs() -> list[Path]:
    """Every reconstructor directory under models/inverse/ and runs/."""
    return sources.checkpoint_dirs(INVERSE_DIR, is_reconstructor)


def usable(config: dict, vae: Checkpoint) -> bool:
    """A μ read-out of this VAE, or any pixel reconstructor of frames this VAE's size."""
    if config["preprocessing"]["image_size"] != vae.model_config.image_size:
        return False
    vae_id = (config.get("vae") or {}).get("id")
    return config["method"] not in ("ridge-mu", "mlp-mu") or vae_id == vae.id


def matching(vae: Checkpoint) -> list[Path]:
    """The reconstructors usable with this VAE, in the methods' order, shipped ones first."""
    out = []
    for path in reconstructor_dirs():
        try:
            config = read_config(path)
        except (CheckpointError, OSError):  # a run's checkpoint mid-swap, a damaged config
            continue
        if usable(config, vae):
            shipped = INVERSE_DIR in path.parts and "models" in path.parts
            out.append((not shipped, METHOD_NAMES.index(config["method"]), str(path), path))
    return [p for *_, p in sorted(out)]


def load(paths: list[Path]) -> dict[str, Reconstructor]:
    """The reconstructors by label (the method, or method and folder when two share one)."""
    recs: dict[str, Reconstructor] = {}
    for path in map(Path, paths):
        rec = load_reconstructor(path)
        name = path.parent.name if path.name == "checkpoint" else path.name  # a run's folder
        label = rec.method if rec.method not in recs else f"{rec.method} ({name})"
        recs[label] = rec
    return recs


def frame_mu(model, frame: np.ndarray) -> np.ndarray:
    """The VAE's μ of one frame (S, S)."""
    return encode_mu(model, np.asarray(frame, np.float32)[None])[0]


@dataclass(frozen=True)
class Reconstruction:
    label: str
    pattern: np.ndarray  # (16, 16) in [0, 1]
    pcc: float | None  # against the true pattern, when known
    ms: float  # wall time of this method on this frame


def true_pattern(dataset, i: int) -> np.ndarray | None:
    """Sample i's input pattern as the reconstructors were trained on it, or None."""
    p = dataset.pattern(i)
    return None if p is None else to_pattern(p)


def reconstruct_frame(
    recs: dict[str, Reconstructor],
    frame: np.ndarray,
    vae: Checkpoint,
    mu: np.ndarray | None = None,
    truth: np.ndarray | None = None,
) -> list[Reconstruction]:
    """Every reconstructor on one frame (S, S) as the VAE sees it; `mu` the frame's μ when known
    (the atlas holds every dataset frame's)."""
    out = []
    for label, rec in recs.items():
        t0 = time.perf_counter()
        m = None if mu is None or not rec.reads_mu else np.asarray(mu, np.float32)[None]
        pattern = reconstruct(rec, frame[None], vae.model if rec.reads_mu else None, m)[0]
        ms = (time.perf_counter() - t0) * 1000
        pcc = None if truth is None else float(pcc_rows(pattern[None], truth[None])[0])
        out.append(Reconstruction(label, pattern, pcc, ms))
    return out


@dataclass(frozen=True)
class RoundTrip:
    speckle: np.ndarray  # the generator's mean speckle for the reconstruction
    pcc: float  # against the frame, in the lit region
    seconds: float


def round_trip(
    served: Served,
    vae: Checkpoint,
    pattern: np.ndarray,
    frame: np.ndarray,
    mask: np.ndarray,
    n: int = ROUND_TRIP_SAMPLES,
    seed: int = 0,
) -> RoundTrip:
    """The reconstruction through the generator (mean of n samples), scored against the frame it
    was read from: a faithful reconstruction brings the frame back."""
    res = generate(served, vae, pattern, n=n, seed=seed, mask=mask, truth=frame, filmstrip=1)
    return RoundTrip(res.mean, float(res.metrics["mean"]["pcc"]), res.seconds)
