"""Free-space speckle simulator.

Free-space speckle: a random phase screen (uniform phase in [0, 2 pi) per pixel) behind a
pupil, then an FFT, I = |FFT(P exp(i phi))|^2. Factors: pupil diameter D (grain FWHM ~=
1.03 N/D pixels for a circle on an N-grid, the Airy width; Goodman ch. 4), pupil shape
(circle, ellipse, square, annulus), the number M of independent looks summed (contrast
1/sqrt(M), Goodman ch. 3), tilt (a linear phase ramp: an exact integer-pixel translation,
the Fourier shift theorem), defocus (a quadratic pupil phase), frame-to-frame decorrelation
of the screen, and a camera (shot noise, read noise, full well, ADC bits).
With an i.i.d. phase screen, tilt and defocus do not change the statistics of one frame
(any fixed pupil phase added to uniform random phases leaves them uniform); they only
matter against the same screen, i.e. for frame sequences with `decorrelation` > 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import fft as sfft

from speckle.simulated import (
    FREE_TAG,
    Range,
    SimulatedSet,
    integers_between,
    scaled_to,
    value_range,
)

PUPILS = ("circle", "ellipse", "square", "annulus")


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
    fftshifted like `speckle.stats.autocovariance`, c = 1 at zero lag."""
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


def camera(
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
    camera (photons not None): photons is the mean photo-electron count per pixel; see `camera`.
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
    d_rng = value_range((grid / 8, grid / 3) if diameter is None else diameter, "diameter")
    a_rng = value_range(aspect, "aspect")
    i_rng = value_range(inner, "inner")
    lk = value_range(looks, "looks")
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

    factor_ss, screen_ss, shot_ss, read_ss = np.random.SeedSequence([FREE_TAG, int(seed)]).spawn(4)
    # One row of uniforms per sample and separate streams for screens and camera noise: sample i
    # is the same whatever n is (prefix-stable sets).
    u = np.random.default_rng(factor_ss).random((n, 8))
    shape_code = np.array([PUPILS.index(p) for p in names])[
        integers_between(u[:, 0], 0, len(names) - 1)
    ]
    d = scaled_to(u[:, 1], d_rng)
    asp = np.where(shape_code == 1, scaled_to(u[:, 2], a_rng), 1.0)
    inn = np.where(shape_code == 3, scaled_to(u[:, 3], i_rng), 0.0)
    m_max = int(lk[1])
    m = integers_between(u[:, 4], int(lk[0]), m_max)
    tx = integers_between(u[:, 5], -int(tilt), int(tilt))
    ty = integers_between(u[:, 6], -int(tilt), int(tilt))
    w20 = scaled_to(u[:, 7], (-defocus, defocus))

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
        images = camera(
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
