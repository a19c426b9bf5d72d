"""Physical speckle simulator and its command line, `python -m vae.speckle`.

Two kinds of data set, each with known generating factors in its labels:

mmf   The users' own setup. A 16x16 amplitude pattern (a scikit-learn handwritten digit, upsampled
      from 8x8, randomly shifted, rotated and scaled) on an SLM is coupled into a multimode fibre,
      described by a fixed random transmission matrix T; the camera sees I = |T x|^2 at the fibre
      output. Each of the 256 columns of T is an independent circular complex Gaussian field,
      band-limited by the fibre NA (random coefficients inside a circular pupil in k-space, then
      an inverse FFT) and cut to the circular core. Any input x then gives a circular Gaussian
      output field, so every image is fully developed speckle inside the core (Goodman, "Speckle
      Phenomena in Optics", 2007, ch. 2-3: a sum of many independent random phasors), while
      two inputs give output fields correlated by their overlap <x, x'>/|x||x'|.
      T depends only on `fibre_seed`; the sample `seed` draws digits and their placement, so a new
      seed draws new samples through the same fibre (a held-out set). `bend` mixes in a second
      fibre, T' = mu T + sqrt(1 - mu^2) T_new: the field correlation with the straight fibre is mu,
      the intensity correlation mu^2 (Goodman ch. 4: intensity correlation is |field corr.|^2).

free  Free-space speckle: a random phase screen (uniform phase in [0, 2 pi) per pixel) behind a
      pupil, then an FFT, I = |FFT(P exp(i phi))|^2. Factors: pupil diameter D (grain FWHM ~=
      1.03 N/D pixels for a circle on an N-grid, the Airy width; Goodman ch. 4), pupil shape
      (circle, ellipse, square, annulus), the number M of independent looks summed (contrast
      1/sqrt(M), Goodman ch. 3), tilt (a linear phase ramp: an exact integer-pixel translation,
      the Fourier shift theorem), defocus (a quadratic pupil phase), frame-to-frame decorrelation
      of the screen, and a camera (shot noise, read noise, full well, ADC bits).
      With an i.i.d. phase screen, tilt and defocus do not change the statistics of one frame
      (any fixed pupil phase added to uniform random phases leaves them uniform); they only
      matter against the same screen, i.e. for frame sequences with `decorrelation` > 0.

Intensities are float32 with <I> = 1 per pixel for free-space speckle, and total output power
equal on average to the input power sum(x^2) for the fibre (energy conservation of a lossless
fibre). `write_dataset` stores them as 16-bit PNGs with one global scale factor per data set, so
relative intensities between images survive.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import fft as sfft
from scipy import ndimage

from vae import __version__

PATTERN_SIZE = 16
N_INPUT = PATTERN_SIZE * PATTERN_SIZE
DEFAULT_FIBRE_SEED = 1234
PUPILS = ("circle", "ellipse", "square", "annulus")
PNG_PERCENTILE = 99.99
PNG_TARGET = 60000.0
PNG_MAX = 65535
FORMAT = "speckle-sim"
FORMAT_VERSION = 1
AIRY_FWHM = 1.029  # FWHM of |2 J1(v)/v|^2 in units of N/D: v = 1.616 at half maximum
IMAGE_EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".npy")
# Distinct entropy tags so that sample seed s and fibre seed s never share a random stream.
_FIBRE_TAG = 0xF1B
_FREE_TAG = 0xF4EE
_MMF_TAG = 0x3F

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


def _range(value: Range, name: str) -> tuple[float, float]:
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


def _scaled(u: np.ndarray, r: tuple[float, float]) -> np.ndarray:
    """Uniforms in [0, 1) mapped onto the range r."""
    return r[0] + (r[1] - r[0]) * u


def _integers(u: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Uniforms in [0, 1) mapped onto the integers lo..hi inclusive."""
    return np.minimum(lo + np.floor(u * (hi - lo + 1)).astype(np.int64), hi)


# ----------------------------------------------------------------------------- multimode fibre


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 bundled 8x8 digits as 16x16 amplitudes in [0, 1] (bilinear), and their classes."""
    images, target = _digits_8x8()
    up = ndimage.zoom(images / 16.0, (1, 2, 2), order=1)
    up = np.clip(up, 0.0, 1.0).astype(np.float32)
    up.flags.writeable = False
    target = np.asarray(target, dtype=np.int64)
    target.flags.writeable = False
    return up, target


def _digits_8x8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (images 0..16, classes), read from its data file when it is
    where load_digits keeps it: importing scikit-learn costs 1.3 s, which a fresh clone's first
    map would wait for. Otherwise through load_digits itself."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as f:
                data = np.loadtxt(f, delimiter=",", dtype=np.float64)
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def transform_patterns(
    base: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    angle: np.ndarray,
    scale: np.ndarray,
) -> np.ndarray:
    """Scale, rotate (degrees, counter-clockwise as displayed) about the centre, then shift
    (pixels; +dx right, +dy down) each (n, S, S) pattern; bilinear, zero outside. float32 in [0, 1].
    """
    base = np.asarray(base, dtype=np.float32)
    n, h, w = base.shape
    c_y, c_x = (h - 1) / 2, (w - 1) / 2
    y, x = np.indices((h, w), dtype=np.float64)
    th = np.deg2rad(np.asarray(angle, dtype=np.float64))[:, None, None]
    s = np.asarray(scale, dtype=np.float64)[:, None, None]
    yp = y[None] - c_y - np.asarray(dy, dtype=np.float64)[:, None, None]
    xp = x[None] - c_x - np.asarray(dx, dtype=np.float64)[:, None, None]
    # Inverse map of the on-screen CCW rotation (rows grow downwards): where each output pixel
    # samples the source.
    cos, sin = np.cos(th), np.sin(th)
    xs = (xp * cos - yp * sin) / s + c_x
    ys = (xp * sin + yp * cos) / s + c_y
    idx = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], xs.shape)
    out = ndimage.map_coordinates(base, [idx, ys, xs], order=1, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def core_mask(size: int, core: float = 0.9) -> np.ndarray:
    """Boolean (size, size) disc of diameter core*size: the fibre core as imaged on the camera."""
    c = (size - 1) / 2
    y, x = np.indices((size, size))
    return (y - c) ** 2 + (x - c) ** 2 <= (core * size / 2) ** 2


def _default_grain(size: int) -> float:
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
    grain = _default_grain(size) if grain is None else float(grain)
    if size < 4:
        raise ValueError(f"size must be >= 4, got {size}")
    if not 0 < core <= 1:
        raise ValueError(f"core must be in (0, 1], got {core}")
    p = 2 * size
    diameter = AIRY_FWHM * p / grain
    if not 1 <= diameter <= p:
        raise ValueError(f"grain must be between {AIRY_FWHM:.3g} and {AIRY_FWHM * p:.3g} px")
    k = np.fft.fftfreq(p) * p
    pupil = (k[:, None] ** 2 + k[None, :] ** 2) <= (diameter / 2) ** 2
    n_k = int(pupil.sum())
    mask = core_mask(size, core)
    rng = np.random.default_rng([_FIBRE_TAG, int(fibre_seed)])
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


def simulate_mmf(
    n: int,
    seed: int,
    *,
    size: int = 64,
    fibre_seed: int = DEFAULT_FIBRE_SEED,
    shift: float = 2.0,
    rotation: float = 15.0,
    scale: tuple[float, float] | float = (0.9, 1.1),
    bend: float | None = None,
    bend_seed: int | None = None,
    grain: float | None = None,
    core: float = 0.9,
) -> SimulatedSet:
    """Digits on an SLM through a multimode fibre; see the module docstring.

    Per sample: a digit drawn uniformly from the 1797 bundled ones, shift dx, dy uniform in
    [-shift, shift] px (continuous), rotation uniform in [-rotation, rotation] degrees, scale
    uniform in `scale`. `bend` mu in [0, 1] mixes in the fibre of `bend_seed` (default
    fibre_seed + 1): mu = 1 is the straight fibre, mu = 0 the other one.
    Labels: digit, source_index, dx, dy, angle, scale, power (sum of x^2, the input power).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if shift < 0 or rotation < 0:
        raise ValueError("shift and rotation are half-widths and must be >= 0")
    sc = _range(scale, "scale")
    if sc[0] <= 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    if bend is not None and not 0 <= bend <= 1:
        raise ValueError(f"bend must be in [0, 1], got {bend}")
    grain = _default_grain(size) if grain is None else float(grain)
    bend_seed = fibre_seed + 1 if bend_seed is None else bend_seed

    base, target = _digits()
    # One row of uniforms per sample: sample i is the same whatever n is (prefix-stable sets).
    u = np.random.default_rng([_MMF_TAG, int(seed)]).random((n, 5))
    source = np.minimum((u[:, 0] * len(base)).astype(np.int64), len(base) - 1)
    dx = _scaled(u[:, 1], (-shift, shift))
    dy = _scaled(u[:, 2], (-shift, shift))
    angle = _scaled(u[:, 3], (-rotation, rotation))
    factor = _scaled(u[:, 4], sc)
    patterns = transform_patterns(base[source], dx, dy, angle, factor)

    tm = transmission_matrix(fibre_seed, size=size, grain=grain, core=core)
    if bend is not None:
        other = transmission_matrix(bend_seed, size=size, grain=grain, core=core)
        mu = np.float32(bend)
        tm = mu * tm + np.float32(math.sqrt(1.0 - bend * bend)) * other
    images = propagate(patterns, tm)

    labels = pd.DataFrame(
        {
            "digit": target[source],
            "source_index": source,
            "dx": dx,
            "dy": dy,
            "angle": angle,
            "scale": factor,
            "power": (patterns.astype(np.float64) ** 2).sum(axis=(1, 2)),
        }
    )
    meta = {
        "kind": "mmf",
        "n": n,
        "seed": seed,
        "size": size,
        "fibre_seed": fibre_seed,
        "shift": shift,
        "rotation": rotation,
        "scale": list(sc),
        "bend": bend,
        "bend_seed": bend_seed if bend is not None else None,
        "grain": grain,
        "core": core,
        "pattern_size": PATTERN_SIZE,
        "patterns": "sklearn load_digits 8x8, bilinear to 16x16, amplitude in [0, 1]",
    }
    return SimulatedSet(images=images, labels=labels, patterns=patterns, meta=meta)


# ----------------------------------------------------------------------------- free space


def _pupil_masks(
    grid: int,
    diameter: np.ndarray,
    shape: np.ndarray,
    aspect: np.ndarray,
    inner: np.ndarray,
) -> np.ndarray:
    """(n, grid, grid) bool pupils centred on the grid. diameter is the x extent in pixels;
    ellipse y extent = aspect * diameter; annulus hole = inner * diameter."""
    u = np.arange(grid) - (grid - 1) / 2
    yy, xx = u[None, :, None], u[None, None, :]
    r = (diameter / 2)[:, None, None]
    a = aspect[:, None, None]
    s = shape[:, None, None]
    disc = xx**2 + yy**2 <= r**2
    ellipse = (xx / r) ** 2 + (yy / (a * r)) ** 2 <= 1
    square = (np.abs(xx) <= r) & (np.abs(yy) <= r)
    annulus = disc & (xx**2 + yy**2 >= (inner[:, None, None] * r) ** 2)
    return np.select(
        [s == 0, s == 1, s == 2, s == 3],
        [disc, ellipse, square, annulus],
        default=False,
    )


def pupil_mask(
    grid: int,
    diameter: float,
    pupil: str = "circle",
    *,
    aspect: float = 1.0,
    inner: float = 0.5,
) -> np.ndarray:
    """One (grid, grid) bool pupil: circle of diameter D; ellipse D wide, aspect*D tall; square
    of side D; annulus of outer diameter D and hole inner*D."""
    code = PUPILS.index(pupil)
    return _pupil_masks(
        grid, np.array([float(diameter)]), np.array([code]), np.array([aspect]), np.array([inner])
    )[0]


def expected_autocovariance(mask: np.ndarray) -> np.ndarray:
    """Theoretical normalized intensity autocovariance |mu|^2 of fully developed speckle behind a
    uniformly lit pupil (Goodman ch. 4: mu is the Fourier transform of the pupil intensity),
    fftshifted like `vae.stats.autocovariance`, c = 1 at zero lag."""
    p = np.asarray(mask, dtype=np.float64)
    mu = np.fft.ifft2(p * p) * p.size / (p * p).sum()
    return np.fft.fftshift(np.abs(mu) ** 2)


def free_intensity(
    screens: np.ndarray,
    mask: np.ndarray,
    *,
    tilt: tuple[int, int] = (0, 0),
    defocus: float = 0.0,
    diameter: float | None = None,
) -> np.ndarray:
    """Mean intensity of the looks `screens` (M, N, N complex) behind one pupil `mask` (N, N).

    tilt = (tx, ty) translates the speckle by exactly (tx, ty) pixels (circularly): a linear
    phase exp(2 pi i (tx x + ty y)/N) over the pupil is a shift after the FFT. defocus is the
    quadratic pupil phase 2 pi W (r / (D/2))^2 in waves W at radius D/2 (D = `diameter`, default
    the mask's width). Normalized so that <I> = 1.
    """
    screens = np.asarray(screens)
    if screens.ndim == 2:
        screens = screens[None]
    n = mask.shape[-1]
    if diameter is None:
        diameter = float(np.any(mask, axis=0).sum())
    pupil = _pupil_phase(
        mask[None],
        np.array([tilt[0]]),
        np.array([tilt[1]]),
        np.array([defocus]),
        np.array([diameter]),
        n,
    )[0]
    field = sfft.fft2(pupil[None] * screens.astype(np.complex64), workers=-1)
    return ((field.real**2 + field.imag**2).mean(axis=0) / mask.sum()).astype(np.float32)


def _pupil_phase(
    masks: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    defocus: np.ndarray,
    diameter: np.ndarray,
    period: int,
) -> np.ndarray:
    """Complex pupils: mask * exp(i (tilt ramp + defocus)) on the (n, G, G) mask grid. The ramp
    has period `period` output pixels so that tilt is an integer shift of the output grid."""
    g = masks.shape[-1]
    if not (np.any(tx) or np.any(ty) or np.any(defocus)):
        return masks.astype(np.complex64)
    idx = np.arange(g)
    u = idx - (g - 1) / 2
    ramp = (
        tx[:, None, None] * idx[None, None, :] + ty[:, None, None] * idx[None, :, None]
    ) / period
    rho2 = (u[None, None, :] ** 2 + u[None, :, None] ** 2) / (diameter[:, None, None] / 2) ** 2
    cycles = np.mod(ramp + defocus[:, None, None] * rho2, 1.0).astype(np.float32)
    return _cis(cycles) * masks


def _cis(cycles: np.ndarray) -> np.ndarray:
    """exp(2 pi i cycles) as complex64; cos and sin in float32 are ~10x faster than complex exp."""
    angle = np.float32(2 * np.pi) * cycles
    out = np.empty(cycles.shape, dtype=np.complex64)
    out.real = np.cos(angle)
    out.imag = np.sin(angle)
    return out


def _parse_pupils(pupil: str | Sequence[str]) -> list[str]:
    names = [p.strip() for p in pupil.split(",")] if isinstance(pupil, str) else list(pupil)
    bad = [p for p in names if p not in PUPILS]
    if not names or bad:
        raise ValueError(f"pupil must be among {', '.join(PUPILS)}, got {pupil!r}")
    return names


def _camera(
    images: np.ndarray,
    shot_rng: np.random.Generator,
    read_rng: np.random.Generator,
    photons: float,
    read_noise: float,
    bit_depth: int | None,
    full_well: float | None,
) -> np.ndarray:
    """Photo-electrons (float32) seen by a camera, QE 1: Poisson shot noise around photons * I,
    clipped at the full well, plus Gaussian read noise (e-), then an ADC of `bit_depth` bits whose
    full scale is the full well (gain 1 e-/ADU without a full well), reported back in e-. Without
    an ADC nothing is clipped at 0: read noise can make a pixel negative, as in a bias-subtracted
    frame."""
    e = shot_rng.poisson(images.astype(np.float64) * photons).astype(np.float64)
    if full_well is not None:
        e = np.minimum(e, full_well)
    if read_noise > 0:
        e = e + read_rng.normal(0.0, read_noise, e.shape)
    if bit_depth is not None:
        levels = 2**bit_depth - 1
        gain = full_well / levels if full_well is not None else 1.0
        e = np.clip(np.rint(e / gain), 0, levels) * gain
    return e.astype(np.float32)


def simulate_free(
    n: int,
    seed: int,
    *,
    size: int = 64,
    grid: int | None = None,
    diameter: Range | None = None,
    pupil: str | Sequence[str] = "circle",
    aspect: Range = 0.5,
    inner: Range = 0.5,
    looks: int | tuple[int, int] = 1,
    tilt: int = 0,
    defocus: float = 0.0,
    decorrelation: float = 0.0,
    oversample: int = 1,
    photons: float | None = None,
    read_noise: float = 0.0,
    bit_depth: int | None = None,
    full_well: float | None = None,
) -> SimulatedSet:
    """Free-space speckle with known factors; see the module docstring.

    grid: the N x N simulation grid (default size); the central size x size part is kept.
        diameter D is in pixels of that grid, so the grain FWHM is ~1.03 N/D output pixels. D
        must fit (D <= N); above N/2 the grain is under 2 px and the intensity, whose spectrum is
        twice as wide as the field's, is aliased by point sampling.
    oversample q: zero-pads the pupil plane q times and bins q x q output pixels, modelling
        camera pixels that integrate light (100 % fill factor) instead of sampling points; this
        lowers the contrast of grains near a pixel in size, as a real camera does.
    Ranges: diameter, aspect, inner take a value or (lo, hi), uniform per sample (diameter
        default (N/8, N/3)); looks a value or inclusive (lo, hi) integers; pupil one name or
        several, chosen uniformly per sample. tilt T: tilt_x, tilt_y uniform integers in [-T, T].
        defocus W: uniform in [-W, W] waves at the pupil radius.
    decorrelation rho: frame k's complex screen is rho * screen(k-1) + sqrt(1-rho^2) * new
        (per look), so consecutive frames have field correlation rho; 0 = independent frames,
        1 = one frozen screen for the whole set.
    camera (photons not None): photons is the mean photo-electron count per pixel; see `_camera`.
    Labels: frame, pupil, diameter, aspect (1 unless ellipse), inner (0 unless annulus), looks,
    tilt_x, tilt_y, defocus.
    """
    grid = size if grid is None else int(grid)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if grid < size:
        raise ValueError(f"grid ({grid}) must be >= size ({size})")
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample}")
    d_rng = _range((grid / 8, grid / 3) if diameter is None else diameter, "diameter")
    a_rng = _range(aspect, "aspect")
    i_rng = _range(inner, "inner")
    lk = _range(looks, "looks")
    names = _parse_pupils(pupil)
    if d_rng[0] < 1:
        raise ValueError(f"diameter must be >= 1 px, got {diameter!r}")
    tallest = d_rng[1] * (max(a_rng[1], 1.0) if "ellipse" in names else 1.0)
    if tallest > grid:
        raise ValueError(f"the pupil ({tallest:g} px) must fit in the grid ({grid} px)")
    if a_rng[0] <= 0 or not 0 <= i_rng[0] <= i_rng[1] < 1:
        raise ValueError("aspect must be > 0 and inner in [0, 1)")
    if lk[0] < 1 or lk[0] != int(lk[0]) or lk[1] != int(lk[1]):
        raise ValueError(f"looks must be integers >= 1, got {looks!r}")
    if tilt < 0 or tilt != int(tilt) or defocus < 0:
        raise ValueError("tilt (integer) and defocus are half-widths and must be >= 0")
    if not 0 <= decorrelation <= 1:
        raise ValueError(f"decorrelation must be in [0, 1], got {decorrelation}")
    if photons is None and (read_noise or bit_depth is not None or full_well is not None):
        raise ValueError("camera options (read noise, bit depth, full well) need photons")
    if photons is not None and not photons > 0:
        raise ValueError(f"photons must be > 0, got {photons}")
    if bit_depth is not None and not 1 <= bit_depth <= 32:
        raise ValueError(f"bit depth must be in 1..32, got {bit_depth}")

    factor_ss, screen_ss, shot_ss, read_ss = np.random.SeedSequence([_FREE_TAG, int(seed)]).spawn(4)
    # One row of uniforms per sample and separate streams for screens and camera noise: sample i
    # is the same whatever n is (prefix-stable sets).
    u = np.random.default_rng(factor_ss).random((n, 8))
    shape_code = np.array([PUPILS.index(p) for p in names])[_integers(u[:, 0], 0, len(names) - 1)]
    d = _scaled(u[:, 1], d_rng)
    asp = np.where(shape_code == 1, _scaled(u[:, 2], a_rng), 1.0)
    inn = np.where(shape_code == 3, _scaled(u[:, 3], i_rng), 0.0)
    m_max = int(lk[1])
    m = _integers(u[:, 4], int(lk[0]), m_max)
    tx = _integers(u[:, 5], -int(tilt), int(tilt))
    ty = _integers(u[:, 6], -int(tilt), int(tilt))
    w20 = _scaled(u[:, 7], (-defocus, defocus))

    screen_rng = np.random.default_rng(screen_ss)
    fine = grid * oversample
    o = (fine - grid) // 2
    crop = (grid - size) // 2
    chunk = max(1, (1 << 21) // (m_max * fine * fine))  # ~16 MB of complex64 fields a chunk
    rho = float(decorrelation)
    keep = np.float32(math.sqrt(1.0 - rho * rho))
    prev: np.ndarray | None = None
    images = np.empty((n, size, size), dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        c = e - s
        phases = screen_rng.random((c, m_max, grid, grid), dtype=np.float32)
        screens = _cis(phases)
        if rho > 0:
            for k in range(c):
                if prev is not None:
                    screens[k] = np.float32(rho) * prev + keep * screens[k]
                prev = screens[k]
        masks = _pupil_masks(grid, d[s:e], shape_code[s:e], asp[s:e], inn[s:e])
        pupils = _pupil_phase(masks, tx[s:e], ty[s:e], w20[s:e], d[s:e], grid)
        fields = np.zeros((c, m_max, fine, fine), dtype=np.complex64)
        fields[..., o : o + grid, o : o + grid] = pupils[:, None] * screens
        out = sfft.fft2(fields, axes=(-2, -1), workers=-1)
        inten = out.real**2 + out.imag**2
        # Looks beyond a sample's M get weight 0; 1/(M sum|P|^2) makes <I> = 1 per pixel.
        weight = (np.arange(m_max)[None, :] < m[s:e, None]) / (
            m[s:e, None] * masks.sum(axis=(-2, -1))[:, None]
        )
        img = np.einsum("cmyx,cm->cyx", inten, weight.astype(np.float32))
        if oversample > 1:
            img = img.reshape(c, grid, oversample, grid, oversample).mean(axis=(2, 4))
        images[s:e] = img[:, crop : crop + size, crop : crop + size]

    if photons is not None:
        images = _camera(
            images,
            np.random.default_rng(shot_ss),
            np.random.default_rng(read_ss),
            photons,
            read_noise,
            bit_depth,
            full_well,
        )

    labels = pd.DataFrame(
        {
            "frame": np.arange(n),
            "pupil": np.array(PUPILS, dtype=object)[shape_code],
            "diameter": d,
            "aspect": asp,
            "inner": inn,
            "looks": m,
            "tilt_x": tx,
            "tilt_y": ty,
            "defocus": w20,
        }
    )
    meta = {
        "kind": "free",
        "n": n,
        "seed": seed,
        "size": size,
        "grid": grid,
        "diameter": list(d_rng),
        "pupil": names,
        "aspect": list(a_rng),
        "inner": list(i_rng),
        "looks": [int(lk[0]), int(lk[1])],
        "tilt": int(tilt),
        "defocus": defocus,
        "decorrelation": rho,
        "oversample": oversample,
        "photons": photons,
        "read_noise": read_noise,
        "bit_depth": bit_depth,
        "full_well": full_well,
    }
    return SimulatedSet(images=images, labels=labels, patterns=None, meta=meta)


# ----------------------------------------------------------------------------- writing


def png_scale(images: np.ndarray) -> float:
    """The one factor that maps intensities to 16-bit PNG values for a whole data set: the
    99.99th percentile goes to 60000, leaving headroom; rarer brighter pixels clip at 65535."""
    if images.size == 0:
        return 1.0
    top = float(np.percentile(images, PNG_PERCENTILE))
    if not top > 0:
        top = float(images.max())
    return PNG_TARGET / top if top > 0 else 1.0


WRITE_THREADS = 4


def _save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    # zlib level 1: measured on simulated 16-bit speckle, 1.21 -> 0.78 ms a frame for files 2%
    # larger (speckle barely compresses); a first start writes 2000 frames and patterns.
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def write_dataset(sim: SimulatedSet, out: Path, *, overwrite: bool = False) -> None:
    """Write DIR/images/NNNNNN.png (16-bit), DIR/patterns/NNNNNN.png (8-bit, mmf), labels.csv and
    simulation.json. Built in a temporary sibling directory and renamed into place, so a killed
    run never leaves a half-written data set under `out`. An existing non-empty `out` is an error
    unless `overwrite`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: exists and is not empty (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        scale = png_scale(sim.images)
        n = len(sim.images)
        (tmp / "images").mkdir()
        files = [f"images/{i:06d}.png" for i in range(n)]

        def save_image(i: int) -> None:
            q = np.clip(np.rint(sim.images[i].astype(np.float64) * scale), 0, PNG_MAX)
            _save_png(q.astype(np.uint16), tmp / files[i])

        def save_pattern(i: int) -> None:
            p = np.clip(np.rint(sim.patterns[i].astype(np.float64) * 255), 0, 255)
            _save_png(p.astype(np.uint8), tmp / pfiles[i])

        columns: dict[str, Any] = {"file": files}
        jobs = [save_image]
        if sim.patterns is not None:
            (tmp / "patterns").mkdir()
            pfiles = [f"patterns/{i:06d}.png" for i in range(n)]
            columns["pattern"] = pfiles
            jobs.append(save_pattern)
        # PNG encoding (zlib) and file writes release the GIL: threads overlap them, which a
        # fresh clone's first start waits for (2000 images and patterns: 1.2–4.2 s serially).
        with ThreadPoolExecutor(WRITE_THREADS) as pool:
            for job in jobs:
                list(pool.map(job, range(n)))
        labels = pd.concat([pd.DataFrame(columns), sim.labels.reset_index(drop=True)], axis=1)
        labels.to_csv(tmp / "labels.csv", index=False)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": __version__,
            **sim.meta,
            "n": n,
            "shape": list(sim.images.shape[1:]),
            "intensity_scale": scale,
            "intensity_scale_note": (
                f"png = round(I * intensity_scale), clipped to {PNG_MAX}; "
                f"the {PNG_PERCENTILE}th percentile of the whole set maps to {PNG_TARGET:g}"
            ),
            "pattern_scale": 255 if sim.patterns is not None else None,
        }
        (tmp / "simulation.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- stats reader


def _read_for_stats(path: Path) -> np.ndarray:
    """The float64 image in one file, (H, W), or an (n, H, W) stack from a .npy. PNG/TIFF/JPEG/BMP
    via PIL (8/16-bit, 32-bit int or float; colour to luminance; first frame of a multi-frame
    file). Small on purpose: vae.data has the full loader."""
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim not in (2, 3) or arr.dtype.kind not in "buif":
            raise ValueError(
                f"expected a 2-D image or (n, H, W) stack, got {arr.dtype} {arr.shape}"
            )
        return arr.astype(np.float64)
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "I", "F") and not im.mode.startswith("I;16"):
            im = im.convert("L")
        arr = np.asarray(im)
    if arr.ndim != 2 or arr.dtype.kind not in "uif":
        raise ValueError(f"unsupported pixel data {arr.dtype} {arr.shape}")
    return arr.astype(np.float64)


def _find_images(paths: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS
            )
        else:
            found.append(p)
    return found


def _jsonable(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _stats_command(paths: Sequence[str], as_json: bool, window: int) -> int:
    from vae.stats import STAT_KEYS, speckle_stats

    files = _find_images(paths)
    if not files:
        print("vae.speckle stats: error: no image files found", file=sys.stderr)
        return 1
    failed = 0
    if not as_json:
        print("\t".join(("file", *STAT_KEYS)))
    for f in files:
        try:
            if not f.exists():
                raise FileNotFoundError("no such file")
            arr = _read_for_stats(f)
            stack = arr.ndim == 3
            rows = []
            for i, img in enumerate(arr if stack else arr[None]):
                row: dict[str, Any] = {"file": str(f)}
                if stack:
                    row["index"] = i
                row["height"], row["width"] = img.shape
                row.update({k: _jsonable(v) for k, v in speckle_stats(img, window).items()})
                rows.append(row)
        except Exception as exc:  # one bad file must not stop the others
            failed += 1
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"vae.speckle stats: {f}: {msg}", file=sys.stderr)
            continue
        for row in rows:
            if as_json:
                print(json.dumps(row), flush=True)
            else:
                name = row["file"] + (f"[{row['index']}]" if "index" in row else "")
                vals = ("nan" if row[k] is None else f"{row[k]:.4g}" for k in STAT_KEYS)
                print("\t".join((name, *vals)), flush=True)
    return 1 if failed else 0


# ----------------------------------------------------------------------------- CLI


def _pair_arg(text: str) -> tuple[float, float] | float:
    """'V' or 'LO:HI' (also 'LO,HI')."""
    parts = text.replace(",", ":").split(":")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected a number or LO:HI, got {text!r}") from None
    if len(vals) == 1:
        return vals[0]
    if len(vals) == 2:
        return (vals[0], vals[1])
    raise ValueError(f"expected a number or LO:HI, got {text!r}")


def _build_parser():
    import argparse

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message: str):  # argparse prints the whole usage; keep errors one line
            self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def pair(text: str):
        try:
            return _pair_arg(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = OneLineParser(
        prog="python -m vae.speckle",
        description="Simulate laser speckle data sets (multimode fibre or free space) with known "
        "generating factors, or measure speckle statistics of images.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def common(p) -> None:
        p.add_argument("--n", type=int, required=True, help="number of images")
        p.add_argument("--seed", type=int, required=True, help="sample seed")
        p.add_argument("--out", type=Path, required=True, help="output directory")
        p.add_argument("--size", type=int, default=64, help="output image size (pixels)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    mmf = sub.add_parser(
        "mmf",
        formatter_class=fmt,
        help="digits on an SLM through a multimode fibre",
        description="Handwritten digits (16x16 amplitude on an SLM) through a fixed random "
        "multimode fibre; a new --seed draws new samples through the same fibre.",
    )
    common(mmf)
    mmf.add_argument("--fibre-seed", type=int, default=DEFAULT_FIBRE_SEED, help="fibre (T) seed")
    mmf.add_argument("--shift", type=float, default=2.0, help="max |dx|, |dy| in SLM pixels")
    mmf.add_argument("--rotation", type=float, default=15.0, help="max |angle| in degrees")
    mmf.add_argument("--scale", type=pair, default=(0.9, 1.1), help="scale range LO:HI")
    mmf.add_argument("--bend", type=float, default=None, metavar="MU", help="fibre bend mu")
    mmf.add_argument("--bend-seed", type=int, default=None, help="bent part (fibre seed + 1)")
    mmf.add_argument("--grain", type=float, default=None, help="grain FWHM px (size/16)")
    mmf.add_argument("--core", type=float, default=0.9, help="core diameter / image width")

    free = sub.add_parser(
        "free",
        formatter_class=fmt,
        help="free-space speckle with controlled factors",
        description="Random phase screen behind a pupil, then an FFT. Ranges are V or LO:HI, "
        "drawn uniformly per image and recorded in labels.csv.",
    )
    common(free)
    free.add_argument("--grid", type=int, default=None, help="simulation grid N (= size)")
    free.add_argument(
        "--diameter", type=pair, default=None, help="pupil D in grid px, V or LO:HI (N/8:N/3)"
    )
    free.add_argument("--pupil", default="circle", help=f"one or more of {','.join(PUPILS)}")
    free.add_argument("--aspect", type=pair, default=0.5, help="ellipse height/width")
    free.add_argument("--inner", type=pair, default=0.5, help="annulus hole/outer diameter")
    free.add_argument("--looks", type=pair, default=1, help="independent looks M, V or LO:HI")
    free.add_argument("--tilt", type=int, default=0, help="max |tilt| in output pixels")
    free.add_argument("--defocus", type=float, default=0.0, help="max |defocus| in waves")
    free.add_argument("--decorrelation", type=float, default=0.0, help="frame-to-frame rho")
    free.add_argument("--oversample", type=int, default=1, help="camera pixel integration q")
    free.add_argument("--photons", type=float, default=None, help="mean e- per pixel (camera)")
    free.add_argument("--read-noise", type=float, default=0.0, help="read noise, e- rms")
    free.add_argument("--bit-depth", type=int, default=None, help="ADC bits")
    free.add_argument("--full-well", type=float, default=None, help="saturation, e-")

    st = sub.add_parser(
        "stats",
        formatter_class=fmt,
        help="speckle statistics of images",
        description="Contrast, grain size and intensity statistics of images (PNG/TIFF/JPEG/BMP "
        "or .npy; directories are searched recursively). A bad file is reported on stderr and "
        "the rest continue; the exit code is 1 if any failed.",
    )
    st.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    st.add_argument("--json", action="store_true", help="one JSON object per line per image")
    st.add_argument("--window", type=int, default=7, help="local contrast window (pixels)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "stats":
            try:
                return _stats_command(args.paths, args.json, args.window)
            except BrokenPipeError:  # `... | head`: the reader is gone, nothing left to say
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 1
        if args.command == "mmf":
            sim = simulate_mmf(
                args.n,
                args.seed,
                size=args.size,
                fibre_seed=args.fibre_seed,
                shift=args.shift,
                rotation=args.rotation,
                scale=args.scale,
                bend=args.bend,
                bend_seed=args.bend_seed,
                grain=args.grain,
                core=args.core,
            )
        else:
            sim = simulate_free(
                args.n,
                args.seed,
                size=args.size,
                grid=args.grid,
                diameter=args.diameter,
                pupil=args.pupil,
                aspect=args.aspect,
                inner=args.inner,
                looks=args.looks,
                tilt=args.tilt,
                defocus=args.defocus,
                decorrelation=args.decorrelation,
                oversample=args.oversample,
                photons=args.photons,
                read_noise=args.read_noise,
                bit_depth=args.bit_depth,
                full_well=args.full_well,
            )
        sim.meta["command"] = [
            "python",
            "-m",
            "vae.speckle",
            *(sys.argv[1:] if argv is None else argv),
        ]
        write_dataset(sim, args.out, overwrite=args.overwrite)
    except (ValueError, OSError) as exc:
        print(f"python -m vae.speckle {args.command}: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(sim.images)} images to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
