"""Training pairs for the generator: the frozen VAE's μ of each speckle image (from the latent
cache, vae.latents, shared with the app) and the input pattern labels.csv names for it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import cache
from frames import PATTERN_COLUMN, ImageFolder, pattern_frames
from speckle.slm_patterns import to_pattern
from vae.checkpoint import Checkpoint
from vae.foreign import frame_from_counts, normalization_of
from vae.latents import dataset_latents


@dataclass
class Pairs:
    mu: np.ndarray  # (N, dz) float32
    patterns: np.ndarray  # (N, P, P) float32 in [0, 1]
    dataset: ImageFolder


def read_pattern(
    source: str | Path | bytes, size: int, name: str | None = None, frame: str | None = None
) -> np.ndarray:
    """The one pattern a file or frame name stands for (a path such as "run.h5#/patterns#12", or
    an upload's bytes, file name and frame part; see frames.pattern_frames), through the
    hardened readers. A bad file, or a name standing for several frames, raises a one-line
    ImageError naming it."""
    _, frames = pattern_frames(source, name, frame, single=True)
    _, raw = next(frames)
    return to_pattern(raw.pixels, raw.full_scale, size)


def read_patterns(
    source: str | Path | bytes, size: int, name: str | None = None, frame: str | None = None
) -> list[tuple[str, np.ndarray]]:
    """Every pattern a file or frame name stands for, as (frame name, pattern): one for an image
    or a named frame, one per frame for a stack, an array or a paired recording's pattern array.
    Raises a one-line ImageError naming the file."""
    _, frames = pattern_frames(source, name, frame)
    return [(label, to_pattern(raw.pixels, raw.full_scale, size)) for label, raw in frames]


def recorded_frame(counts: np.ndarray, vae: Checkpoint) -> np.ndarray:
    """An intensity in 16-bit camera counts (H, W) as the VAE sees a recorded frame."""
    return frame_from_counts(counts, vae.model_config.image_size, normalization_of(vae))


def simulated_counts(intensity: np.ndarray, meta: dict) -> np.ndarray:
    """A simulator intensity in the counts its set's PNGs use (simulation.json's
    intensity_scale), or scaled to a 60,000-count peak when the record has none."""
    scale = meta.get("intensity_scale")
    if not isinstance(scale, int | float) or scale <= 0:
        scale = 60000.0 / max(float(np.max(intensity)), 1e-30)
    return np.asarray(intensity, np.float64) * float(scale)


def open_dataset(vae: Checkpoint, data: str | Path) -> ImageFolder:
    return ImageFolder(
        data,
        vae.model_config.image_size,
        normalization_of(vae),
        scan_record=cache.scan_record(data),
    )


def _pattern_files(dataset: ImageFolder) -> str:
    """What the patterns are read from, for the cache key: the images' fingerprint leaves the
    pattern column and the pattern files out (they are not samples)."""
    h = hashlib.sha256()
    for name in dataset.labels[PATTERN_COLUMN].astype(str):
        file = dataset.root / name.split("#", 1)[0]
        try:
            st = file.stat()
            h.update(f"{name}\x1f{st.st_size}\x1f{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{name}\x1fmissing\n".encode())
    return h.hexdigest()


def dataset_patterns(dataset: ImageFolder, size: int) -> np.ndarray:
    """Every sample's pattern (N, size, size), cached by the dataset's fingerprint. A sample
    without a readable pattern is an error naming it: a pair cannot be half there."""
    if PATTERN_COLUMN not in dataset.labels.columns:
        raise ValueError(
            f"{dataset.root}: labels.csv has no '{PATTERN_COLUMN}' column naming each image's "
            "input pattern (the simulator writes one: python -m speckle mmf)"
        )
    path = (
        cache.cache_root()
        / "patterns"
        / cache.key(dataset.fingerprint(), size, _pattern_files(dataset))
    )

    def build():
        out = np.zeros((len(dataset), size, size), np.float32)
        for i in range(len(dataset)):
            p = dataset.pattern(i)
            if p is None:
                name = dataset.labels[PATTERN_COLUMN].iloc[i]
                raise ValueError(
                    f"{dataset.root / str(name)}: pattern of sample {i} cannot be read"
                )
            out[i] = to_pattern(p, 1.0, size)
        return {"patterns": out}, {}

    arrays, _, _ = cache.get_or_build(path, build)
    return arrays["patterns"]


def load_pairs(vae: Checkpoint, data: str | Path, pattern_size: int) -> Pairs:
    dataset = open_dataset(vae, data)
    patterns = dataset_patterns(dataset, pattern_size)  # first: a dataset without them fails fast
    latents, _ = dataset_latents(vae, dataset)
    return Pairs(np.asarray(latents["mu"], np.float32), patterns, dataset)
