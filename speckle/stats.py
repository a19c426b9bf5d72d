"""Speckle statistics of intensity images: contrast, intensity distribution and grain size.

The reference is fully developed speckle (Goodman, "Speckle Phenomena in Optics", 2007): the field
is a circular complex Gaussian variable, so the intensity is exponentially distributed,
p(I) = exp(-I/<I>)/<I>, and the contrast K = sigma_I/<I> is exactly 1 (ch. 3). A sum of M
independent patterns follows a gamma law with K = 1/sqrt(M) (ch. 3). The grain size is the FWHM of
the normalized intensity autocovariance c(d) = |mu(d)|^2, mu being the Fourier transform of the
pupil intensity (ch. 4); for a uniformly filled circular pupil of diameter D on an N-point FFT grid
that is the Airy pattern |2 J1(v)/v|^2 with FWHM ~= 1.03 N/D pixels.

Every function takes one 2-D image (any real dtype; computed in float64) and returns plain floats;
the `*_batch` variants take an (n, H, W) stack and return one value per image.

Degenerate input never raises (only a wrong number of dimensions does):
- an image whose mean is not positive and finite (all zeros, negative, nan) has no intensity
  statistics: every statistic but the plain `mean` is nan, and `normalized_intensity` is all nan;
- a constant positive image has contrast 0 and local contrast 0, but an undefined autocovariance,
  so its grain sizes and anisotropy are nan; `ks_exp` and `exp_w1` are still computed;
- a grain whose autocovariance never falls to one half within half the image is not measurable:
  that FWHM is nan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

DEFAULT_WINDOW = 7
HALF = 0.5
LOCAL_DARK = 1e-6  # local means below this fraction of the image mean count as no light
LIT_FRACTION = 0.1  # lit region: mean image above this fraction of its 99th percentile
MASK_MIN_FRAMES = 16  # fewer frames than this: the mean image is smoothed before thresholding
MASK_SMOOTH = 9  # px, the smoothing window then (a few grains)
SMOOTHED_FRACTION = 0.2  # threshold after smoothing: core IoU 0.92 on simulated fibre frames
MIN_OVERLAP = 0.05  # autocovariance lags whose pixel overlap is below this fraction are not used


@dataclass(frozen=True)
class GrainSize:
    """Speckle grain FWHM in pixels of the image as given, from the intensity autocovariance.

    fwhm_x, fwhm_y: along the row and the column through zero lag; fwhm_r: from the azimuthal
    average; anisotropy: max(fwhm_x, fwhm_y) / min(fwhm_x, fwhm_y) (1 for round grains). The
    axis ratio rather than second moments, because it is what an elliptical pupil sets directly
    (FWHM_x / FWHM_y = D_y / D_x) and it does not depend on how far the autocovariance tails are
    integrated.
    """

    fwhm_x: float
    fwhm_y: float
    fwhm_r: float
    anisotropy: float


def _image(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {a.shape}")
    return a


def _batch(imgs: np.ndarray) -> np.ndarray:
    a = np.asarray(imgs, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"expected an (n, H, W) stack, got shape {a.shape}")
    return a


def _mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """The lit-region mask as a boolean (H, W) array; all True when None."""
    if mask is None:
        return np.ones(shape[-2:], dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(shape[-2:]):
        raise ValueError(f"mask shape {m.shape} does not match images {tuple(shape[-2:])}")
    return m


def _lit(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The pixels of each image inside the mask, (n, P)."""
    return a[:, _mask(mask, a.shape)]


def _means(a: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image mean over the lit region, nan where it is not positive and finite (no intensity
    statistics there)."""
    v = _lit(a, mask)
    m = v.mean(axis=1) if v.shape[1] else np.full(len(a), np.nan)
    return np.where(np.isfinite(m) & (m > 0), m, np.nan)


def _flat(a: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Constant images, tested exactly: their std is not always exactly 0 in floating point."""
    v = _lit(a, mask)
    return np.ptp(v, axis=1) == 0 if v.shape[1] else np.ones(len(a), dtype=bool)


def lit_mask(images: np.ndarray, fraction: float = LIT_FRACTION) -> np.ndarray:
    """The lit region of a set of frames: where their mean image exceeds `fraction` of its
    99th percentile, with holes filled.

    A fibre's frames share a dark cladding around the core; their mean image is smooth (the
    speckle averages out) and drops to zero outside the core, so a low threshold finds the core.
    Frames lit everywhere (free-space speckle) give a mask of the whole frame. One frame alone
    works too, but its own speckle holds dark pixels: those are filled as holes, and the result is
    closed over a few pixels.
    """
    a = np.asarray(images, dtype=np.float64)
    mean = a if a.ndim == 2 else a.reshape(-1, *a.shape[-2:]).mean(axis=0)
    if a.ndim == 2 or len(a) < MASK_MIN_FRAMES:  # few frames: smooth their speckle away first
        mean = ndimage.uniform_filter(mean, size=MASK_SMOOTH, mode="nearest")
        # The box filter spreads the core's edge over its width and leaves the inside rough
        # (99th percentile about twice the mean): a higher threshold puts the edge back.
        fraction = max(fraction, SMOOTHED_FRACTION)
    top = np.percentile(mean, 99)
    if not (np.isfinite(top) and top > 0):
        return np.ones(mean.shape, dtype=bool)
    lit = ndimage.binary_fill_holes(mean > fraction * top)
    if not lit.any():
        return np.ones(mean.shape, dtype=bool)
    return lit


def contrast_batch(imgs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    a = _batch(imgs)
    v = _lit(a, mask)
    return np.where(_flat(a, mask), 0.0, v.std(axis=1)) / _means(a, mask)


def contrast(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Global speckle contrast K = sigma/mean over the lit region (1 for fully developed
    speckle)."""
    return float(contrast_batch(_image(img)[None], mask)[0])


def local_contrast_map_batch(imgs: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    a = _batch(imgs)
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window}")
    size = (1, int(window), int(window))
    m = ndimage.uniform_filter(a, size=size, mode="reflect")
    m2 = ndimage.uniform_filter(a * a, size=size, mode="reflect")
    # E[x^2] - E[x]^2 can round slightly below zero in flat regions.
    var = np.clip(m2 - m * m, 0.0, None)
    var = np.where(_flat(a)[:, None, None], 0.0, var)
    # The running sums of uniform_filter leave ~1e-16 * max residues in dark regions (a fibre's
    # surround); a window that dark has no light to measure a contrast of.
    dark = m <= LOCAL_DARK * np.abs(a).mean(axis=(-2, -1), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dark, np.nan, np.sqrt(var) / m)


def local_contrast_map(img: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """Map of sigma/mean in a sliding window x window box (reflected at the edges); nan where the
    local mean is below 1e-6 of the image mean (no light).

    The window is always an argument, never derived from the image: local contrast depends on
    how many grains the window holds, so two images compare only with the same window.
    """
    return local_contrast_map_batch(_image(img)[None], window)[0]


def _inside(mask: np.ndarray | None, shape: tuple[int, ...], window: int) -> np.ndarray:
    """Pixels whose whole window lies in the lit region (a window straddling the core's edge
    mixes speckle with dark cladding); the mask itself where no window fits."""
    m = _mask(mask, shape)
    if mask is None:
        return m
    full = (
        ndimage.uniform_filter(m.astype(np.float64), size=int(window), mode="constant") > 1 - 1e-9
    )
    return full if full.any() else m


def local_contrast_batch(
    imgs: np.ndarray, window: int = DEFAULT_WINDOW, mask: np.ndarray | None = None
) -> np.ndarray:
    a = _batch(imgs)
    k = local_contrast_map_batch(a, window)
    valid = np.isfinite(k) & _inside(mask, a.shape, window)
    n_valid = valid.sum(axis=(-2, -1))
    total = np.where(valid, k, 0.0).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / n_valid
    return np.where(np.isnan(_means(a, mask)) | (n_valid == 0), np.nan, out)


def local_contrast(
    img: np.ndarray, window: int = DEFAULT_WINDOW, mask: np.ndarray | None = None
) -> float:
    """Mean of the local contrast map over the windows that lie inside the lit region."""
    return float(local_contrast_batch(_image(img)[None], window, mask)[0])


def normalized_intensity(img: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """I/<I> of the lit pixels (a 1-D array when a mask is given, the image's shape otherwise);
    all nan when the mean is not positive."""
    a = _image(img)
    v = a if mask is None else a[_mask(mask, a.shape)]
    return v / _means(a[None], mask)[0]


def intensity_histogram(
    img: np.ndarray,
    bins: int = 64,
    range: tuple[float, float] | None = None,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probability density of I/<I> over the lit region and the bin edges; default range
    (0, max). Compare with exp(-x)."""
    v = normalized_intensity(img, mask).ravel()
    if not np.all(np.isfinite(v)):
        edges = np.linspace(0.0, 1.0, bins + 1)
        return np.full(bins, np.nan), edges
    if range is None:
        range = (0.0, max(float(v.max()), 1e-12))
    hist, edges = np.histogram(v, bins=bins, range=range, density=True)
    return hist, edges


def histogram_distance(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Wasserstein-1 distance between the mean-normalized intensity distributions of two images,
    over the lit region.

    Mean-normalized so that exposure does not count, only the shape of p(I/<I>).
    """
    va = normalized_intensity(a, mask).ravel()
    vb = normalized_intensity(b, mask).ravel()
    if not (np.all(np.isfinite(va)) and np.all(np.isfinite(vb))):
        return float("nan")
    return wasserstein_1d(va, vb)


def wasserstein_1d(u: np.ndarray, v: np.ndarray) -> float:
    """W1 between two equally weighted 1-D samples: the integral of |F_u − F_v| over the pooled
    support, as scipy.stats.wasserstein_distance computes it. In numpy because importing
    scipy.stats costs 0.6 s, which a first start's Atlas page paid before its map."""
    u, v = np.sort(np.ravel(u)), np.sort(np.ravel(v))
    pooled = np.sort(np.concatenate([u, v]), kind="mergesort")
    cdf_u = np.searchsorted(u, pooled[:-1], side="right") / len(u)
    cdf_v = np.searchsorted(v, pooled[:-1], side="right") / len(v)
    return float(np.sum(np.abs(cdf_u - cdf_v) * np.diff(pooled)))


def _exp_quantile_integral(u: np.ndarray) -> np.ndarray:
    """G(u) = integral_0^u -ln(1-t) dt = (1-u) ln(1-u) + u, with G(1) = 1."""
    one_minus = 1.0 - u
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(one_minus > 0, one_minus * np.log(np.where(one_minus > 0, one_minus, 1)), 0)
    return term + u


def _sorted_normalized(a: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return np.sort(_lit(a, mask) / _means(a, mask)[:, None], axis=1)


def exp_distance_batch(imgs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    x = _sorted_normalized(_batch(imgs), mask)
    n = x.shape[1]
    # W1 = integral_0^1 |F_n^-1(u) - F^-1(u)| du, exactly: on [(i-1)/n, i/n] the empirical
    # quantile is the constant x_(i), and F^-1(u) = -ln(1-u) crosses it at u* = 1 - exp(-x).
    lo = np.arange(n) / n
    hi = (np.arange(n) + 1) / n
    ustar = np.clip(-np.expm1(-x), lo, hi)
    g_lo, g_hi, g_star = (_exp_quantile_integral(u) for u in (lo, hi, ustar))
    below = x * (ustar - lo) - (g_star - g_lo)
    above = (g_hi - g_star) - x * (hi - ustar)
    return (below + above).sum(axis=1)


def exp_distance(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Wasserstein-1 distance of I/<I> over the lit region to the Exp(1) law (0 for ideal fully
    developed speckle)."""
    return float(exp_distance_batch(_image(img)[None], mask)[0])


def ks_exp_batch(imgs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    x = _sorted_normalized(_batch(imgs), mask)
    n = x.shape[1]
    cdf = -np.expm1(-x)
    i = np.arange(1, n + 1)
    d = np.maximum((i / n - cdf).max(axis=1), (cdf - (i - 1) / n).max(axis=1))
    return np.where(np.isnan(x).any(axis=1), np.nan, d)


def ks_exp(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Kolmogorov-Smirnov statistic of I/<I> over the lit region against Exp(1).

    Only the statistic: neighbouring pixels inside one grain are correlated, so a p-value computed
    from all pixels would be far too small. Subsample pixels farther apart than a grain for that.
    """
    return float(ks_exp_batch(_image(img)[None], mask)[0])


def autocovariance_batch(imgs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    a = _batch(imgs)
    n, h, w = a.shape
    m = _mask(mask, a.shape).astype(np.float64)
    means = np.nan_to_num(_means(a, mask))
    d = (a - means[:, None, None]) * m
    # Zero-padded to (2H, 2W), so that lags do not wrap around: a camera frame is not one period
    # of a pattern, and the circular estimate reads the grain low (8.00 px against 8.23 px for
    # speckle of N/D = 8 cut from a larger field). Each lag is divided by how many lit pixel pairs
    # it has (Goodman's unbiased estimator), so the dark cladding adds nothing.
    s = (2 * h, 2 * w)
    acf = sfft.irfft2(np.abs(sfft.rfft2(d, s=s, axes=(-2, -1))) ** 2, s=s, axes=(-2, -1))
    pairs = sfft.irfft2(np.abs(sfft.rfft2(m, s=s)) ** 2, s=s)
    acf, pairs = sfft.fftshift(acf, axes=(-2, -1)), sfft.fftshift(pairs)
    rows = slice(h - h // 2, h - h // 2 + h)  # lags -H//2 .. H - H//2 - 1: zero lag at (H//2, W//2)
    cols = slice(w - w // 2, w - w // 2 + w)
    acf, pairs = acf[:, rows, cols], pairs[rows, cols]
    var = np.where(_flat(a, mask), np.nan, (d * d).sum(axis=(-2, -1)) / m.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        c = acf / np.where(pairs > MIN_OVERLAP * m.sum(), pairs, np.nan) / var[:, None, None]
    return c


def autocovariance(img: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalized intensity autocovariance over the lit region, c(0) = 1 at index (H//2, W//2):
    sum over lit pixel pairs of (I - <I>)(I' - <I>), divided by the number of pairs and by the
    variance. Lags with too few lit pairs are nan. All nan for a constant image.
    """
    return autocovariance_batch(_image(img)[None], mask)[0]


def _half_max_crossing(profile: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Radius where each row of `profile` (starting at 1 at radius 0) first drops below one half,
    linearly interpolated between the two samples that bracket it; nan if it never does."""
    if profile.shape[1] < 2:
        return np.full(len(profile), np.nan)
    below = profile < HALF
    found = below.any(axis=1)
    k = np.where(found, below.argmax(axis=1), 1)
    k = np.maximum(k, 1)
    rows = np.arange(len(profile))
    p0, p1 = profile[rows, k - 1], profile[rows, k]
    r0, r1 = radius[k - 1], radius[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = r0 + (p0 - HALF) * (r1 - r0) / (p0 - p1)
    return np.where(found & np.isfinite(p0), r, np.nan)


def _radial_profile(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal average of fftshifted autocovariances over the lags of each exact radius
    (each distinct dy² + dx²), out to half the image; nan lags (too few lit pairs) left out.

    Exact radii rather than rings of width 1: a ring around r = 1 mixes lags 1 and √2, and at
    grains of 2 px that alone read the FWHM 5% low. Returns the per-image profiles and the radii.
    """
    n, h, w = c.shape
    y, x = np.indices((h, w))
    r2 = (y - h // 2) ** 2 + (x - w // 2) ** 2
    rmax = min(h, w) // 2 - 1
    inside = r2 <= rmax * rmax
    _, ring = np.unique(r2[inside], return_inverse=True)
    radius = np.sqrt(np.bincount(ring, weights=r2[inside]) / np.bincount(ring))
    vals = c[:, inside]
    ok = np.isfinite(vals)
    sums = np.stack([np.bincount(ring, weights=v) for v in np.where(ok, vals, 0.0)])
    counts = np.stack([np.bincount(ring, weights=k) for k in ok.astype(np.float64)])
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts, radius


def fwhm_from_autocovariance_batch(c: np.ndarray) -> dict[str, np.ndarray]:
    """FWHM along x, y and radially from fftshifted normalized autocovariances (n, H, W)."""
    c = np.asarray(c, dtype=np.float64)
    n, h, w = c.shape
    cy, cx = h // 2, w // 2
    fx = 2 * _half_max_crossing(c[:, cy, cx:], np.arange(w - cx, dtype=np.float64))
    fy = 2 * _half_max_crossing(c[:, cy:, cx], np.arange(h - cy, dtype=np.float64))
    profile, radius = _radial_profile(c)
    fr = 2 * _half_max_crossing(profile, radius)
    with np.errstate(invalid="ignore", divide="ignore"):
        aniso = np.maximum(fx, fy) / np.minimum(fx, fy)
    return {"fwhm_x": fx, "fwhm_y": fy, "fwhm_r": fr, "anisotropy": aniso}


def grain_size_batch(imgs: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    a = _batch(imgs)
    g = fwhm_from_autocovariance_batch(autocovariance_batch(a, mask))
    invalid = np.isnan(_means(a, mask))
    return {k: np.where(invalid, np.nan, v) for k, v in g.items()}


def grain_size(img: np.ndarray, mask: np.ndarray | None = None) -> GrainSize:
    """Grain FWHM in pixels of the image as it is (no resizing), from `autocovariance` over the
    lit region."""
    g = grain_size_batch(_image(img)[None], mask)
    return GrainSize(**{k: float(v[0]) for k, v in g.items()})


STAT_KEYS = (
    "mean",
    "contrast",
    "local_contrast",
    "grain_fwhm_x",
    "grain_fwhm_y",
    "grain_fwhm_r",
    "anisotropy",
    "ks_exp",
    "exp_w1",
)


def speckle_stats_batch(
    imgs: np.ndarray, window: int = DEFAULT_WINDOW, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Every statistic of `STAT_KEYS`, over the lit region `mask` (the whole frame if None)."""
    a = _batch(imgs)
    g = grain_size_batch(a, mask)
    return {
        "mean": _lit(a, mask).mean(axis=1),
        "contrast": contrast_batch(a, mask),
        "local_contrast": local_contrast_batch(a, window, mask),
        "grain_fwhm_x": g["fwhm_x"],
        "grain_fwhm_y": g["fwhm_y"],
        "grain_fwhm_r": g["fwhm_r"],
        "anisotropy": g["anisotropy"],
        "ks_exp": ks_exp_batch(a, mask),
        "exp_w1": exp_distance_batch(a, mask),
    }


def speckle_stats(
    img: np.ndarray, window: int = DEFAULT_WINDOW, mask: np.ndarray | None = None
) -> dict[str, float]:
    """All statistics of one image as plain floats, keys `STAT_KEYS`."""
    s = speckle_stats_batch(_image(img)[None], window, mask)
    return {k: float(s[k][0]) for k in STAT_KEYS}
