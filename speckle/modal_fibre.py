"""The modal fibre: a transmission matrix built from a real fibre's guided modes, and the physical
perturbations that change it from frame to frame.

    T = M_out · R(τ) · C · K(κ, θ) · diag(exp(i Δφ)) · P

P (n x 256) projects the SLM onto the modes: the 16 x 16 SLM is imaged onto the input facet, its
square spanning the core diameter, and SLM pixel j's field (uniform over its square, unit power)
is projected onto each mode ψ_m, P[m, j] = <ψ_m, F_j>; light outside the guided modes is lost.
K = exp(i L B) propagates over the length L with B = diag(β) for a straight fibre; a bend of
curvature κ in direction θ adds the first-order perturbative coupling in the straight fibre's
mode basis, B = diag(β) - n_clad k κ (cos θ Γx + sin θ Γy), Γx = M^H diag(x) M (Plöschner, Tyc
and Čižmár, Nat. Photon. 9, 529, 2015; the operator pyMMF's `Modes.getEvolutionOperator`
builds). Δφ is the mode-dependent phase of a temperature change, a strain or a wavelength
detuning (`mode_phase`), applied as its own diagonal factor. C (n_pol·n x n) is the first n
columns of a random unitary coupling the modes, `coupling`. R(τ) rotates the output by the twist
τ of a fibre conformation. M_out (size² x n) holds the modes as the camera sees them. With two
polarizations the input is polarized along x and the camera, without a polarizer, adds the two
output polarizations' intensities.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits

from speckle.modes import (
    N_CORE,
    FibreSpec,
    ModeSet,
    estimated_modes,
    pymmf_version,
    solve_modes,
    v_number,
)
from speckle.simulated import FIBRE_TAG, N_INPUT, PATTERN_SIZE, value_range

MODAL_TAG = 0x30DE
FIBRES = ("gaussian", "modes")  # the Gaussian random TM, and this one
POLARIZATIONS = ("one", "both")
# Silica: thermo-optic coefficient dn/dT near 1 µm at 20-30 °C (Leviton and Frey, Proc. SPIE
# 6273, 62732K, 2006: 0.9e-5 to 1.0e-5 /K), thermal expansion (Corning 7980 data sheet), and
# the effective strain-optic coefficient p_e = (n²/2)(p12 - ν(p11 + p12)) (Bertholds and
# Dändliker, J. Lightwave Technol. 6, 17, 1988).
DN_DT = 1.0e-5  # /K
THERMAL_EXPANSION = 5.5e-7  # /K
STRAIN_OPTIC = 0.22
DETUNING_STEP = 2e-3  # relative λ step of the second solve that gives dβ/dλ
UM_PER_M = 1e6
NM_PER_UM = 1e3


@dataclass(frozen=True)
class ModalFibre:
    """A fibre solved by pyMMF and its perturbations. Lengths: core radius, wavelength in µm;
    length in m; detuning in nm; curvature in 1/m. Ranges are (lo, hi), drawn per frame."""

    profile: str = "step"
    core_radius: float = 15.0
    na: float = 0.2
    wavelength: float = 1.0
    length: float = 1.0
    grid: int | None = None  # solver grid; None: the camera's size
    solver: str = "auto"
    coupling_within: float = 1.0  # 0 none .. 1 full (Haar) within each mode group
    coupling_across: float = 0.0  # 0 none .. 1 full (Haar) across all modes
    polarization: str = "one"
    temperature: tuple[float, float] | None = None  # ΔT, K
    strain: tuple[float, float] | None = None  # ΔL/L
    detuning: tuple[float, float] | None = None  # Δλ, nm
    bend: tuple[float, float] | None = None  # curvature κ, 1/m
    conformations: int | None = None  # M random bend and twist states
    twist: float = 0.0  # max |twist| of a conformation, degrees
    drift: float = 0.0  # random-walk step per frame, a fraction of each range; 0: independent

    def __post_init__(self) -> None:
        for name in ("temperature", "strain", "detuning", "bend"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, value_range(value, name))
        if self.polarization not in POLARIZATIONS:
            raise ValueError(f"polarization must be one of {', '.join(POLARIZATIONS)}")
        if not (0 <= self.coupling_within <= 1 and 0 <= self.coupling_across <= 1):
            raise ValueError("coupling strengths must be in [0, 1]")
        if not self.length > 0 or self.drift < 0 or self.twist < 0:
            raise ValueError("length must be > 0, drift and twist >= 0")
        if self.bend is not None and self.bend[0] < 0:
            raise ValueError(f"bend curvature must be >= 0, got {self.bend}")
        if self.conformations is not None and self.conformations < 1:
            raise ValueError(f"conformations must be >= 1, got {self.conformations}")

    def spec(self, size: int, core: float) -> FibreSpec:
        grid = size if self.grid is None else int(self.grid)
        return FibreSpec(
            self.profile, self.core_radius, self.na, self.wavelength, grid, core, self.solver
        )

    def record(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, record: dict) -> ModalFibre:
        names = {f.name for f in fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in names}
        )


def coupling(groups: np.ndarray, n_pol: int, within: float, across: float, rng) -> np.ndarray:
    """A random unitary on the n_pol·n (polarization-major) modes: the polar factor of
    A = (1 - a)((1 - w) I + w G_groups) + a G_all, G complex Ginibre matrices (entries of variance
    1/block size) restricted to each mode group (both polarizations of a group in one block) or
    over all modes. w = a = 0 is no coupling; w = 1 alone a Haar unitary within each group (the
    polar factor of a Ginibre matrix is Haar: Mezzadri, Notices AMS 54, 592, 2007); a = 1 a Haar
    unitary over all modes, the Gaussian-TM limit."""
    n = len(groups) * n_pol
    g = np.tile(groups, n_pol)
    block = np.zeros((n, n), dtype=np.complex128)
    for k in np.unique(g):
        i = np.flatnonzero(g == k)
        z = rng.standard_normal((len(i), len(i), 2)) @ [1, 1j] / math.sqrt(2 * len(i))
        block[np.ix_(i, i)] = z
    full = rng.standard_normal((n, n, 2)) @ [1, 1j] / math.sqrt(2 * n)
    a = (1 - across) * ((1 - within) * np.eye(n) + within * block) + across * full
    u, _, vh = np.linalg.svd(a)
    return u @ vh


def slm_fields(grid: int, core: float) -> np.ndarray:
    """(grid², 256) float: SLM pixel j imaged onto the input facet, uniform over its square (the
    16 x 16 SLM spans the core diameter), each of unit power; grid pixels partly inside a square
    weigh by the overlapping fraction."""
    side = core * grid / PATTERN_SIZE  # SLM pixel width in grid pixels
    start = (grid - 1) / 2 - core * grid / 2
    lo = start + side * np.arange(PATTERN_SIZE)
    px = np.arange(grid)[:, None]
    w = np.clip(np.minimum(px + 0.5, lo + side) - np.maximum(px - 0.5, lo), 0.0, None)  # (g, 16)
    f = np.einsum("yj,xk->yxjk", w, w).reshape(grid * grid, N_INPUT)
    return f / side


def camera_modes(modes: ModeSet, size: int) -> np.ndarray:
    """(size², n) complex64: the mode profiles resampled (bilinear) from the solver grid onto the
    size x size camera, whose view of the core is the same fraction of its width; unit power."""
    grid = modes.spec.grid
    prof = modes.profiles
    if grid != size:
        c_in, c_out = (grid - 1) / 2, (size - 1) / 2
        y, x = np.indices((size, size), dtype=np.float64)
        coords = [c_in + (y - c_out) * grid / size, c_in + (x - c_out) * grid / size]
        cube = prof.T.reshape(-1, grid, grid)
        prof = np.stack(
            [
                ndimage.map_coordinates(p.real, coords, order=1)
                + 1j * ndimage.map_coordinates(p.imag, coords, order=1)
                for p in cube
            ],
            axis=-1,
        ).reshape(size * size, -1)
    prof = prof / np.linalg.norm(prof, axis=0, keepdims=True)
    return prof.astype(np.complex64)


def rotation_in_modes(modes: ModeSet, degrees: float) -> np.ndarray:
    """(n, n) R = M^H rot(M): the output field rotated by `degrees` about the fibre axis, in the
    mode basis (a rotation maps guided modes onto guided modes of a round core)."""
    g = modes.spec.grid
    cube = modes.profiles.T.reshape(-1, g, g)
    rot = np.stack(
        [
            ndimage.rotate(p.real, degrees, reshape=False, order=1)
            + 1j * ndimage.rotate(p.imag, degrees, reshape=False, order=1)
            for p in cube
        ],
        axis=-1,
    ).reshape(g * g, -1)
    return modes.profiles.conj().T @ rot


def mode_phase(
    betas: np.ndarray,
    length_um: float,
    wavelength: float,
    temperature: np.ndarray,
    strain: np.ndarray,
) -> np.ndarray:
    """(frames, n) phase Δφ_m of a temperature change ΔT (K) and a strain ε = ΔL/L. The length
    grows by (α ΔT + ε) L, so β_m L by that much; the index of core and cladding moves together
    by δn = (dn/dT) ΔT - p_e n1 ε, which leaves each mode's transverse wavenumber
    κ_m² = k² n1² - β_m² as it is, so dβ_m/dn = k² n1 / β_m: slower modes shift more."""
    k = 2 * math.pi / wavelength
    dl = THERMAL_EXPANSION * temperature + strain
    dn = DN_DT * temperature - STRAIN_OPTIC * N_CORE * strain
    return length_um * (dl[:, None] * betas[None] + dn[:, None] * (k * k * N_CORE / betas)[None])


def beta_slope(spec: FibreSpec, modes: ModeSet) -> np.ndarray:
    """dβ_m/dλ (rad/µm per µm) from a second pyMMF solve at λ(1 - DETUNING_STEP) (a shorter
    wavelength guides every mode of λ), each mode of λ matched to the one there it overlaps most
    (Hungarian assignment on |<ψ, ψ'>|²): β is re-solved, then interpolated linearly in λ."""
    step = spec.wavelength * DETUNING_STEP
    other = solve_modes(
        FibreSpec(
            spec.profile,
            spec.core_radius,
            spec.na,
            spec.wavelength - step,
            spec.grid,
            spec.core,
            spec.solver,
        )
    )
    overlap = np.abs(modes.profiles.conj().T @ other.profiles) ** 2  # (n, n')
    rows, cols = linear_sum_assignment(-overlap)
    slope = np.zeros(modes.count)
    slope[rows] = (modes.betas[rows] - other.betas[cols]) / step
    return slope


@dataclass(frozen=True)
class Operators:
    """Everything about a fibre that no frame changes."""

    modes: ModeSet
    m_out: np.ndarray  # (size², n) complex64
    project: np.ndarray  # P (n, 256) complex128
    couple: np.ndarray  # C (n_pol·n, n) complex128
    betas: np.ndarray  # β_m - β_0, rad/µm
    gamma: np.ndarray  # (2, n, n) Γx, Γy in µm
    slope: np.ndarray | None  # dβ/dλ or None without detuning
    n_pol: int


@lru_cache(maxsize=8)
def operators(fibre: ModalFibre, size: int, core: float, fibre_seed: int) -> Operators:
    # One BLAS thread: these products and the SVD are of n x n or n x grid² matrices; on a busy
    # 2-core machine threads made a build 1.1 s against 0.1 s (measured).
    with threadpool_limits(limits=1, user_api="blas"):
        return _build_operators(fibre, size, core, fibre_seed)


def _build_operators(fibre: ModalFibre, size: int, core: float, fibre_seed: int) -> Operators:
    spec = fibre.spec(size, core)
    modes = solve_modes(spec)
    m_in = modes.profiles.astype(np.complex128)
    project = m_in.conj().T @ slm_fields(spec.grid, core)
    n_pol = 2 if fibre.polarization == "both" else 1
    rng = np.random.default_rng([FIBRE_TAG, int(fibre_seed), MODAL_TAG])
    u = coupling(modes.groups, n_pol, fibre.coupling_within, fibre.coupling_across, rng)
    x = (np.arange(spec.grid) - (spec.grid - 1) / 2) * spec.pitch
    xx, yy = np.meshgrid(x, x)
    gamma = np.stack([m_in.conj().T @ (c.reshape(-1, 1) * m_in) for c in (xx, yy)])
    slope = beta_slope(spec, modes) if fibre.detuning is not None else None
    return Operators(
        modes,
        camera_modes(modes, size),
        project,
        u[:, : modes.count],
        modes.betas - modes.betas[0],
        gamma,
        slope,
        n_pol,
    )


def fibre_record(fibre: ModalFibre, ops: Operators) -> dict:
    """The derived physical parameters simulation.json keeps beside the options."""
    spec = ops.modes.spec
    return {
        **fibre.record(),
        "grid": spec.grid,
        "solver_used": spec.method,
        "pymmf": pymmf_version(),
        "modes": ops.modes.count,
        "groups": int(ops.modes.groups.max()) + 1,
        "v_number": v_number(spec),
        "estimated_modes": estimated_modes(spec),
        "n_core": N_CORE,
        "n_clad": math.sqrt(N_CORE**2 - spec.na**2),
        "window_um": spec.window,
        "pitch_um": spec.pitch,
        "dn_dT": DN_DT,
        "thermal_expansion": THERMAL_EXPANSION,
        "strain_optic": STRAIN_OPTIC,
        "slm": "16x16 imaged onto the input facet, spanning the core diameter",
    }
