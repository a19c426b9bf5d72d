"""Multimode-fibre speckle simulator.

The users' own setup. A 16x16 amplitude pattern (a scikit-learn handwritten digit, upsampled
from 8x8, randomly shifted, rotated and scaled) on an SLM is coupled into a multimode fibre,
described by a fixed random transmission matrix T; the camera sees I = |T x|^2 at the fibre
output. Each of the 256 columns of T is an independent circular complex Gaussian field,
band-limited by the fibre NA (random coefficients inside a circular pupil in k-space, then
an inverse FFT) and cut to the circular core. Any input x then gives a circular Gaussian
output field, so every image is fully developed speckle inside the core (Goodman, "Speckle
Phenomena in Optics", 2007, ch. 2-3: a sum of many independent random phasors), while
two inputs give output fields correlated by their overlap <x, x'>/|x||x'|.
T depends only on `fibre_seed`; the sample `seed` draws digits and their placement, so a new
seed draws new samples through the same fibre (a held-out set). `bend` mixes in a second
fibre, T' = mu T + sqrt(1 - mu^2) T_new: the field correlation with the straight fibre is mu,
the intensity correlation mu^2 (Goodman ch. 4: intensity correlation is |field corr.|^2).
"""

from __future__ import annotations

import gzip
import importlib.util
import math
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import fft as sfft
from scipy import ndimage

from speckle.camera import Camera, camera_gain, fibre_counts
from speckle.families import CLASS_LABEL, FAMILIES, family_bases, split_pool
from speckle.modal_fibre import FIBRES, ModalFibre
from speckle.modal_frames import modal_states, simulate_modal
from speckle.simulated import (
    AIRY_FWHM,
    FIBRE_TAG,
    MMF_TAG,
    N_INPUT,
    PATTERN_SIZE,
    SimulatedSet,
    scaled_to,
    value_range,
)

DEFAULT_FIBRE_SEED = 1234
DIGIT_SPLITS = ("train", "test", "all")
TEST_EVERY = 5  # bundled digit i is a test digit when i % 5 == 4: 359 of the 1797 (20%)
MIN_GRAIN = 2.0  # px: finer speckle is not resolved by the camera pixels and aliases


def digit_pool(split: str) -> np.ndarray:
    """Indices of the bundled digits in a split. The split is fixed, so that a `test` set never
    holds handwriting that a `train` set was drawn from, whatever the seeds."""
    n = len(_digits()[0])
    i = np.arange(n)
    if split == "all":
        return i
    if split == "train":
        return i[i % TEST_EVERY != TEST_EVERY - 1]
    if split == "test":
        return i[i % TEST_EVERY == TEST_EVERY - 1]
    raise ValueError(f"digits must be one of {', '.join(DIGIT_SPLITS)}, got {split!r}")


def family_pool(family: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bases, each base's class, the split's base indices) of a pattern family
    (speckle.families): the bundled digits, or letters, dots or bars."""
    if family not in FAMILIES:
        raise ValueError(f"pattern family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if family == "digits":
        base, target = _digits()
        return base, target, digit_pool(split)
    base, target = family_bases(family)
    return base, target, split_pool(len(base), split)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 bundled 8x8 digits as 16x16 amplitudes in [0, 1] (bilinear), and their classes."""
    images, target = _digits_8x8()
    up = ndimage.zoom(images / 16.0, (1, 2, 2), order=1)
    up = np.clip(up, 0.0, 1.0).astype(np.float32)
    up.flags.writeable = False
    target = np.asarray(target, dtype=np.int64)
    target.flags.writeable = False
    return up, target


def _digits_8x8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (images 0..16, classes), read from its data file when it is
    where load_digits keeps it: importing scikit-learn costs 1.3 s, which a fresh clone's first
    map would wait for. Otherwise through load_digits itself."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as f:
                data = np.loadtxt(f, delimiter=",", dtype=np.float64)
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    # Lazy: scikit-learn's import (1.3 s) stays off the first map (docs/architecture.md).
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def transform_patterns(
    base: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    angle: np.ndarray,
    scale: np.ndarray,
) -> np.ndarray:
    """Scale, rotate (degrees, counter-clockwise as displayed) about the centre, then shift
    (pixels; +dx right, +dy down) each (n, S, S) pattern; bilinear, zero outside. float32 in [0, 1].
    """
    base = np.asarray(base, dtype=np.float32)
    n, h, w = base.shape
    c_y, c_x = (h - 1) / 2, (w - 1) / 2
    y, x = np.indices((h, w), dtype=np.float64)
    th = np.deg2rad(np.asarray(angle, dtype=np.float64))[:, None, None]
    s = np.asarray(scale, dtype=np.float64)[:, None, None]
    yp = y[None] - c_y - np.asarray(dy, dtype=np.float64)[:, None, None]
    xp = x[None] - c_x - np.asarray(dx, dtype=np.float64)[:, None, None]
    # Inverse map of the on-screen CCW rotation (rows grow downwards): where each output pixel
    # samples the source.
    cos, sin = np.cos(th), np.sin(th)
    xs = (xp * cos - yp * sin) / s + c_x
    ys = (xp * sin + yp * cos) / s + c_y
    idx = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], xs.shape)
    out = ndimage.map_coordinates(base, [idx, ys, xs], order=1, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def core_mask(size: int, core: float = 0.9) -> np.ndarray:
    """Boolean (size, size) disc of diameter core*size: the fibre core as imaged on the camera."""
    c = (size - 1) / 2
    y, x = np.indices((size, size))
    return (y - c) ** 2 + (x - c) ** 2 <= (core * size / 2) ** 2


def _default_grain(size: int) -> float:
    return size / 16


@lru_cache(maxsize=4)
def transmission_matrix(
    fibre_seed: int = DEFAULT_FIBRE_SEED,
    *,
    size: int = 64,
    grain: float | None = None,
    core: float = 0.9,
) -> np.ndarray:
    """The fibre's (size*size, 256) complex64 transmission matrix (read-only; cached per seed).

    Column j is the output field for SLM pixel j alone: circular Gaussian k-space coefficients
    inside a circular pupil of diameter D = 1.03 P / grain on a P = 2 size grid, an inverse FFT,
    the central size x size crop, zero outside the core. The grid is padded to twice the image
    because an FFT field is periodic: unpadded, grains at opposite core edges would be
    correlated through the wrap-around. Scaled so that E[sum over the core of |T_j|^2] = 1
    (a lossless fibre conserves power on average). `grain` is the speckle FWHM in output pixels,
    default size/16, so the same fibre imaged at another `size` keeps its number of modes.
    """
    grain = _default_grain(size) if grain is None else float(grain)
    if size < 4:
        raise ValueError(f"size must be >= 4, got {size}")
    if not 0 < core <= 1:
        raise ValueError(f"core must be in (0, 1], got {core}")
    if grain < MIN_GRAIN:
        raise ValueError(
            f"grain must be at least {MIN_GRAIN:g} px (finer speckle aliases), got {grain:g}"
        )
    p = 2 * size
    diameter = AIRY_FWHM * p / grain
    if diameter < 1:
        raise ValueError(f"grain must be at most {AIRY_FWHM * p:.3g} px, got {grain:g}")
    k = np.fft.fftfreq(p) * p
    pupil = (k[:, None] ** 2 + k[None, :] ** 2) <= (diameter / 2) ** 2
    n_k = int(pupil.sum())
    mask = core_mask(size, core)
    rng = np.random.default_rng([FIBRE_TAG, int(fibre_seed)])
    coef = rng.standard_normal((N_INPUT, n_k, 2), dtype=np.float32)
    coef = (coef[..., 0] + 1j * coef[..., 1]) / np.sqrt(2 * n_k * int(mask.sum()))
    spectrum = np.zeros((N_INPUT, p, p), dtype=np.complex64)
    spectrum[:, pupil] = coef
    fields = sfft.ifft2(spectrum, axes=(-2, -1), norm="forward", workers=-1)
    o = (p - size) // 2
    fields = fields[:, o : o + size, o : o + size] * mask
    tm = np.ascontiguousarray(fields.reshape(N_INPUT, size * size).T).astype(np.complex64)
    tm.flags.writeable = False
    return tm


def propagate(patterns: np.ndarray, tm: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Output intensities |T x|^2 (n, S, S) float32 for SLM amplitude patterns (n, 16, 16)."""
    patterns = np.asarray(patterns, dtype=np.float32)
    x = patterns.reshape(len(patterns), int(np.prod(patterns.shape[1:])))
    if tm.ndim == 3:  # (polarizations, pixels, inputs): an unpolarized camera adds them
        return sum(propagate(patterns, t, chunk) for t in tm)
    if x.shape[1] != tm.shape[1]:
        raise ValueError(f"patterns have {x.shape[1]} pixels, the fibre takes {tm.shape[1]}")
    size = math.isqrt(tm.shape[0])
    lit = np.flatnonzero(np.any(tm != 0, axis=1))
    # x is real, so two float32 products beat one complex product (half the multiplications).
    t_re = np.ascontiguousarray(tm[lit].real.T)
    t_im = np.ascontiguousarray(tm[lit].imag.T)
    out = np.zeros((len(x), size * size), dtype=np.float32)
    block = np.zeros((chunk, x.shape[1]), dtype=np.float32)
    for s in range(0, len(x), chunk):
        # Always a full block, zero-padded: BLAS may pick its kernels, and so its summation
        # order, by the number of rows, and sample i must come out bit for bit the same
        # whatever n is (prefix-stable sets; seen differing by 2e-7 on a CPU without AVX-512).
        rows = min(chunk, len(x) - s)
        block[:rows] = x[s : s + rows]
        block[rows:] = 0.0
        re, im = block @ t_re, block @ t_im
        out[s : s + rows, lit] = (re * re + im * im)[:rows]
    return out.reshape(len(x), size, size)


def _placements(
    n: int, seed: int, pool: np.ndarray, shift: float, rotation: float, sc: tuple[float, float]
) -> tuple[np.ndarray, ...]:
    """Each sample's source pattern and its shift, rotation and scale."""
    # One row of uniforms per sample: sample i is the same whatever n is (prefix-stable sets).
    u = np.random.default_rng([MMF_TAG, int(seed)]).random((n, 5))
    source = pool[np.minimum((u[:, 0] * len(pool)).astype(np.int64), len(pool) - 1)]
    dx = scaled_to(u[:, 1], (-shift, shift))
    dy = scaled_to(u[:, 2], (-shift, shift))
    angle = scaled_to(u[:, 3], (-rotation, rotation))
    return source, dx, dy, angle, scaled_to(u[:, 4], sc)


def simulated_patterns(meta: dict) -> np.ndarray | None:
    """The SLM patterns (n, 16, 16) of a bundled-digit set from its simulation record alone, as
    simulate_mmf drew them (without the fibre, so in a fraction of its time); None for a set of
    the user's own patterns, which the record cannot rebuild."""
    if meta.get("kind") != "mmf" or meta.get("digits") not in DIGIT_SPLITS:
        return None
    base, _, pool = family_pool(meta.get("family", "digits"), meta["digits"])
    sc = value_range(tuple(meta["scale"]), "scale")
    placed = _placements(
        int(meta["n"]),
        int(meta["seed"]),
        pool,
        float(meta["shift"]),
        float(meta["rotation"]),
        sc,
    )
    source, dx, dy, angle, factor = placed
    return transform_patterns(base[source], dx, dy, angle, factor)


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
    grain = _default_grain(size) if grain is None else float(grain)
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
    source, dx, dy, angle, factor = _placements(n, seed, pool, shift, rotation, sc)
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

    source_label = (
        {CLASS_LABEL[family]: target[source]}
        if target is not None
        else {"source_file": [pattern_names[i] if pattern_names else str(i) for i in source]}
    )
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


def gaussian_states(meta: dict) -> list[np.ndarray]:
    size, grain, core = int(meta["size"]), meta.get("grain"), float(meta.get("core", 0.9))
    tm = transmission_matrix(int(meta["fibre_seed"]), size=size, grain=grain, core=core)
    bend = meta.get("bend")
    if bend is None:
        return [tm]
    bend_seed = int(meta.get("bend_seed") or int(meta["fibre_seed"]) + 1)
    states = meta.get("states")
    count, offsets = (int(states), range(int(states))) if states else (1, [0])
    mu = np.float32(bend)
    rest = np.float32(math.sqrt(1.0 - float(bend) ** 2))
    out = []
    for s in offsets:
        other = transmission_matrix(bend_seed + s, size=size, grain=grain, core=core)
        out.append(mu * tm + rest * other)
    assert len(out) == count
    return out
