"""Bootstrap intervals for a mean over held-out items (Efron & Tibshirani 1993, ch. 13: the
percentile interval).

A per-item score (N,) is resampled over items. A score per item and random draw (N, K), such as
the PCC of each of K generated samples of each of N patterns, whose draws are independent per
item, is resampled in two stages: items, then draws within each chosen item. The interval then
holds both sources of spread: which patterns were scored, and which noise the sampler drew.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 1000
LEVEL = 0.95


def bootstrap_mean(
    values: np.ndarray, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0
) -> dict[str, float | list[float]]:
    """{"mean", "ci95": [low, high], "n"} of the mean of `values` ((N,) or (N, K)); non-finite
    entries are left out of every mean."""
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"values must be (N,) or (N, K), got shape {v.shape}")
    n, k = v.shape
    mean = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    if n < 2:
        return {"mean": mean, "ci95": [float("nan"), float("nan")], "n": int(n)}
    rng = np.random.default_rng(seed)
    items = rng.integers(0, n, (n_boot, n))  # (B, N)
    draws = rng.integers(0, k, (n_boot, n, k)) if k > 1 else np.zeros((n_boot, n, 1), int)
    picked = v[items[:, :, None], draws]  # (B, N, K)
    with np.errstate(invalid="ignore"):
        means = np.nanmean(picked.reshape(n_boot, -1), axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.nanpercentile(means, [tail, 100 - tail])
    return {"mean": mean, "ci95": [float(low), float(high)], "n": int(n)}
