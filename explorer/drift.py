"""Time as an axis: how far each frame's latent has moved from the start of the recording.

A recording's frames are in acquisition order (a stack's or an HDF5 dataset's frame index, a
folder's sorted names). The drift of frame i is ‖μ_i − μ̄_ref‖, the Euclidean distance of its
latent mean from the mean over a reference window at the start: the first minute when the frame
rate is known, else the first `REFERENCE_SHARE` of the frames. A fibre that creeps (temperature,
strain) shows a rising curve; a jump marks a sudden change of state; the spread of the reference
window's own frames gives the level that is noise.
"""

from __future__ import annotations

import numpy as np

REFERENCE_SHARE = 0.05  # without a frame rate: the first 5% of the frames
MIN_REFERENCE = 10  # frames, so that the reference mean is not one frame's noise
ROWS = 65_536  # rows per step: a memory-mapped float16 store is read a slice at a time


def reference_frames(n: int, fps: float | None = None) -> int:
    """Frames in the reference window: one minute at `fps`, else REFERENCE_SHARE of `n`; at
    least MIN_REFERENCE (or all frames when there are fewer), at most n."""
    if n < 1:
        raise ValueError("no frames")
    wanted = 60.0 * fps if fps else REFERENCE_SHARE * n
    return int(min(n, max(MIN_REFERENCE, round(wanted))))


def drift(mu: np.ndarray, reference: int) -> np.ndarray:
    """(N,) float32: each row's distance from the mean of the first `reference` rows of `mu`
    (N, dz), computed ROWS rows at a time in float64."""
    if not 1 <= reference <= len(mu):
        raise ValueError(f"reference window of {reference} frames for {len(mu)} frames")
    centre = np.asarray(mu[:reference], np.float64).mean(0)
    out = np.empty(len(mu), np.float32)
    for i in range(0, len(mu), ROWS):
        d = np.asarray(mu[i : i + ROWS], np.float64) - centre
        out[i : i + ROWS] = np.sqrt((d * d).sum(1))
    return out


def noise_level(distances: np.ndarray, reference: int, q: float = 0.95) -> float:
    """The q-quantile of the reference window's own distances: drift above it is not the
    frame-to-frame spread of the start."""
    return float(np.quantile(distances[:reference], q))


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average (window clipped to the series), for a readable curve over noisy
    frames; the edges average over the frames that exist."""
    window = max(1, min(int(window), len(values)))
    kernel = np.ones(window)
    total = np.convolve(values.astype(np.float64), kernel, mode="same")
    count = np.convolve(np.ones(len(values)), kernel, mode="same")
    return (total / count).astype(np.float32)
