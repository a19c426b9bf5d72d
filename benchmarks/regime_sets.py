"""The physics half of `benchmarks.science_regimes`: each regime's held-out patterns and their true
frames, the reference pairs drawn from a model's training distribution, and the transmission
matrices fitted to them. Nothing here reads a model.

A model's fibre and pattern families are read from its training set's `simulation.json` record
(the generator's config holds it). The regimes, each on held-out bases (test split):
- (a) handwritten digits through the fibre held in one state;
- (b) letters and dots through the fibre as in training (fixed or moving);
- (c) digits through a moving fibre: drift with few degrees of freedom (the training fibre's own
  when it drifts, else a temperature range), and random conformations with many;
- (d) digits through the fibre in one state, seen by a camera at two photon levels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from speckle.camera import Camera, camera_gain, fibre_counts
from speckle.fibre_states import FibreStates
from speckle.gaussian_fibre import core_mask
from speckle.simulated import value_range
from speckle.slm_patterns import family_pool, placements, transform_patterns
from speckle.tm_fit import TransmissionMatrix, fit_transmission_matrix

HELD_OUT_SEED = 2026
REF_SEED = 77  # the reference pairs: new placements of the training bases
PHOTONS = (100.0, 10.0)  # photo-electrons per core pixel at full SLM; a digit has ~12% of that
DRIFT_TEMPERATURE = (0.0, 100.0)  # K: the few-DoF drift when the training fibre does not move
CONFORMATIONS = {"conformations": 64, "bend": (0.0, 20.0), "twist": 180.0}
GAUSSIAN_FEW = {"bend": 0.95, "states": 4}  # the Gaussian fibre's stand-ins for (c)
GAUSSIAN_MANY = {"bend": 0.9, "states": 64}


@dataclass(frozen=True)
class Regime:
    key: str  # a short name, also the table's title
    letter: str  # the regime: a, b, c or d
    family: str  # the held-out patterns' family
    fibre: FibreStates
    fixed: bool  # truth through the one state (else drawn states)
    camera: Camera | None = None


def record_fibre(meta: dict) -> FibreStates:
    return FibreStates.from_record(meta)


def regimes(meta: dict) -> list[Regime]:
    """The regimes of a model trained on the set `meta` describes; see the module docstring."""
    train = record_fibre(meta)
    if train.modal is not None:
        m = train.modal
        still = replace(m, temperature=None, strain=None, detuning=None, bend=None)
        still = replace(still, conformations=None, twist=0.0)
        few_dof = train.perturbed and m.conformations is None
        few = (
            train
            if few_dof
            else replace(train, modal=replace(still, temperature=DRIFT_TEMPERATURE))
        )
        many_dof = train.perturbed and m.conformations is not None
        many = train if many_dof else replace(train, modal=replace(still, **CONFORMATIONS))
    else:
        base = replace(train, bend=None, states=None)
        few = train if train.perturbed else replace(base, **GAUSSIAN_FEW)
        many = replace(base, **GAUSSIAN_MANY)
    out = [
        Regime("held-out handwriting, fibre in one state", "a", "digits", train, True),
        Regime("letters, fibre as in training", "b", "letters", train, not train.perturbed),
        Regime("dots, fibre as in training", "b", "dots", train, not train.perturbed),
        Regime(f"few-DoF perturbation: {describe(few)}", "c", "digits", few, False),
        Regime(f"many-DoF perturbation: {describe(many)}", "c", "digits", many, False),
    ]
    for photons in PHOTONS:
        out.append(
            Regime(
                f"camera, {photons:g} e⁻ per core pixel at full SLM, fibre in one state",
                "d",
                "digits",
                train,
                True,
                Camera(photons),
            )
        )
    return out


def describe(f: FibreStates) -> str:
    """The fibre's state distribution in words."""
    if f.modal is None:
        return f"Gaussian TM, {f.states} states of μ {f.bend:g}" if f.perturbed else "Gaussian TM"
    m, parts = f.modal, []
    for name, unit in (("temperature", "K"), ("strain", ""), ("detuning", "nm"), ("bend", "/m")):
        r = getattr(m, name)
        if r is not None and m.conformations is None:
            parts.append(f"{name} {r[0]:g}–{r[1]:g}{' ' + unit if unit else ''}")
    if m.conformations:
        r = m.bend or (0.0, 1.0)
        parts.append(
            f"{m.conformations} conformations, bend {r[0]:g}–{r[1]:g} /m, twist ±{m.twist:g}°"
        )
    return f"{m.profile}-index modal fibre, " + (", ".join(parts) or "fixed")


def family_patterns(family: str, split: str, n: int, seed: int, meta: dict) -> np.ndarray:
    """n patterns of one family or a comma list (bases pooled in its order, each family's own
    split), placed with the record's shift, rotation and scale ranges."""
    bases, pools, offset = [], [], 0
    for name in str(family).split(","):
        base, _, pool = family_pool(name.strip(), split)
        bases.append(base)
        pools.append(pool + offset)
        offset += len(base)
    base, pool = np.concatenate(bases), np.concatenate(pools)
    sc = value_range(tuple(meta.get("scale", (0.9, 1.1))), "scale")
    shift, rotation = float(meta.get("shift", 2.0)), float(meta.get("rotation", 15.0))
    source, dx, dy, angle, factor = placements(n, seed, pool, shift, rotation, sc)
    return transform_patterns(base[source], dx, dy, angle, factor)


def truth_frames(
    reg: Regime, patterns: np.ndarray, states: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(observed, noise-free) intensities (N, S, H, W) of S true states of each pattern (the
    one state S times in a fixed regime, each with its own camera noise); observed frames are
    in photo-electrons over the camera gain (intensity units)."""
    f = reg.fibre
    if reg.fixed:
        clean = np.repeat(f.one_state(patterns)[:, None], states, axis=1)
    else:
        clean = f.draws(patterns, states, seed)
    if reg.camera is None:
        return clean, clean
    n, s = clean.shape[:2]
    pixels = int(core_mask(f.size, f.core).sum())
    gain = camera_gain(reg.camera, pixels)
    flat = clean.reshape(n * s, f.size, f.size)
    noisy = fibre_counts(flat, reg.camera, seed, pixels) / gain
    return noisy.reshape(clean.shape), clean


def fibre_key(f: FibreStates) -> str:
    text = json.dumps(
        {**f.__dict__, "modal": f.modal.record() if f.modal else None}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fitted_tm(
    f: FibreStates,
    state: str,
    patterns: np.ndarray,
    steps: int,
    work: Path | None,
    log=print,
) -> tuple[TransmissionMatrix, np.ndarray]:
    """A TM fitted to pairs through the one state (`state` "one") or through states drawn per
    pair ("pooled"), and those pairs' frames; kept in `work` when given."""
    frames = f.one_state(patterns) if state == "one" else f.draws(patterns, 1, REF_SEED)[:, 0]
    digest = hashlib.sha256(np.ascontiguousarray(patterns, np.float32).tobytes()).hexdigest()[:8]
    path = None if work is None else work / f"tm-{fibre_key(f)}-{state}-{steps}-{digest}.npz"
    mask = core_mask(f.size, f.core)
    if path is not None and path.is_file():
        z = np.load(path)
        return TransmissionMatrix(z["re"], z["im"], mask, float(z["loss"]), float(z["s"])), frames
    log(f"fitting a TM ({state}) on {len(patterns)} pairs through {describe(f)}")
    tm = fit_transmission_matrix(patterns, frames, mask, steps=steps, batch=512)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, re=tm.re, im=tm.im, loss=tm.final_loss, s=tm.seconds)
        tmp.replace(path)
    return tm, frames
