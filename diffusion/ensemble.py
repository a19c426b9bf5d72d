"""Scores of a set of samples against a set of true states: on a fibre that moves, one pattern has
many true outputs, and a sampler is judged by how its samples cover them, not by one frame.

Frames are compared as unit vectors: each frame's lit pixels, centred and scaled to norm 1, so
that u·v is their PCC and ‖u − v‖ = √(2 (1 − PCC)).

- coverage: over the true states of a pattern, the mean of the best sample's PCC. It rewards
  spread (one sample near each state) and never penalizes a wild sample, so it is read beside
- the energy score (Gneiting and Raftery, JASA 102, 359, 2007, eq. 22), a proper scoring rule:
  ES = E‖X − y‖ − ½ E‖X − X'‖ over the samples X, averaged over the true states y. Its
  expectation is lowest for samples drawn from the true distribution; a sampler that is biased,
  too narrow or too wide scores higher. The pair term is the unbiased ("fair") mean over the
  K(K − 1) ordered pairs of distinct samples (Ferro, QJRMS 140, 1917, 2014), so that K = 8
  samples are not penalized for being few; one sample (a deterministic predictor) has no pair
  term, and its ES is its mean distance to the states.
"""

from __future__ import annotations

import numpy as np


def unit_frames(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(..., L) float64: each frame's pixels inside `mask`, centred, of norm 1 (zeros for a flat
    frame, which then has PCC 0 with everything)."""
    x = np.asarray(frames, np.float64)[..., np.asarray(mask, bool)]
    x = x - x.mean(-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, K, S) Euclidean distances between a (N, K, L) and b (N, S, L)."""
    sq = (
        (a * a).sum(-1)[:, :, None]
        + (b * b).sum(-1)[:, None, :]
        - 2 * np.einsum("nkl,nsl->nks", a, b)
    )
    return np.sqrt(np.clip(sq, 0.0, None))


def energy_score(samples: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """(N,) energy score of K samples (N, K, L) against S true states (N, S, L) of each item,
    averaged over the states; lower is better."""
    samples, truths = np.asarray(samples, np.float64), np.asarray(truths, np.float64)
    if samples.ndim != 3 or truths.ndim != 3 or samples.shape[::2] != truths.shape[::2]:
        raise ValueError(
            f"samples (N, K, L) and truths (N, S, L) must agree, got {samples.shape}, "
            f"{truths.shape}"
        )
    k = samples.shape[1]
    spread = distances(samples, samples).sum((1, 2)) / (k * (k - 1)) if k > 1 else 0.0
    return distances(samples, truths).mean((1, 2)) - 0.5 * spread


def pcc_grid(samples: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """(N, K, S) PCC of each sample with each true state, from unit frames."""
    return np.einsum("nkl,nsl->nks", samples, truths)


def coverage(pcc: np.ndarray) -> np.ndarray:
    """(N,) from the (N, K, S) PCC grid: over the states, the mean of the best sample's PCC."""
    return np.asarray(pcc).max(1).mean(1)
