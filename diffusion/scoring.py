"""How close generated speckle is to the true speckle, per image and inside the lit region only:
PCC (the field's "fidelity"), SSIM, and the speckle statistics a pixel metric hides (contrast,
grain size, intensity histogram). The same function scores the generator and every reference."""

from __future__ import annotations

import numpy as np

from speckle import stats
from vae.metrics import pcc_batch, ssim_batch

KEYS = ("pcc", "ssim", "contrast_ratio", "grain_ratio", "histogram_distance")


def score(truth: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image metrics of `pred` against `truth` (both (n, H, W) in [0, 1]) over `mask`."""
    truth, pred = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        contrast = stats.contrast_batch(pred, mask) / stats.contrast_batch(truth, mask)
        grain = (
            stats.grain_size_batch(pred, mask)["fwhm_r"]
            / stats.grain_size_batch(truth, mask)["fwhm_r"]
        )
    hist = np.array(
        [stats.histogram_distance(t, p, mask) for t, p in zip(truth, pred, strict=True)]
    )
    # A flat prediction has no correlation (nan): it counts as 0, not as a missing image.
    pcc = np.nan_to_num(pcc_batch(truth, pred, mask), nan=0.0)
    return {
        "pcc": pcc,
        "ssim": ssim_batch(truth, pred, 1.0, mask),
        "contrast_ratio": contrast,
        "grain_ratio": grain,
        "histogram_distance": hist,
    }


def summary(per_image: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over images (nan-aware: a flat image has no PCC)."""
    return {k: float(np.nanmean(v)) for k, v in per_image.items()}


def panel(truth: np.ndarray | None, image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """One panel of the Generate page: its contrast, and its PCC with the truth when known."""
    out = {"contrast": float(stats.contrast(image, mask))}
    if truth is not None:
        out["pcc"] = float(pcc_batch(truth[None], image[None], mask)[0])
    return out
