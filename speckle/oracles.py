"""What ideal predictors reach against a frame of a perturbed modal fibre: the rows a model's
score on a moving fibre is read beside, so that a reader sees how much of a gap is the model and
how much the physics.

For each pattern, the truth is one frame through a state drawn from the fibre's state
distribution (each factor uniform in its range, conformations uniform; no drift). Three
predictors, each scored by the PCC over the lit core:

- one-state TM: the frame through one fixed state (`FibreStates.one_state`: each factor at the
  low end of its range, conformation 0): the best a transmission matrix measured once can do;
- pooled mean: the mean of `draws` frames through independent states, a Monte Carlo estimate of
  the conditional mean, the best any deterministic predictor can do in PCC (a finite `draws`
  lowers it slightly);
- ideal best-of-k: k frames through independent states, the best one kept: the coverage a
  perfect generator reaches with k samples.
"""

from __future__ import annotations

import numpy as np

from common.bootstrap import bootstrap_mean
from speckle.fibre_states import FibreStates
from speckle.modal_fibre import ModalFibre

ORACLES = ("one_state_tm", "pooled_mean", "best_of_k")


def core_pcc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PCC over the mask between frames a and b (broadcast over leading axes)."""
    x, y = a[..., mask], b[..., mask]
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    return (x * y).sum(-1) / np.sqrt((x * x).sum(-1) * (y * y).sum(-1))


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
    fibre_states = FibreStates(size=size, core=core, fibre_seed=fibre_seed, modal=fibre)
    frames = fibre_states.draws(patterns, draws + 1, seed)
    truth, states = frames[:, 0], frames[:, 1:]
    one = fibre_states.one_state(patterns)
    return {
        "one_state_tm": core_pcc(one, truth, mask),
        "pooled_mean": core_pcc(states.mean(1), truth, mask),
        "best_of_k": core_pcc(states[:, :best_of], truth[:, None], mask).max(1),
    }


def oracle_table(pccs: dict[str, np.ndarray]) -> dict[str, dict]:
    """Each oracle's mean PCC with a bootstrap 95% interval over patterns."""
    return {k: bootstrap_mean(pccs[k]) for k in ORACLES}
