"""Reconstruction quality in two groups: pixelwise, and the speckle statistics that pixel metrics
hide. An MSE-trained VAE blurs speckle: its PSNR can look fine while the contrast ratio falls and
the grains grow, which these numbers show."""

from __future__ import annotations

import numpy as np

from speckle import stats
from vae.metrics import pixel_metrics

PIXEL_KEYS = ("mse", "psnr", "ssim", "pcc")
SPECKLE_KEYS = ("contrast_ratio", "local_contrast_ratio", "hist_w1", "grain_ratio")


def compare(
    x: np.ndarray,
    rec: np.ndarray,
    window: int = stats.DEFAULT_WINDOW,
    mask: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of a reconstruction `rec` of `x` (both (H, W) in [0, 1]; PSNR's data range is 1).
    The speckle statistics are taken over the lit region `mask` (the whole frame if None), the
    same on both sides:

    - contrast_ratio: K_rec / K_in, K = σ/μ;
    - local_contrast_ratio: the same in a window × window window (the same window on both sides);
    - hist_w1: Wasserstein-1 distance between the mean-normalized intensity histograms;
    - grain_ratio: radial FWHM of the reconstruction's autocovariance over the input's.
    """
    x, rec = np.asarray(x, np.float64), np.asarray(rec, np.float64)
    pm = {k: float(v[0]) for k, v in pixel_metrics(x[None], rec[None], data_range=1.0).items()}
    k_in, k_rec = stats.contrast(x, mask), stats.contrast(rec, mask)
    lk_in = stats.local_contrast(x, window, mask)
    lk_rec = stats.local_contrast(rec, window, mask)
    g_in, g_rec = stats.grain_size(x, mask).fwhm_r, stats.grain_size(rec, mask).fwhm_r
    return pm | {
        "contrast_in": k_in,
        "contrast_rec": k_rec,
        "contrast_ratio": _ratio(k_rec, k_in),
        "local_contrast_ratio": _ratio(lk_rec, lk_in),
        "hist_w1": stats.histogram_distance(x, rec, mask),
        "grain_in": g_in,
        "grain_rec": g_rec,
        "grain_ratio": _ratio(g_rec, g_in),
    }


def _ratio(a: float, b: float) -> float:
    return float(a / b) if np.isfinite(a) and np.isfinite(b) and b > 0 else float("nan")


def percentile_of(value: float, reference: np.ndarray) -> float:
    """Percentage of `reference` values at or below `value` (0–100)."""
    reference = np.asarray(reference)
    return float(
        100.0 * np.searchsorted(np.sort(reference), value, side="right") / max(len(reference), 1)
    )
