"""Multimode-fibre speckle simulator: the simulation entry points.

The users' own setup. A 16x16 amplitude pattern (a scikit-learn handwritten digit, upsampled
from 8x8, randomly shifted, rotated and scaled: speckle.slm_patterns) on an SLM is coupled into a
multimode fibre, described by a fixed random transmission matrix T (speckle.gaussian_fibre, or
the modal fibre of speckle.modal_fibre); the camera sees I = |T x|^2 at the fibre output.
T depends only on `fibre_seed`; the sample `seed` draws digits and their placement, so a new
seed draws new samples through the same fibre (a held-out set). `bend` mixes in a second
fibre, T' = mu T + sqrt(1 - mu^2) T_new: the field correlation with the straight fibre is mu,
the intensity correlation mu^2 (Goodman ch. 4: intensity correlation is |field corr.|^2).
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pandas as pd

from speckle.camera import Camera, camera_gain, fibre_counts
from speckle.families import CLASS_LABEL, TEST_EVERY
from speckle.gaussian_fibre import (
    DEFAULT_FIBRE_SEED,
    core_mask,
    default_grain,
    gaussian_states,
    propagate,
    transmission_matrix,
)
from speckle.modal_fibre import FIBRES, ModalFibre
from speckle.modal_frames import modal_states, simulate_modal
from speckle.simulated import MMF_TAG, PATTERN_SIZE, SimulatedSet, value_range
from speckle.slm_patterns import (
    DIGIT_SPLITS,
    base_family,
    family_names,
    family_pool,
    placements,
    transform_patterns,
)


def rebuildable(meta: dict | None) -> bool:
    """Whether a set's simulation record alone rebuilds it: a fibre set of the bundled digits (a
    set of the user's own patterns needs their files)."""
    return bool(meta) and meta.get("kind") == "mmf" and meta.get("digits") in DIGIT_SPLITS


def simulate_from_record(meta: dict, n: int | None = None) -> SimulatedSet:
    """The set a `simulation.json` record describes, simulated again with every parameter it
    holds (fibre, grain, core, size, placement ranges, bend and states). `n` below the record's
    gives its first n samples: sets are prefix-stable."""
    if not rebuildable(meta):
        raise ValueError(
            "the simulation record is not of a bundled-digit fibre set, so it cannot be rebuilt "
            f"(kind {meta.get('kind')!r}, digits {meta.get('digits')!r})"
        )
    missing = [k for k in ("n", "seed", "fibre_seed") if k not in meta]
    if missing:
        raise ValueError(f"the simulation record lacks {', '.join(missing)}")
    count = int(meta["n"]) if n is None else min(int(n), int(meta["n"]))
    bend = meta.get("bend")
    return simulate_mmf(
        count,
        int(meta["seed"]),
        size=int(meta.get("size", 64)),
        fibre_seed=int(meta["fibre_seed"]),
        shift=float(meta.get("shift", 2.0)),
        rotation=float(meta.get("rotation", 15.0)),
        scale=tuple(meta.get("scale", (0.9, 1.1))),
        bend=None if bend is None else float(bend),
        bend_seed=None if meta.get("bend_seed") is None else int(meta["bend_seed"]),
        grain=None if meta.get("grain") is None else float(meta["grain"]),
        core=float(meta.get("core", 0.9)),
        digits=str(meta["digits"]),
        states=None if meta.get("states") is None or meta.get("modal") else int(meta["states"]),
        fibre=str(meta.get("fibre", "gaussian")),
        modal=ModalFibre.from_record(meta["modal"]) if meta.get("modal") else None,
        camera=Camera(**meta["camera"]) if meta.get("camera") else None,
        family=str(meta.get("family", "digits")),
    )


def simulate_mmf(
    n: int,
    seed: int,
    *,
    size: int = 64,
    fibre_seed: int = DEFAULT_FIBRE_SEED,
    shift: float = 2.0,
    rotation: float = 15.0,
    scale: tuple[float, float] | float = (0.9, 1.1),
    bend: float | None = None,
    bend_seed: int | None = None,
    grain: float | None = None,
    core: float = 0.9,
    digits: str = "train",
    patterns: np.ndarray | None = None,
    pattern_names: list[str] | None = None,
    states: int | None = None,
    fibre: str = "gaussian",
    modal: ModalFibre | None = None,
    camera: Camera | None = None,
    family: str = "digits",
) -> SimulatedSet:
    """Digits on an SLM through a multimode fibre; see the module docstring.

    Per sample: a digit drawn uniformly from the bundled ones in the `digits` split (`digit_pool`),
    or from the user's own `patterns` (k, 16, 16) amplitudes in [0, 1] when given, shift dx, dy
    uniform in
    [-shift, shift] px (continuous), rotation uniform in [-rotation, rotation] degrees, scale
    uniform in `scale`. `bend` mu in [0, 1] mixes in the fibre of `bend_seed` (default
    fibre_seed + 1): mu = 1 is the straight fibre, mu = 0 the other one. `states` M with `bend`
    mu: M perturbed fibres T_s = mu T + sqrt(1 - mu^2) G_s (G_s the fibre of seed bend_seed + s),
    and each sample goes through one drawn at random (label `state`): a fibre that moves between
    recordings, whose output for one pattern is random, with intensity correlation about mu^4
    between two states. `fibre` "modes" sends them through the modal fibre `modal` instead
    (`speckle.modal_fibre`; its per-frame factors become labels); `camera` adds camera noise.
    Labels: digit (bundled digits only) or source_file (own patterns), source_index, dx, dy,
    angle, scale, power (sum of x^2, the input power), and state. `family` draws letters, dots
    or bars (speckle.families) instead of digits, from its `digits` split, with its class label
    (letter, dots, bars) in place of digit.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if shift < 0 or rotation < 0:
        raise ValueError("shift and rotation are half-widths and must be >= 0")
    sc = value_range(scale, "scale")
    if sc[0] <= 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    if fibre not in FIBRES:
        raise ValueError(f"fibre must be one of {', '.join(FIBRES)}, got {fibre!r}")
    if fibre == "modes" and (bend is not None or states is not None):
        raise ValueError("--states and the bend mu are the Gaussian fibre's; use --conformations")
    if bend is not None and not 0 <= bend <= 1:
        raise ValueError(f"bend must be in [0, 1], got {bend}")
    if states is not None and (states < 1 or bend is None):
        raise ValueError("states needs a count >= 1 and a bend mu (--states M --bend MU)")
    grain = default_grain(size) if grain is None else float(grain)
    bend_seed = fibre_seed + 1 if bend_seed is None else bend_seed

    own = patterns is not None
    if not own:
        base, target, pool = family_pool(family, digits)
    else:
        base = np.clip(np.asarray(patterns, dtype=np.float32), 0.0, 1.0)
        if base.ndim != 3 or base.shape[1:] != (PATTERN_SIZE, PATTERN_SIZE) or not len(base):
            raise ValueError(
                f"patterns must be (k, {PATTERN_SIZE}, {PATTERN_SIZE}), got {base.shape}"
            )
        target, pool = None, np.arange(len(base))
    source, dx, dy, angle, factor = placements(n, seed, pool, shift, rotation, sc)
    patterns = transform_patterns(base[source], dx, dy, angle, factor)

    modal = (modal or ModalFibre()) if fibre == "modes" else None
    factors, modal_record = {}, None
    state = np.zeros(n, dtype=np.int64)
    if states is not None:
        # Its own stream, so that the digits and their placement are those of the same seed
        # without states.
        state = np.random.default_rng([MMF_TAG, int(seed), 1]).integers(states, size=n)
    if modal is not None:
        images, factors, modal_record = simulate_modal(
            patterns, seed, modal, size, core, fibre_seed
        )
    elif bend is None:
        images = propagate(
            patterns, transmission_matrix(fibre_seed, size=size, grain=grain, core=core)
        )
    else:
        tm = transmission_matrix(fibre_seed, size=size, grain=grain, core=core)
        images = np.zeros((n, size, size), dtype=np.float32)
        for s in np.unique(state):
            other = transmission_matrix(bend_seed + int(s), size=size, grain=grain, core=core)
            mu = np.float32(bend)
            bent = mu * tm + np.float32(math.sqrt(1.0 - bend * bend)) * other
            images[state == s] = propagate(patterns[state == s], bent)
    if camera is not None:
        images = fibre_counts(images, camera, seed, int(core_mask(size, core).sum()))

    if target is None:
        source_label = {
            "source_file": [pattern_names[i] if pattern_names else str(i) for i in source]
        }
    elif len(family_names(family)) > 1:
        # A mixed set: each frame's family, and its class within that family.
        source_label = {"family": base_family(family)[source], "class": target[source]}
    else:
        source_label = {CLASS_LABEL[family]: target[source]}
    labels = pd.DataFrame(
        {
            **source_label,
            "source_index": source,
            "dx": dx,
            "dy": dy,
            "angle": angle,
            "scale": factor,
            "power": (patterns.astype(np.float64) ** 2).sum(axis=(1, 2)),
            **({"state": state} if states is not None else {}),
            **factors,
        }
    )
    meta = {
        "kind": "mmf",
        "n": n,
        "seed": seed,
        "size": size,
        "fibre_seed": fibre_seed,
        "shift": shift,
        "rotation": rotation,
        "scale": list(sc),
        "bend": bend,
        "bend_seed": bend_seed if bend is not None else None,
        "grain": grain if modal is None else None,
        "core": core,
        "fibre": fibre,
        "modal": modal_record,
        "camera": asdict(camera) if camera is not None else None,
        "states": states if modal is None else modal.conformations,  # fibre_states' count
        "pattern_size": PATTERN_SIZE,
        "digits": None if own else digits,
        **({"family": family} if not own and family != "digits" else {}),
        "digit_split": f"bundled digit i is in test when i % {TEST_EVERY} == {TEST_EVERY - 1}",
        "patterns": (
            "sklearn load_digits 8x8, bilinear to 16x16, amplitude in [0, 1]"
            if not own and family == "digits"
            else f"speckle.families {family}, 16x16, amplitude in [0, 1]"
            if not own
            else f"{len(base)} pattern images of the user's, area-resized to 16x16, in [0, 1]"
        ),
    }
    return SimulatedSet(images=images, labels=labels, patterns=patterns, meta=meta)


def fibre_states(meta: dict) -> list[np.ndarray]:
    """The transmission matrices a simulated set's `simulation.json` (`meta`) describes: one for
    a fixed or bent fibre, M for a set with `states` (the matrix of state s is index s). With
    these, `propagate` gives the true output of any pattern through that fibre (for a set with a
    camera, its mean photo-electron count: the frames' units)."""
    states = modal_states(meta) if meta.get("fibre") == "modes" else gaussian_states(meta)
    if not meta.get("camera"):
        return states
    pixels = int(core_mask(int(meta["size"]), float(meta.get("core", 0.9))).sum())
    gain = np.float32(math.sqrt(camera_gain(Camera(**meta["camera"]), pixels)))
    return [s * gain for s in states]
