"""A simulated data set (images, generating factors, patterns, metadata) and the helpers the
simulators share to draw factors from ranges.

Intensities are float32 with <I> = 1 per pixel for free-space speckle, and total output power
equal on average to the input power sum(x^2) for the fibre (energy conservation of a lossless
fibre). `write_dataset` stores them as 16-bit PNGs with one global scale factor per data set, so
relative intensities between images survive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PATTERN_SIZE = 16
N_INPUT = PATTERN_SIZE * PATTERN_SIZE
AIRY_FWHM = 1.029  # FWHM of |2 J1(v)/v|^2 in units of N/D: v = 1.616 at half maximum
# Distinct entropy tags so that sample seed s and fibre seed s never share a random stream.
FIBRE_TAG = 0xF1B
FREE_TAG = 0xF4EE
MMF_TAG = 0x3F

Range = float | tuple[float, float]


@dataclass
class SimulatedSet:
    """images (n, H, W) float32 intensities; labels one row per image (the generating factors);
    patterns (n, 16, 16) float32 SLM amplitudes in [0, 1] (mmf only); meta the kind, seeds and
    every option, written to simulation.json."""

    images: np.ndarray
    labels: pd.DataFrame
    patterns: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def value_range(value: Range, name: str) -> tuple[float, float]:
    """A fixed value or an inclusive (lo, hi) range."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a value or a (lo, hi) pair, got {value!r}")
        lo, hi = float(value[0]), float(value[1])
    else:
        lo = hi = float(value)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} range must be finite with lo <= hi, got {value!r}")
    return lo, hi


def scaled_to(u: np.ndarray, r: tuple[float, float]) -> np.ndarray:
    """Uniforms in [0, 1) mapped onto the range r."""
    return r[0] + (r[1] - r[0]) * u


def integers_between(u: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Uniforms in [0, 1) mapped onto the integers lo..hi inclusive."""
    return np.minimum(lo + np.floor(u * (hi - lo + 1)).astype(np.int64), hi)
