"""What ideal predictors reach against a frame of a perturbed modal fibre: the rows a model's
score on a moving fibre is read beside, so that a reader sees how much of a gap is the model and
how much the physics.

For each pattern, the truth is one frame through a state drawn from the fibre's state
distribution (each factor uniform in its range, conformations uniform; no drift). Three
predictors, each scored by the PCC over the lit core:

- one-state TM: the frame through one fixed state (each factor at the low end of its range,
  conformation 0): the best a transmission matrix measured once can do;
- pooled mean: the mean of `draws` frames through independent states, a Monte Carlo estimate of
  the conditional mean, the best any deterministic predictor can do in PCC (a finite `draws`
  lowers it slightly);
- ideal best-of-k: k frames through independent states, the best one kept: the coverage a
  perfect generator reaches with k samples.
"""

from __future__ import annotations

import numpy as np

from common.bootstrap import bootstrap_mean
from speckle.modal_fibre import MODAL_TAG, ModalFibre
from speckle.modal_frames import FACTORS, draw_factors, modal_images

ORACLES = ("one_state_tm", "pooled_mean", "best_of_k")


def core_pcc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PCC over the mask between frames a and b (broadcast over leading axes)."""
    x, y = a[..., mask], b[..., mask]
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    return (x * y).sum(-1) / np.sqrt((x * x).sum(-1) * (y * y).sum(-1))


def fixed_state(fibre: ModalFibre, n: int) -> dict[str, np.ndarray]:
    """Every factor of n frames at the low end of its range (conformation 0)."""
    lows = {
        "temperature": fibre.temperature,
        "strain": fibre.strain,
        "detuning": fibre.detuning,
        "curvature": fibre.bend if fibre.conformations is None else None,
        "bend_angle": (0.0, 0.0) if fibre.bend and fibre.conformations is None else None,
    }
    out = {k: np.full(n, r[0]) for k in FACTORS if (r := lows[k]) is not None}
    if fibre.conformations is not None:
        out["state"] = np.zeros(n, dtype=np.int64)
    return out


def oracle_pccs(
    patterns: np.ndarray,
    fibre: ModalFibre,
    mask: np.ndarray,
    *,
    size: int = 64,
    core: float = 0.9,
    fibre_seed: int = 1234,
    draws: int = 64,
    best_of: int = 8,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Per-pattern PCCs (n,) of each oracle against one true frame per pattern."""
    if best_of > draws:
        raise ValueError(f"best_of ({best_of}) must be at most draws ({draws})")
    n = len(patterns)
    still = ModalFibre(**{**fibre.__dict__, "drift": 0.0})  # states drawn independently
    factors = draw_factors(n * (draws + 1), seed ^ MODAL_TAG, still)
    frames = modal_images(
        np.repeat(patterns, draws + 1, axis=0), still, factors, size, core, fibre_seed
    ).reshape(n, draws + 1, size, size)
    truth, states = frames[:, 0], frames[:, 1:]
    one = modal_images(patterns, still, fixed_state(still, n), size, core, fibre_seed)
    return {
        "one_state_tm": core_pcc(one, truth, mask),
        "pooled_mean": core_pcc(states.mean(1), truth, mask),
        "best_of_k": core_pcc(states[:, :best_of], truth[:, None], mask).max(1),
    }


def oracle_table(pccs: dict[str, np.ndarray]) -> dict[str, dict]:
    """Each oracle's mean PCC with a bootstrap 95% interval over patterns."""
    return {k: bootstrap_mean(pccs[k]) for k in ORACLES}
