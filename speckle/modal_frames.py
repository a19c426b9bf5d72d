"""Frames through the modal fibre (`speckle.modal_fibre`): the perturbation of each frame, drawn
or random-walked along the frame index, and the output intensities; and the transmission
matrices a `simulation.json` describes.

Per frame, with each factor's range given: temperature ΔT, strain ε, detuning Δλ, bend curvature
κ and bend direction θ (uniform in [0, 360) degrees). `drift` D > 0 makes each factor a random
walk along the frame index, steps N(0, D²) in units of its range, reflected at the range's ends
(the first frame uniform): a fibre that wanders over a recording. `conformations` M fixes M
random states of the fibre (Resisi, Viernik, Popoff and Bromberg, APL Photonics 5, 036103,
2020: an MMF whose bends and twists are changed between measurements), each a curvature from the
bend range (default 0 to 1 /m), a direction, and a twist τ uniform in [-twist, twist] degrees,
drawn from the fibre seed; each frame goes through one of them at random (label `state`).
"""

from __future__ import annotations

import math

import numpy as np
from threadpoolctl import threadpool_limits

from speckle.modal_fibre import (
    MODAL_TAG,
    NM_PER_UM,
    UM_PER_M,
    ModalFibre,
    Operators,
    fibre_record,
    mode_phase,
    operators,
    rotation_in_modes,
)
from speckle.modes import N_CORE
from speckle.simulated import FIBRE_TAG, N_INPUT

SUB = 128  # frames whose bent propagators (n x n each) are built at once
BLOCK = 1024  # frames per block; full zero-padded blocks keep sets prefix-stable bit for bit
DEFAULT_CONFORMATION_BEND = (0.0, 1.0)  # 1/m, when --conformations comes without --bend
FACTORS = ("temperature", "strain", "detuning", "curvature", "bend_angle")


def walk(u: np.ndarray, z: np.ndarray, lo: float, hi: float, drift: float) -> np.ndarray:
    """Per-frame values in [lo, hi]: uniform draws u when drift is 0, else a random walk from
    u[0] with steps drift * z, reflected at the ends (folding the free walk onto [0, 1])."""
    if drift == 0 or len(u) == 0:
        x = u
    else:
        free = u[0] + drift * np.concatenate([[0.0], np.cumsum(z[1:])])
        x = np.mod(free, 2.0)
        x = np.where(x > 1, 2 - x, x)
    return lo + (hi - lo) * x


def factor_ranges(fibre: ModalFibre, bend_angle=(0.0, 360.0)) -> dict[str, tuple | None]:
    """Each factor's range of values (None: the factor is off). A bend's direction spans
    `bend_angle`; with conformations, bend is theirs and no per-frame factor."""
    single = fibre.conformations is None
    return {
        "temperature": fibre.temperature,
        "strain": fibre.strain,
        "detuning": fibre.detuning,
        "curvature": fibre.bend if single else None,
        "bend_angle": bend_angle if fibre.bend and single else None,
    }


def draw_factors(n: int, seed: int, fibre: ModalFibre) -> dict[str, np.ndarray]:
    """Each frame's perturbation, as label columns (only the factors that are on)."""
    u_ss, z_ss, s_ss = np.random.SeedSequence([MODAL_TAG, int(seed)]).spawn(3)
    # One row per frame in each stream: frame i is the same whatever n is (prefix-stable).
    u = np.random.default_rng(u_ss).random((n, len(FACTORS)))
    z = np.random.default_rng(z_ss).standard_normal((n, len(FACTORS)))
    ranges = factor_ranges(fibre)
    out = {}
    for i, name in enumerate(FACTORS):
        r = ranges[name]
        if r is not None:
            out[name] = walk(u[:, i], z[:, i], r[0], r[1], fibre.drift)
    if fibre.conformations is not None:
        pick = np.random.default_rng(s_ss).random(n)
        out["state"] = np.minimum(
            (pick * fibre.conformations).astype(np.int64), fibre.conformations - 1
        )
    return out


def conformations(fibre: ModalFibre, fibre_seed: int) -> dict[str, np.ndarray]:
    """The M conformations' curvature (1/m), direction and twist (degrees): from the fibre seed,
    so that `simulation.json` alone rebuilds them."""
    m = int(fibre.conformations or 0)
    u = np.random.default_rng([FIBRE_TAG, int(fibre_seed), MODAL_TAG, 1]).random((m, 3))
    lo, hi = fibre.bend or DEFAULT_CONFORMATION_BEND
    return {
        "curvature": lo + (hi - lo) * u[:, 0],
        "bend_angle": 360.0 * u[:, 1],
        "twist": fibre.twist * (2 * u[:, 2] - 1),
    }


def bent_propagators(ops: Operators, fibre: ModalFibre, curvature, angle) -> np.ndarray:
    """(k, n, n) K = exp(i L B), B = diag(β - β_0) - n_clad k0 κ (cos θ Γx + sin θ Γy)."""
    spec = ops.modes.spec
    k0 = 2 * math.pi / spec.wavelength
    n_clad = math.sqrt(N_CORE**2 - spec.na**2)
    kappa = np.asarray(curvature, dtype=np.float64) / UM_PER_M
    th = np.deg2rad(np.asarray(angle, dtype=np.float64))
    strength = (n_clad * k0 * kappa)[:, None, None]
    b = np.diag(ops.betas)[None] - strength * (
        np.cos(th)[:, None, None] * ops.gamma[0] + np.sin(th)[:, None, None] * ops.gamma[1]
    )
    # One BLAS thread: 90 x 90 eigenproblems gain nothing from threads, and on a busy 2-core
    # machine OpenBLAS's threads made them 30x slower (74 against 2 ms each, measured).
    length = fibre.length * UM_PER_M
    with threadpool_limits(limits=1, user_api="blas"):
        w, v = np.linalg.eigh(b)
        return (v * np.exp(1j * length * w)[:, None, :]) @ np.conj(np.swapaxes(v, -1, -2))


def apply_fibre(
    ops: Operators,
    fibre: ModalFibre,
    factors: dict[str, np.ndarray],
    fixed: dict,
    c: np.ndarray,
    live: int | None = None,
) -> np.ndarray:
    """(k, n_pol·n) output mode amplitudes R · C · K · diag(exp(i Δφ)) c for the input mode
    amplitudes c (k, n) of k frames with these factors (none: the unperturbed fibre). Bent
    propagators are built for the first `live` frames only (the others are zero padding)."""
    k = len(c)
    length = fibre.length * UM_PER_M
    zero = np.zeros(k)
    dphi = mode_phase(
        ops.modes.betas,
        length,
        ops.modes.spec.wavelength,
        factors.get("temperature", zero),
        factors.get("strain", zero),
    )
    if ops.slope is not None:
        detune = factors.get("detuning", zero) / NM_PER_UM
        dphi = dphi + length * ops.slope[None] * detune[:, None]
    dphi = dphi - dphi[:, :1]  # only phase differences between modes are seen
    c = c * np.exp(1j * dphi)
    if "state" in factors:
        c = np.einsum("kij,kj->ki", fixed["propagators"][factors["state"]], c)
    elif "curvature" in factors:
        for s in range(0, k if live is None else live, SUB):  # (SUB, n, n) propagators at a time
            prop = bent_propagators(
                ops, fibre, factors["curvature"][s : s + SUB], factors["bend_angle"][s : s + SUB]
            )
            c[s : s + SUB] = np.einsum("kij,kj->ki", prop, c[s : s + SUB])
    else:
        c = c * np.exp(1j * ((ops.betas * length) % (2 * math.pi)))[None]
    d = c @ ops.couple.T
    if "state" in factors and "rotations" in fixed:
        nm = ops.modes.count
        rot = fixed["rotations"][factors["state"]]
        for p in range(ops.n_pol):
            d[:, p * nm : (p + 1) * nm] = np.einsum("kij,kj->ki", rot, d[:, p * nm : (p + 1) * nm])
    return d


def fixed_states(ops: Operators, fibre: ModalFibre, fibre_seed: int) -> dict:
    """The conformations' propagators and output rotations, computed once per set."""
    if fibre.conformations is None:
        return {}
    c = conformations(fibre, fibre_seed)
    out = {"propagators": bent_propagators(ops, fibre, c["curvature"], c["bend_angle"])}
    if fibre.twist:
        out["rotations"] = np.stack([rotation_in_modes(ops.modes, t) for t in c["twist"]])
    return out


def modal_images(
    patterns: np.ndarray, fibre: ModalFibre, factors: dict, size: int, core: float, fibre_seed: int
) -> np.ndarray:
    """(n, size, size) float32 intensities: the sum over polarizations of |M_out T_mode P x|²."""
    ops = operators(fibre, size, core, fibre_seed)
    fixed = fixed_states(ops, fibre, fibre_seed)
    n = len(patterns)
    x = np.asarray(patterns, dtype=np.float64).reshape(n, -1)
    m_out_t = np.ascontiguousarray(ops.m_out.T)  # (n_modes, size²)
    nm = ops.modes.count
    out = np.zeros((n, size * size), dtype=np.float32)
    block = np.zeros((BLOCK, x.shape[1]))
    for s in range(0, n, BLOCK):
        rows = min(BLOCK, n - s)
        block[:rows] = x[s : s + rows]
        block[rows:] = 0.0
        part = {
            k: np.pad(v[s : s + rows], (0, BLOCK - rows), mode="edge") for k, v in factors.items()
        }
        d = apply_fibre(ops, fibre, part, fixed, block @ ops.project.T, live=rows)
        total = np.zeros((BLOCK, size * size), dtype=np.float32)
        for p in range(ops.n_pol):
            f = d[:, p * nm : (p + 1) * nm].astype(np.complex64) @ m_out_t
            total += f.real**2 + f.imag**2
        out[s : s + rows] = total[:rows]
    return out.reshape(n, size, size)


def modal_states(meta: dict) -> list[np.ndarray]:
    """The transmission matrices of a modal set's `simulation.json`: one per conformation, else
    one, the unperturbed fibre (ΔT = ε = Δλ = κ = 0). Each is (size², 256) for one polarization,
    (2, size², 256) for two (the camera adds their intensities; `gaussian_fibre.propagate` does)."""
    fibre = ModalFibre.from_record(meta["modal"])
    size, core, seed = int(meta["size"]), float(meta.get("core", 0.9)), int(meta["fibre_seed"])
    ops = operators(fibre, size, core, seed)
    fixed = fixed_states(ops, fibre, seed)
    nm = ops.modes.count
    out = []
    for s in range(fibre.conformations or 1):
        factors = {"state": np.full(N_INPUT, s)} if fibre.conformations else {}
        d = apply_fibre(ops, fibre, factors, fixed, ops.project.T.copy())  # (256, n_pol·n)
        t = np.stack(
            [
                ops.m_out @ d[:, p * nm : (p + 1) * nm].T.astype(np.complex64)
                for p in range(ops.n_pol)
            ]
        )
        t = t[0] if ops.n_pol == 1 else t
        t.flags.writeable = False
        out.append(t)
    return out


def simulate_modal(
    patterns: np.ndarray, seed: int, fibre: ModalFibre, size: int, core: float, fibre_seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """(images, per-frame factor labels, the fibre's record for simulation.json)."""
    factors = draw_factors(len(patterns), seed, fibre)
    images = modal_images(patterns, fibre, factors, size, core, fibre_seed)
    ops = operators(fibre, size, core, fibre_seed)
    labels = dict(factors)
    if fibre.conformations is not None:
        c = conformations(fibre, fibre_seed)
        for k in ("curvature", "bend_angle", "twist"):
            labels[k] = c[k][factors["state"]]
    return images, labels, fibre_record(fibre, ops)
