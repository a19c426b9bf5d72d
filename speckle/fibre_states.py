"""A fibre as a distribution of states: the frames of given patterns through one fixed state, or
through states drawn independently from the fibre's perturbation. The scoring of stochastic
models (a generator's samples against the set of true states of a pattern, the oracles of
`speckle.oracles`) needs both for patterns it chooses, which a recorded set does not give.

Two fibres, as `speckle.mmf` simulates them:
- the Gaussian TM: fixed (one state), or M states T_s = μ T + √(1 − μ²) G_s (`bend` μ,
  `states` M), each frame through one drawn uniformly;
- the modal fibre (`speckle.modal_fibre`): each factor uniform in its range, a conformation
  uniform among M; drift is dropped, so that draws are independent.

The one state is the Gaussian fibre's state 0, or the modal fibre with every factor at the low
end of its range (conformation 0): what a transmission matrix measured once sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from speckle.gaussian_fibre import DEFAULT_FIBRE_SEED, propagate, transmission_matrix
from speckle.modal_fibre import MODAL_TAG, ModalFibre
from speckle.modal_frames import FACTORS, draw_factors, factor_ranges, modal_images

STATE_TAG = 0x57A7  # the Gaussian fibre's state draws, apart from every other stream


@dataclass(frozen=True)
class FibreStates:
    """A fibre and its state distribution; see the module docstring."""

    size: int = 64
    core: float = 0.9
    fibre_seed: int = DEFAULT_FIBRE_SEED
    grain: float | None = None  # Gaussian fibre: speckle FWHM in pixels (None: its default)
    bend: float | None = None  # Gaussian fibre: μ of the states
    states: int | None = None  # Gaussian fibre: M states (with bend)
    bend_seed: int | None = None  # Gaussian fibre: seed of G_0 (default fibre_seed + 1)
    modal: ModalFibre | None = None  # the modal fibre instead of the Gaussian one

    def __post_init__(self) -> None:
        if self.modal is not None:
            object.__setattr__(self, "modal", replace(self.modal, drift=0.0))
        if self.bend is not None and not 0 <= self.bend <= 1:
            raise ValueError(f"bend must be in [0, 1], got {self.bend}")
        if self.states is not None and (self.states < 1 or self.bend is None):
            raise ValueError("states needs a count >= 1 and a bend mu")

    @classmethod
    def from_record(cls, meta: dict) -> FibreStates:
        """The fibre a set's `simulation.json` record describes."""
        modal = meta.get("modal") if meta.get("fibre") == "modes" else None
        return cls(
            size=int(meta.get("size", 64)),
            core=float(meta.get("core", 0.9)),
            fibre_seed=int(meta.get("fibre_seed", DEFAULT_FIBRE_SEED)),
            grain=None if meta.get("grain") is None else float(meta["grain"]),
            bend=None if modal or meta.get("bend") is None else float(meta["bend"]),
            states=None if modal or meta.get("states") is None else int(meta["states"]),
            bend_seed=None if meta.get("bend_seed") is None else int(meta["bend_seed"]),
            modal=ModalFibre.from_record(modal) if modal else None,
        )

    @property
    def perturbed(self) -> bool:
        """Whether the fibre has more than one state."""
        if self.modal is None:
            return self.bend is not None and (self.states or 1) > 1
        m = self.modal
        ranges = [m.temperature, m.strain, m.detuning, m.bend]
        moving = any(r is not None and r[1] > r[0] for r in ranges)
        return moving or (m.conformations or 1) > 1

    def matrices(self) -> list[np.ndarray]:
        """The Gaussian fibre's matrices: [T] when fixed, else one per state."""
        kw = {"size": self.size, "grain": self.grain, "core": self.core}
        tm = transmission_matrix(self.fibre_seed, **kw)
        if self.bend is None:
            return [tm]
        seed = self.fibre_seed + 1 if self.bend_seed is None else self.bend_seed
        mu, rest = np.float32(self.bend), np.float32(math.sqrt(1.0 - self.bend**2))
        return [
            mu * tm + rest * transmission_matrix(seed + s, **kw) for s in range(self.states or 1)
        ]

    def one_state(self, patterns: np.ndarray) -> np.ndarray:
        """(n, size, size) intensities through the one fixed state."""
        if self.modal is None:
            return propagate(patterns, self.matrices()[0])
        return modal_images(
            patterns,
            self.modal,
            low_end(self.modal, len(patterns)),
            self.size,
            self.core,
            self.fibre_seed,
        )

    def draws(self, patterns: np.ndarray, k: int, seed: int) -> np.ndarray:
        """(n, k, size, size) intensities: each pattern through k states drawn independently."""
        n = len(patterns)
        many = np.repeat(np.asarray(patterns, np.float32), k, axis=0)
        if self.modal is not None:
            factors = draw_factors(n * k, seed ^ MODAL_TAG, self.modal)
            out = modal_images(many, self.modal, factors, self.size, self.core, self.fibre_seed)
            return out.reshape(n, k, self.size, self.size)
        tms = self.matrices()
        state = np.random.default_rng([STATE_TAG, int(seed)]).integers(len(tms), size=n * k)
        out = np.zeros((n * k, self.size, self.size), np.float32)
        for s in np.unique(state):
            out[state == s] = propagate(many[state == s], tms[int(s)])
        return out.reshape(n, k, self.size, self.size)


def low_end(fibre: ModalFibre, n: int) -> dict[str, np.ndarray]:
    """Every factor of n frames at the low end of its range (conformation 0)."""
    lows = factor_ranges(fibre, bend_angle=(0.0, 0.0))
    out = {k: np.full(n, r[0]) for k in FACTORS if (r := lows[k]) is not None}
    if fibre.conformations is not None:
        out["state"] = np.zeros(n, dtype=np.int64)
    return out
