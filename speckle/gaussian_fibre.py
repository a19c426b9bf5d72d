"""The Gaussian fibre: a random transmission matrix T, the fibre core as the camera images it,
and propagation I = |T x|^2 of SLM patterns to camera frames.

Each of the 256 columns of T is an independent circular complex Gaussian field, band-limited by
the fibre NA (random coefficients inside a circular pupil in k-space, then an inverse FFT) and cut
to the circular core. Any input x then gives a circular Gaussian output field, so every image is
fully developed speckle inside the core (Goodman, "Speckle Phenomena in Optics", 2007, ch. 2-3: a
sum of many independent random phasors), while two inputs give output fields correlated by their
overlap <x, x'>/|x||x'|. T depends only on `fibre_seed`. A bent fibre mixes in a second one,
T' = mu T + sqrt(1 - mu^2) T_new: the field correlation with the straight fibre is mu, the
intensity correlation mu^2 (Goodman ch. 4: intensity correlation is |field corr.|^2).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import fft as sfft

from speckle.simulated import AIRY_FWHM, FIBRE_TAG, N_INPUT

DEFAULT_FIBRE_SEED = 1234
MIN_GRAIN = 2.0  # px: finer speckle is not resolved by the camera pixels and aliases


def core_mask(size: int, core: float = 0.9) -> np.ndarray:
    """Boolean (size, size) disc of diameter core*size: the fibre core as imaged on the camera."""
    c = (size - 1) / 2
    y, x = np.indices((size, size))
    return (y - c) ** 2 + (x - c) ** 2 <= (core * size / 2) ** 2


def default_grain(size: int) -> float:
    """The speckle FWHM in output pixels when none is given: size/16, 16 grains across."""
    return size / 16


@lru_cache(maxsize=4)
def transmission_matrix(
    fibre_seed: int = DEFAULT_FIBRE_SEED,
    *,
    size: int = 64,
    grain: float | None = None,
    core: float = 0.9,
) -> np.ndarray:
    """The fibre's (size*size, 256) complex64 transmission matrix (read-only; cached per seed).

    Column j is the output field for SLM pixel j alone: circular Gaussian k-space coefficients
    inside a circular pupil of diameter D = 1.03 P / grain on a P = 2 size grid, an inverse FFT,
    the central size x size crop, zero outside the core. The grid is padded to twice the image
    because an FFT field is periodic: unpadded, grains at opposite core edges would be
    correlated through the wrap-around. Scaled so that E[sum over the core of |T_j|^2] = 1
    (a lossless fibre conserves power on average). `grain` is the speckle FWHM in output pixels,
    default size/16, so the same fibre imaged at another `size` keeps its number of modes.
    """
    grain = default_grain(size) if grain is None else float(grain)
    if size < 4:
        raise ValueError(f"size must be >= 4, got {size}")
    if not 0 < core <= 1:
        raise ValueError(f"core must be in (0, 1], got {core}")
    if grain < MIN_GRAIN:
        raise ValueError(
            f"grain must be at least {MIN_GRAIN:g} px (finer speckle aliases), got {grain:g}"
        )
    p = 2 * size
    diameter = AIRY_FWHM * p / grain
    if diameter < 1:
        raise ValueError(f"grain must be at most {AIRY_FWHM * p:.3g} px, got {grain:g}")
    k = np.fft.fftfreq(p) * p
    pupil = (k[:, None] ** 2 + k[None, :] ** 2) <= (diameter / 2) ** 2
    n_k = int(pupil.sum())
    mask = core_mask(size, core)
    rng = np.random.default_rng([FIBRE_TAG, int(fibre_seed)])
    coef = rng.standard_normal((N_INPUT, n_k, 2), dtype=np.float32)
    coef = (coef[..., 0] + 1j * coef[..., 1]) / np.sqrt(2 * n_k * int(mask.sum()))
    spectrum = np.zeros((N_INPUT, p, p), dtype=np.complex64)
    spectrum[:, pupil] = coef
    fields = sfft.ifft2(spectrum, axes=(-2, -1), norm="forward", workers=-1)
    o = (p - size) // 2
    fields = fields[:, o : o + size, o : o + size] * mask
    tm = np.ascontiguousarray(fields.reshape(N_INPUT, size * size).T).astype(np.complex64)
    tm.flags.writeable = False
    return tm


def propagate(patterns: np.ndarray, tm: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Output intensities |T x|^2 (n, S, S) float32 for SLM amplitude patterns (n, 16, 16)."""
    patterns = np.asarray(patterns, dtype=np.float32)
    x = patterns.reshape(len(patterns), int(np.prod(patterns.shape[1:])))
    if tm.ndim == 3:  # (polarizations, pixels, inputs): an unpolarized camera adds them
        return sum(propagate(patterns, t, chunk) for t in tm)
    if x.shape[1] != tm.shape[1]:
        raise ValueError(f"patterns have {x.shape[1]} pixels, the fibre takes {tm.shape[1]}")
    size = math.isqrt(tm.shape[0])
    lit = np.flatnonzero(np.any(tm != 0, axis=1))
    # x is real, so two float32 products beat one complex product (half the multiplications).
    t_re = np.ascontiguousarray(tm[lit].real.T)
    t_im = np.ascontiguousarray(tm[lit].imag.T)
    out = np.zeros((len(x), size * size), dtype=np.float32)
    block = np.zeros((chunk, x.shape[1]), dtype=np.float32)
    for s in range(0, len(x), chunk):
        # Always a full block, zero-padded: BLAS may pick its kernels, and so its summation
        # order, by the number of rows, and sample i must come out bit for bit the same
        # whatever n is (prefix-stable sets; seen differing by 2e-7 on a CPU without AVX-512).
        rows = min(chunk, len(x) - s)
        block[:rows] = x[s : s + rows]
        block[rows:] = 0.0
        re, im = block @ t_re, block @ t_im
        out[s : s + rows, lit] = (re * re + im * im)[:rows]
    return out.reshape(len(x), size, size)


def gaussian_states(meta: dict) -> list[np.ndarray]:
    """The Gaussian fibre's transmission matrices a `simulation.json` record describes: the fixed
    fibre, or the bent one, or one per state (speckle.mmf.fibre_states adds the camera gain)."""
    size, grain, core = int(meta["size"]), meta.get("grain"), float(meta.get("core", 0.9))
    tm = transmission_matrix(int(meta["fibre_seed"]), size=size, grain=grain, core=core)
    bend = meta.get("bend")
    if bend is None:
        return [tm]
    bend_seed = int(meta.get("bend_seed") or int(meta["fibre_seed"]) + 1)
    states = meta.get("states")
    count, offsets = (int(states), range(int(states))) if states else (1, [0])
    mu = np.float32(bend)
    rest = np.float32(math.sqrt(1.0 - float(bend) ** 2))
    out = []
    for s in offsets:
        other = transmission_matrix(bend_seed + s, size=size, grain=grain, core=core)
        out.append(mu * tm + rest * other)
    assert len(out) == count
    return out
