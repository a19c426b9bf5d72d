"""Pixelwise image metrics for reconstructions: MSE, PSNR, SSIM and Pearson correlation.

Images are float arrays, nominally in [0, 1] (`data_range` 1 unless given). Single-image functions
take two (H, W) arrays and return a float; the `*_batch` functions and `pixel_metrics` take two
(n, H, W) stacks and return one value per image, vectorised over the stack. Computed in float64.

SSIM follows Wang et al., "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 13 (2004): Gaussian-weighted local statistics with sigma = 1.5 over an 11x11
window, K1 = 0.01, K2 = 0.03, population (not sample) covariances, and the mean of the SSIM map
without the 5-pixel border where the window runs off the image. That is what
`skimage.metrics.structural_similarity(a, b, data_range=R, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)` computes.

Degenerate cases: identical images give mse 0 and psnr inf; pcc is nan when either image is
constant (correlation undefined).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: the 11x11 window of Wang et al.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_WIN = 11


def _pair(a: np.ndarray, b: np.ndarray, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    if x.ndim != ndim:
        want = "(H, W) images" if ndim == 2 else "(n, H, W) stacks"
        raise ValueError(f"expected {want}, got shape {x.shape}")
    return x, y


def _check_range(data_range: float) -> float:
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    return float(data_range)


def mse_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x, y = _pair(a, b, 3)
    return ((x - y) ** 2).mean(axis=(-2, -1))


def psnr_batch(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    r = _check_range(data_range)
    m = mse_batch(a, b)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(r * r / m)


def ssim_batch(
    a: np.ndarray, b: np.ndarray, data_range: float = 1.0, mask: np.ndarray | None = None
) -> np.ndarray:
    """Mean SSIM per image; with a (H, W) bool `mask`, the mean of the SSIM map over the mask's
    pixels (the lit region) instead of the frame without its border."""
    x, y = _pair(a, b, 3)
    r = _check_range(data_range)
    if min(x.shape[-2:]) < SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN}, got {x.shape[-2:]}")
    c1 = (SSIM_K1 * r) ** 2
    c2 = (SSIM_K2 * r) ** 2

    def blur(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(
            v, sigma=(0, SSIM_SIGMA, SSIM_SIGMA), truncate=SSIM_TRUNCATE, mode="reflect"
        )

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    vxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    if mask is not None:
        return s[:, np.asarray(mask, bool)].mean(axis=-1)
    p = (SSIM_WIN - 1) // 2
    return s[:, p:-p, p:-p].mean(axis=(-2, -1))


def pcc_batch(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation per image over all pixels, or over a (H, W) bool `mask`'s pixels."""
    a, b = _pair(a, b, 3)
    if mask is not None:
        m = np.asarray(mask, bool)
        a, b = a[:, m][:, None], b[:, m][:, None]  # (n, 1, lit pixels)
    x = a - a.mean(axis=(-2, -1), keepdims=True)
    y = b - b.mean(axis=(-2, -1), keepdims=True)
    num = (x * y).sum(axis=(-2, -1))
    den = np.sqrt((x * x).sum(axis=(-2, -1)) * (y * y).sum(axis=(-2, -1)))
    # A constant image has no correlation; test it exactly, since x - mean(x) of a constant is
    # not always exactly 0 in floating point.
    flat = (np.ptp(a, axis=(-2, -1)) == 0) | (np.ptp(b, axis=(-2, -1)) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(flat | ~(den > 0), np.nan, num / den)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error."""
    x, y = _pair(a, b, 2)
    return float(mse_batch(x[None], y[None])[0])


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(R^2 / mse); inf for identical images."""
    x, y = _pair(a, b, 2)
    return float(psnr_batch(x[None], y[None], data_range)[0])


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004); 1 for identical images."""
    x, y = _pair(a, b, 2)
    return float(ssim_batch(x[None], y[None], data_range)[0])


def pcc(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation coefficient over pixels; nan if either image is constant."""
    x, y = _pair(a, b, 2)
    return float(pcc_batch(x[None], y[None])[0])


def pixel_metrics(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> dict[str, np.ndarray]:
    """All four metrics per image of two (n, H, W) stacks: keys mse, psnr, ssim, pcc."""
    m = mse_batch(a, b)
    r = _check_range(data_range)
    with np.errstate(divide="ignore"):
        p = 10.0 * np.log10(r * r / m)
    return {"mse": m, "psnr": p, "ssim": ssim_batch(a, b, r), "pcc": pcc_batch(a, b)}
