"""Training and test pairs for the reconstructors: each speckle frame as the VAE sees it, its
linear intensity (for the transmission matrix), and its input pattern, from any data set the
VAE and the generator read (a simulated set's labels.csv naming each frame's pattern, or paired
recordings: docs/data.md). Also the camera of speckle.free applied to a fibre's frames."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from common import cache
from common.training import simulation_record
from frames import PATTERN_COLUMN, ImageFolder, Normalization, normalize, preprocess
from speckle.camera import camera_counts
from speckle.simulated import PATTERN_SIZE
from speckle.slm_patterns import to_pattern

LINEAR = Normalization(mode="fixed")  # the file's full scale: intensities stay proportional
NOISE_TAG = 0xCA3E


@dataclass(frozen=True)
class Pairs:
    frames: np.ndarray  # (N, S, S) float32 in [0, 1], preprocessed as the VAE's training frames
    linear: np.ndarray  # (N, S, S) float32, proportional to the recorded intensity
    patterns: np.ndarray  # (N, 16, 16) float32 in [0, 1]
    labels: pd.DataFrame
    fingerprint: str
    simulation: dict | None
    root: Path


def load_pairs(
    data: str | Path, image_size: int, norm: Normalization, progress: bool = False
) -> Pairs:
    """Every (frame, pattern) pair of a data set. A frame without a readable pattern is an error
    naming it: a pair cannot be half there."""
    root = Path(data)
    dataset = ImageFolder(root, image_size, norm, scan_record=cache.scan_record(root))
    if PATTERN_COLUMN not in dataset.labels.columns:
        raise ValueError(
            f"{root}: labels.csv has no '{PATTERN_COLUMN}' column naming each frame's input "
            "pattern (the simulator writes one: python -m speckle mmf)"
        )
    n = len(dataset)
    frames = np.zeros((n, image_size, image_size), np.float32)
    linear = np.zeros_like(frames)
    patterns = np.zeros((n, PATTERN_SIZE, PATTERN_SIZE), np.float32)
    for i in tqdm(range(n), desc="reading pairs", unit="pair", disable=not progress):
        raw = dataset.read_raw(i)
        p = dataset.pattern(i)
        if p is None:
            name = dataset.labels[PATTERN_COLUMN].iloc[i]
            raise ValueError(f"{root / str(name)}: pattern of sample {i} cannot be read")
        frames[i] = dataset.image(i)
        linear[i] = preprocess(raw, image_size, LINEAR)[0]
        patterns[i] = to_pattern(p)
    return Pairs(
        frames,
        linear,
        patterns,
        dataset.labels.reset_index(drop=True),
        dataset.fingerprint(),
        simulation_record(root),
        root,
    )


@dataclass(frozen=True)
class Camera:
    """speckle.free's camera on a fibre's frames: `photons` is the mean photo-electron count
    per lit pixel over the whole set (one exposure for every frame, so brighter patterns give
    brighter frames), then Gaussian read noise (e- rms) and an ADC of `bit_depth` bits."""

    photons: float
    read_noise: float = 0.0
    bit_depth: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.photons > 0:
            raise ValueError(f"photons must be > 0, got {self.photons}")
        if self.read_noise < 0:
            raise ValueError(f"read noise must be >= 0, got {self.read_noise}")


def with_camera(pairs: Pairs, cam: Camera | None, norm: Normalization, mask: np.ndarray) -> Pairs:
    """The pairs as `cam` would have recorded them: counts from the linear frames, then the
    VAE's normalization. `mask` is the lit region the photon level refers to."""
    if cam is None:
        return pairs
    level = float(pairs.linear[:, mask].mean())
    scaled = pairs.linear / max(level, 1e-30)  # mean lit intensity 1
    full_well = None
    if cam.bit_depth is not None:
        full_well = float(np.percentile(scaled[:, mask], 99.9)) * cam.photons
    counts = camera_counts(
        scaled,
        np.random.default_rng([NOISE_TAG, cam.seed, 0]),
        np.random.default_rng([NOISE_TAG, cam.seed, 1]),
        cam.photons,
        cam.read_noise,
        cam.bit_depth,
        full_well,
    )
    counts = np.maximum(counts, 0.0)
    frames = np.stack([normalize(c, norm, float(counts.max()) or 1.0) for c in counts])
    return replace(pairs, frames=frames, linear=counts / cam.photons)
