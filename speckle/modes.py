"""Guided modes of a real multimode fibre, solved once by pyMMF and cached.

A fibre is a step-index or parabolic graded-index (GRIN) core of radius a and numerical aperture
NA at wavelength λ; its scalar (LP, weakly guiding) modes are solved on a `grid` x `grid` window
whose width is chosen so that the core diameter spans the fraction `core` of it: the same
geometry as the camera's view of the fibre's output facet in `speckle.gaussian_fibre`. Step-index fibres
use pyMMF's semi-analytical solver (`solve(mode="SI")`: the LP dispersion relation solved
numerically, Bessel-function profiles; Okamoto, "Fundamentals of optical waveguides", 2006, ch.
3); GRIN fibres, and step-index ones with `solver="eig"`, its finite-difference eigenmode solver
(`solve(mode="eig")`; Plöschner, Tyc and Čižmár, Nat. Photon. 9, 529, 2015).

Mode count convention: pyMMF returns spatial modes of one polarization, each LP_lm with l > 0
twice (its cos and sin orientations). The V-number V = 2π a NA / λ gives about V²/2 modes with
both polarizations for a step-index fibre (V²/4 for a parabolic GRIN fibre), so V²/4 (V²/8)
spatial modes per polarization (Saleh and Teich, "Fundamentals of Photonics", 2007, ch. 9).

The solution is cached in the user cache folder (`common.cache`) under a key of every parameter
that decides it, as an npz of plain arrays (read without pickle) written atomically.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata, util
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from common import cache

PROFILES = ("step", "grin")
SOLVERS = ("auto", "SI", "eig")
N_CORE = 1.45  # core index of fused silica near 1 µm (Malitson, JOSA 55, 1205, 1965)
CACHE_VERSION = 1  # bump when what is stored changes
log = logging.getLogger("speckle.modes")


@dataclass(frozen=True)
class FibreSpec:
    """What decides a fibre's modes. Lengths in µm."""

    profile: str = "step"
    core_radius: float = 15.0
    na: float = 0.2
    wavelength: float = 1.0
    grid: int = 64
    core: float = 0.9  # core diameter / window width, as on the camera
    solver: str = "auto"

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.profile == "grin" and self.solver == "SI":
            raise ValueError("the SI solver is for step-index fibres only")
        if not (self.core_radius > 0 and self.wavelength > 0 and 0 < self.na < N_CORE):
            raise ValueError("core radius and wavelength must be > 0 and NA in (0, 1.45)")
        if not 0 < self.core <= 1 or self.grid < 16:
            raise ValueError(f"core must be in (0, 1] and grid >= 16, got {self.core}, {self.grid}")

    @property
    def method(self) -> str:
        """The pyMMF solver used: SI for step index unless eig is asked for, eig for GRIN."""
        if self.solver != "auto":
            return self.solver
        return "SI" if self.profile == "step" else "eig"

    @property
    def window(self) -> float:
        """Window width in µm: pyMMF's grid runs over linspace(-w/2, w/2, grid), so its pitch is
        w/(grid - 1); the core diameter is core * grid pitches wide, as `gaussian_fibre.core_mask`."""
        return 2 * self.core_radius * (self.grid - 1) / (self.core * self.grid)

    @property
    def pitch(self) -> float:
        return self.window / (self.grid - 1)


def v_number(spec: FibreSpec) -> float:
    return 2 * math.pi * spec.core_radius * spec.na / spec.wavelength


def estimated_modes(spec: FibreSpec) -> float:
    """Spatial modes per polarization from the V-number: V²/4 step index, V²/8 parabolic GRIN."""
    v = v_number(spec)
    return v * v / (4 if spec.profile == "step" else 8)


@dataclass(frozen=True)
class ModeSet:
    """profiles (grid², n) complex64, each of unit power sum |ψ|² = 1 on the grid; betas (n,)
    rad/µm, descending; groups (n,) int, the near-degenerate group of each mode (0 the
    fundamental's)."""

    spec: FibreSpec
    profiles: np.ndarray
    betas: np.ndarray
    groups: np.ndarray
    seconds: float  # what the solve took (from the cache: the first solve's)

    @property
    def count(self) -> int:
        return len(self.betas)


def import_pymmf():
    """pyMMF, imported without its side effects: its loggers would each add a FileHandler on
    `./pyMMF.log` in the current folder and print DEBUG lines, and it replaces sys.excepthook.
    Each module logger is marked as already set up (pyMMF's `get_logger` checks `handler_set`)
    before the import, and the excepthook is restored after it."""
    spec = util.find_spec("pyMMF")
    if spec is None:
        raise ValueError("the modal fibre needs pyMMF: pip install pymmf (see requirements.txt)")
    # The module names from the files: pkgutil.walk_packages would import the subpackages.
    root = Path(next(iter(spec.submodule_search_locations)))
    names = ["pyMMF"] + [
        ".".join(("pyMMF", *f.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        for f in root.rglob("*.py")
    ]
    for name in names:
        logger = logging.getLogger(name)
        logger.handler_set = True
        logger.setLevel(logging.WARNING)
    hook = sys.excepthook
    try:
        # Lazy: pyMMF (joblib, numba) only on a cache miss, and after the logger set-up above.
        import pyMMF
    finally:
        sys.excepthook = hook
    return pyMMF


def _solve(spec: FibreSpec) -> tuple[dict[str, np.ndarray], dict]:
    pyMMF = import_pymmf()
    profile = pyMMF.IndexProfile(npoints=spec.grid, areaSize=spec.window)
    init = profile.initStepIndex if spec.profile == "step" else profile.initParabolicGRIN
    init(n1=N_CORE, a=spec.core_radius, NA=spec.na)
    solver = pyMMF.propagationModeSolver()
    solver.setIndexProfile(profile)
    solver.setWL(spec.wavelength)
    t0 = time.perf_counter()
    # One BLAS thread: the sparse eigensolver gains nothing from threads, and on a busy 2-core
    # machine they made the default GRIN fibre's solve 8x slower (21 against 2.6 s, measured).
    with threadpool_limits(limits=1, user_api="blas"):
        if spec.method == "SI":
            with np.errstate(invalid="ignore"):  # pyMMF's root scan steps past the cut-off
                modes = solver.solve(mode="SI", n_jobs=1)
        else:
            cap = int(1.5 * estimated_modes(spec)) + 10  # eigenpairs asked for; guided kept
            modes = solver.solve(mode="eig", nmodesMax=cap)
    seconds = time.perf_counter() - t0
    betas = np.real(np.asarray(modes.betas, dtype=np.complex128))
    profiles = np.stack([np.asarray(p).reshape(-1) for p in modes.profiles], axis=1)
    order = np.argsort(-betas, kind="stable")
    betas, profiles = betas[order], profiles[:, order]
    if spec.method == "SI":  # principal mode number 2(radial - 1) + |azimuthal| (pyMMF: l, m)
        principal = 2 * (np.asarray(modes.l) - 1) + np.abs(np.asarray(modes.m))
        groups = np.unique(principal[order], return_inverse=True)[1]
    else:
        groups = groups_by_gap(betas)
    profiles = profiles / np.linalg.norm(profiles, axis=0, keepdims=True)
    arrays = {
        "profiles": profiles.astype(np.complex64),
        "betas": betas,
        "groups": groups.astype(np.int64),
    }
    meta = {"spec": asdict(spec), "seconds": seconds, "pymmf": pymmf_version()}
    return arrays, meta


def groups_by_gap(betas: np.ndarray) -> np.ndarray:
    """Near-degenerate groups of descending βs without mode labels: a new group starts where the
    gap to the previous β exceeds a third of the mean group spacing, the spread over the
    expected number of groups sqrt(2 n) (a parabolic GRIN fibre has g modes in group g)."""
    if len(betas) < 2:
        return np.zeros(len(betas), dtype=np.int64)
    gaps = -np.diff(betas)
    spacing = (betas[0] - betas[-1]) / math.sqrt(2 * len(betas))
    return np.concatenate([[0], np.cumsum(gaps > spacing / 3)]).astype(np.int64)


def pymmf_version() -> str:
    try:
        return metadata.version("pymmf")
    except metadata.PackageNotFoundError:
        return "missing"


def cache_path(spec: FibreSpec) -> Path:
    """The cache entry of a fibre's modes: keyed by every field of its spec, this module's
    storage version and pyMMF's version."""
    parts = sorted(asdict(spec).items())
    return cache.cache_root() / "modes" / cache.key("modes", CACHE_VERSION, pymmf_version(), parts)


def solve_modes(spec: FibreSpec) -> ModeSet:
    """The fibre's modes: from the cache, else solved by pyMMF and cached."""
    arrays, meta, hit = cache.get_or_build(cache_path(spec), lambda: _solve(spec))
    if not hit:
        log.info("solved %d modes of %s in %.1f s", len(arrays["betas"]), spec, meta["seconds"])
    if not len(arrays["betas"]):
        raise ValueError(f"{spec}: pyMMF found no guided mode")
    for a in arrays.values():
        a.flags.writeable = False
    return ModeSet(
        spec, arrays["profiles"], arrays["betas"], arrays["groups"], float(meta["seconds"])
    )
