"""Speckle statistics of intensity images: contrast, intensity distribution and grain size.

The reference is fully developed speckle (Goodman, "Speckle Phenomena in Optics", 2007): the field
is a circular complex Gaussian variable, so the intensity is exponentially distributed,
p(I) = exp(-I/<I>)/<I>, and the contrast K = sigma_I/<I> is exactly 1 (ch. 3). A sum of M
independent patterns follows a gamma law with K = 1/sqrt(M) (ch. 3). The grain size is the FWHM of
the normalized intensity autocovariance c(d) = |mu(d)|^2, mu being the Fourier transform of the
pupil intensity (ch. 4); for a uniformly filled circular pupil of diameter D on an N-point FFT grid
that is the Airy pattern |2 J1(v)/v|^2 with FWHM ~= 1.03 N/D pixels.

Every function takes one 2-D image (any real dtype; computed in float64) and returns plain floats;
the `*as_batch` variants take an (n, H, W) stack and return one value per image. Every statistic
takes an optional `mask` of the lit region (`frames.lit_mask`), the whole frame if None;
the grain size lives in `speckle.grain` and is re-exported here.

Degenerate input never raises (only a wrong number of dimensions does):
- an image whose mean is not positive and finite (all zeros, negative, nan) has no intensity
  statistics: every statistic but the plain `mean` is nan, and `normalized_intensity` is all nan;
- a constant positive image has contrast 0 and local contrast 0, but an undefined autocovariance,
  so its grain sizes and anisotropy are nan; `ks_exp` and `exp_w1` are still computed;
- a grain whose autocovariance never falls to one half within half the image is not measurable:
  that FWHM is nan.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from frames.lit_mask import lit_mask  # noqa: F401  (one of the statistics' public names)
from speckle.grain import (  # noqa: F401  (the statistics' public names, in one module)
    GrainSize,
    autocovariance,
    autocovariance_batch,
    fwhm_from_autocovariance_batch,
    grain_size,
    grain_size_batch,
)
from speckle.region import as_batch, as_image, as_mask, flat_images, lit_means, lit_pixels

DEFAULT_WINDOW = 7
LOCAL_DARK = 1e-6  # local means below this fraction of the image mean count as no light


def contrast_batch(imgs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    a = as_batch(imgs)
    v = lit_pixels(a, mask)
    return np.where(flat_images(a, mask), 0.0, v.std(axis=1)) / lit_means(a, mask)


def contrast(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Global speckle contrast K = sigma/mean over the lit region (1 for fully developed
    speckle)."""
    return float(contrast_batch(as_image(img)[None], mask)[0])


def local_contrast_map_batch(imgs: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    a = as_batch(imgs)
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window}")
    size = (1, int(window), int(window))
    m = ndimage.uniform_filter(a, size=size, mode="reflect")
    m2 = ndimage.uniform_filter(a * a, size=size, mode="reflect")
    # E[x^2] - E[x]^2 can round slightly below zero in flat regions.
    var = np.clip(m2 - m * m, 0.0, None)
    var = np.where(flat_images(a)[:, None, None], 0.0, var)
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
    return local_contrast_map_batch(as_image(img)[None], window)[0]


def _inside(mask: np.ndarray | None, shape: tuple[int, ...], window: int) -> np.ndarray:
    """Pixels whose whole window lies in the lit region (a window straddling the core's edge
    mixes speckle with dark cladding); the mask itself where no window fits."""
    m = as_mask(mask, shape)
    if mask is None:
        return m
    full = (
        ndimage.uniform_filter(m.astype(np.float64), size=int(window), mode="constant") > 1 - 1e-9
    )
    return full if full.any() else m


def local_contrast_batch(
    imgs: np.ndarray, window: int = DEFAULT_WINDOW, mask: np.ndarray | None = None
) -> np.ndarray:
    a = as_batch(imgs)
    k = local_contrast_map_batch(a, window)
    valid = np.isfinite(k) & _inside(mask, a.shape, window)
    n_valid = valid.sum(axis=(-2, -1))
    total = np.where(valid, k, 0.0).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / n_valid
    return np.where(np.isnan(lit_means(a, mask)) | (n_valid == 0), np.nan, out)


def local_contrast(
    img: np.ndarray, window: int = DEFAULT_WINDOW, mask: np.ndarray | None = None
) -> float:
    """Mean of the local contrast map over the windows that lie inside the lit region."""
    return float(local_contrast_batch(as_image(img)[None], window, mask)[0])


def normalized_intensity(img: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """I/<I> of the lit pixels (a 1-D array when a mask is given, the image's shape otherwise);
    all nan when the mean is not positive."""
    a = as_image(img)
    v = a if mask is None else a[as_mask(mask, a.shape)]
    return v / lit_means(a[None], mask)[0]


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
    return np.sort(lit_pixels(a, mask) / lit_means(a, mask)[:, None], axis=1)


def exp_distance_batch(imgs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    x = _sorted_normalized(as_batch(imgs), mask)
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
    return float(exp_distance_batch(as_image(img)[None], mask)[0])


def ks_exp_batch(imgs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    x = _sorted_normalized(as_batch(imgs), mask)
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
    return float(ks_exp_batch(as_image(img)[None], mask)[0])


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
    a = as_batch(imgs)
    g = grain_size_batch(a, mask)
    return {
        "mean": lit_pixels(a, mask).mean(axis=1),
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
    s = speckle_stats_batch(as_image(img)[None], window, mask)
    return {k: float(s[k][0]) for k in STAT_KEYS}
