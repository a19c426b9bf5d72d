"""The modal fibre against known answers: mode counts from the V-number, grain λ/(2 NA),
contrast 1 and 1/√2, decorrelation from the spread of β (and of dβ/dλ: GRIN slower than step
index), and the Gaussian-TM limit with full mode coupling. The modes are solved by pyMMF into the
tests' temporary cache folder (tests/conftest.py sets SPECKLE_VAE_CACHE)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats as sst

from diffusion.train_set import training_set
from speckle import cli, modes
from speckle.camera import Camera
from speckle.fibre_states import FibreStates
from speckle.gaussian_fibre import core_mask, propagate
from speckle.grain import grain_size_batch
from speckle.mmf import fibre_states, simulate_from_record, simulate_mmf
from speckle.modal_fibre import STRAIN_OPTIC, UM_PER_M, ModalFibre, coupling, operators
from speckle.modal_frames import draw_factors, modal_images
from speckle.modes import N_CORE, FibreSpec, estimated_modes, solve_modes
from speckle.oracles import ORACLES, oracle_pccs, oracle_table
from speckle.stats import contrast_batch
from vae.probes import label_kind

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
S = 48  # camera size of the small fibres
CORE = 0.9
MASK = core_mask(S, CORE)
STEP = ModalFibre(core_radius=10.0, coupling_across=1.0)  # 42 modes on a 48 grid, ~0.4 s
GRIN = ModalFibre(profile="grin", core_radius=10.0, coupling_across=1.0)  # 21 modes, ~2 s


def gaussian_inputs(n: int, seed: int = SEED) -> np.ndarray:
    """Zero-mean random SLM fields: independent outputs, no common component (a set of
    non-negative digits shares one)."""
    return np.random.default_rng(seed).standard_normal((n, 16, 16))


def in_core_pcc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a[:, MASK], b[:, MASK]
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


# ----------------------------------------------------------------------------- modes and cache


def test_import_leaves_no_log_file_and_keeps_the_excepthook(tmp_path: Path) -> None:
    code = (
        "import sys; hook = sys.excepthook\n"
        "from speckle.modes import import_pymmf\n"
        "import_pymmf()\n"
        "assert sys.excepthook is hook, 'pyMMF replaced the excepthook'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "pyMMF.log").exists()
    assert "pyMMF" not in done.stderr  # no DEBUG/INFO lines on the console either


@pytest.mark.parametrize(
    ("profile", "radius", "rel"),
    [("step", 10.0, 0.1), ("step", 15.0, 0.05), ("grin", 10.0, 0.15)],
)
def test_mode_count_follows_the_v_number(profile: str, radius: float, rel: float) -> None:
    """Spatial modes of one polarization: V²/4 step index, V²/8 parabolic GRIN (V²/2 and V²/4
    with both polarizations), and pyMMF's own estimate (pola=1)."""
    spec = FibreSpec(profile, radius, 0.2, 1.0, S, CORE)
    pymmf = modes.import_pymmf()
    estimate = (pymmf.estimateNumModesSI if profile == "step" else pymmf.estimateNumModesGRIN)(
        1.0, radius, 0.2, 1
    )
    v = 2 * math.pi * radius * 0.2 / 1.0
    got = solve_modes(spec).count
    assert estimated_modes(spec) == pytest.approx(v * v / (4 if profile == "step" else 8))
    assert got == pytest.approx(estimated_modes(spec), rel=rel)
    assert got == pytest.approx(estimate, rel=rel)


def test_modes_are_cached_as_plain_arrays_keyed_by_the_fibre() -> None:
    spec = FibreSpec("step", 6.0, 0.2, 1.0, 32, CORE)
    first = solve_modes(spec)
    path = modes.cache_path(spec)
    assert path.with_suffix(".npz").is_file() and path.with_suffix(".json").is_file()
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as f:  # no pickle needed
        assert set(f.files) == {"profiles", "betas", "groups"}
        assert np.array_equal(f["betas"], first.betas)
    again = solve_modes(spec)  # from the cache: the first solve's record
    assert again.seconds == first.seconds
    assert np.array_equal(again.profiles, first.profiles)
    assert modes.cache_path(FibreSpec("step", 6.0, 0.2, 1.01, 32, CORE)) != path
    assert np.all(np.diff(first.betas) <= 0)
    gram = first.profiles.conj().T @ first.profiles
    # Orthonormal up to the sampling of the analytic LP profiles on a 32-point grid.
    assert np.abs(gram - np.eye(first.count)).max() < 0.05


def test_bad_fibres_are_refused() -> None:
    with pytest.raises(ValueError, match="profile"):
        FibreSpec(profile="w")
    with pytest.raises(ValueError, match="SI solver"):
        FibreSpec(profile="grin", solver="SI")
    with pytest.raises(ValueError, match="coupling"):
        ModalFibre(coupling_across=2.0)
    with pytest.raises(ValueError, match="Gaussian"):
        simulate_mmf(2, 0, fibre="modes", bend=0.5)


# ----------------------------------------------------------------------------- statistics


def test_grain_is_lambda_over_2na_on_the_camera_grid() -> None:
    sim = simulate_mmf(60, SEED, size=S, fibre="modes", modal=STEP)
    pitch = STEP.spec(S, CORE).pitch
    want = 1.029 * STEP.wavelength / (2 * STEP.na) / pitch  # Airy FWHM, in camera pixels
    got = np.nanmean(grain_size_batch(sim.images, MASK)["fwhm_r"])
    assert got == pytest.approx(want, rel=0.08)


@pytest.mark.parametrize(("polarization", "want"), [("one", 1.0), ("both", 1 / math.sqrt(2))])
def test_contrast_is_one_or_one_over_root_two(polarization: str, want: float) -> None:
    """Each pixel's contrast over independent inputs, and each frame's over the lit core after
    dividing out the mean envelope (a modal fibre's light is not uniform over the core)."""
    fibre = ModalFibre(coupling_across=1.0, polarization=polarization)  # 90 modes at 64 px
    mask = core_mask(64, CORE)
    images = modal_images(gaussian_inputs(800), fibre, {}, 64, CORE, SEED)
    per_pixel = (images.std(0) / images.mean(0))[mask]
    assert per_pixel.mean() == pytest.approx(want, rel=0.05)
    flat = images / images.mean(0)
    assert contrast_batch(flat, mask).mean() == pytest.approx(want, rel=0.06)


def test_no_polarization_coupling_keeps_one_speckle() -> None:
    fibre = ModalFibre(core_radius=10.0, coupling_within=0.0, polarization="both")
    images = modal_images(gaussian_inputs(400), fibre, {}, S, CORE, SEED)
    assert (images.std(0) / images.mean(0))[MASK].mean() == pytest.approx(1.0, rel=0.06)


def test_strain_decorrelates_as_the_spread_of_beta_predicts() -> None:
    """Field correlation between a frame and the strained fibre's is sum_m w_m exp(i Δφ_m), w_m
    the input's mode powers, Δφ_m = L ε (β_m - p_e n1 k² n1 / β_m); intensity correlation its
    squared modulus (Goodman ch. 4). The strain that dephases the modes (ε L spread(β) ≈ π)
    decorrelates the speckle."""
    fibre = ModalFibre(core_radius=10.0, coupling_across=1.0, strain=(0.0, 0.0))
    ops = operators(fibre, S, CORE, SEED)
    x = gaussian_inputs(150)
    c = x.reshape(len(x), -1) @ ops.project.T
    w = np.abs(c) ** 2 / (np.abs(c) ** 2).sum(1, keepdims=True)
    b, k = ops.modes.betas, 2 * math.pi / fibre.wavelength
    ref = modal_images(x, fibre, {}, S, CORE, SEED)
    spread = np.ptp(b - STRAIN_OPTIC * N_CORE * k * k * N_CORE / b)
    for eps in np.array([0.1, 0.3, 1.0, 3.0]) * math.pi / (spread * UM_PER_M):
        strained = modal_images(x, fibre, {"strain": np.full(len(x), eps)}, S, CORE, SEED)
        dphi = UM_PER_M * eps * (b - STRAIN_OPTIC * N_CORE * k * k * N_CORE / b)
        want = np.abs((w * np.exp(1j * dphi)).sum(1)) ** 2
        got = in_core_pcc(ref, strained)
        assert got.mean() == pytest.approx(want.mean(), abs=0.05), eps
    assert got.mean() < 0.3


def test_grin_decorrelates_more_slowly_with_wavelength_than_step_index() -> None:
    """A parabolic GRIN fibre's modes share their group delay (dβ/dλ nearly equal): its speckle
    survives a detuning that decorrelates a step-index fibre's. Both against the prediction
    from pyMMF's βs at λ and λ(1 - 2e-3)."""
    x = gaussian_inputs(100)
    at = {}
    for name, base in (("step", STEP), ("grin", GRIN)):
        fibre = ModalFibre(**{**base.__dict__, "detuning": (0.0, 0.0)})
        ops = operators(fibre, S, CORE, SEED)
        c = x.reshape(len(x), -1) @ ops.project.T
        w = np.abs(c) ** 2 / (np.abs(c) ** 2).sum(1, keepdims=True)
        ref = modal_images(x, fibre, {}, S, CORE, SEED)
        detuned = modal_images(x, fibre, {"detuning": np.full(len(x), 0.05)}, S, CORE, SEED)
        dphi = UM_PER_M * ops.slope * 0.05e-3
        want = (np.abs((w * np.exp(1j * dphi)).sum(1)) ** 2).mean()
        at[name] = in_core_pcc(ref, detuned).mean()
        assert at[name] == pytest.approx(want, abs=0.05), name
        at[name + " spread"] = np.ptp(ops.slope)
    assert at["grin spread"] < at["step spread"] / 4
    assert at["step"] < 0.6 and at["grin"] > 0.95


@pytest.mark.slow
def test_full_coupling_approaches_the_gaussian_tm() -> None:
    """With full coupling T's entries are circular Gaussian (phase uniform, |T|² exponential,
    once each row and column is divided by its rms) and the output envelope forgets where the
    input was, as the Gaussian-TM fibre's does; without coupling a central input stays central
    (mode groups keep their power)."""
    mask = core_mask(64, CORE)
    centre = core_mask(64, 0.35)
    near = [(6, 6), (6, 8), (8, 6), (8, 8), (7, 7), (7, 6), (6, 7), (8, 7)]  # 2x2 SLM blocks
    far = [(7, 0), (7, 14), (0, 7), (14, 7), (5, 0), (9, 14), (0, 5), (14, 9)]
    spots = np.zeros((16, 16, 16))
    for i, (r, c) in enumerate(near + far):
        spots[i, r : r + 2, c : c + 2] = 1.0
    memory = {}
    fibres = {"full": ModalFibre(coupling_across=1.0), "none": ModalFibre(coupling_within=0.0)}
    for name, fibre in fibres.items():
        sim = simulate_mmf(1, SEED, fibre="modes", modal=fibre)
        t = fibre_states(sim.meta)[0][mask.ravel()]
        p = np.abs(t) ** 2
        keep = p.mean(0) > 0.5 * p.mean(0).max()  # SLM pixels inside the core
        t = t[:, keep] / np.sqrt(
            p[:, keep].mean(1, keepdims=True) * p[:, keep].mean(0) / p[:, keep].mean()
        )
        phase = sst.kstest((np.angle(t).ravel() + np.pi) / (2 * np.pi), "uniform").statistic
        power = sst.kstest((np.abs(t) ** 2).ravel(), "expon").statistic
        out = np.concatenate([modal_images(spots, fibre, {}, 64, CORE, s) for s in range(3)])
        frac = (out[:, centre].sum(1) / out[:, mask].sum(1)).reshape(3, 2, -1)
        memory[name] = frac[:, 0].mean() / frac[:, 1].mean()  # centre inputs against edge ones
        if name == "full":
            assert phase < 0.02 and power < 0.01
        else:
            assert phase > 0.03
    assert memory["full"] == pytest.approx(1.0, abs=0.1)
    assert memory["none"] > 1.5


def test_within_group_coupling_keeps_each_groups_power() -> None:
    groups = np.array([0, 1, 1, 2, 2, 2])
    for n_pol in (1, 2):
        u = coupling(groups, n_pol, 1.0, 0.0, np.random.default_rng(SEED))
        assert np.allclose(u.conj().T @ u, np.eye(len(u)), atol=1e-10)
        g = np.tile(groups, n_pol)
        assert np.allclose(np.abs(u[np.not_equal.outer(g, g)]), 0)
    assert np.allclose(coupling(groups, 1, 0.0, 0.0, np.random.default_rng(SEED)), np.eye(6))


def test_bend_operator_is_pymmfs_perturbative_evolution_operator() -> None:
    """B = diag(β) - n_clad k κ Γx is the operator pyMMF's Modes.getEvolutionOperator builds for a
    bend of radius 1/κ along x: the same eigenvalues (basis-free), from pyMMF's own solve."""
    fibre = ModalFibre(core_radius=6.0, bend=(0.0, 0.0))
    spec = fibre.spec(32, CORE)
    pymmf = modes.import_pymmf()
    profile = pymmf.IndexProfile(npoints=spec.grid, areaSize=spec.window)
    profile.initStepIndex(n1=N_CORE, a=spec.core_radius, NA=spec.na)
    solver = pymmf.propagationModeSolver()
    solver.setIndexProfile(profile)
    solver.setWL(spec.wavelength)
    with np.errstate(invalid="ignore"):  # pyMMF's root scan steps past the cut-off
        solved = solver.solve(mode="SI", n_jobs=1)
    kappa = 2000.0  # 1/m: a 0.5 mm radius, strong enough to move every eigenvalue
    theirs = np.linalg.eigvalsh(solved.getEvolutionOperator(curvature=UM_PER_M / kappa))
    ops = operators(fibre, 32, CORE, SEED)
    k0 = 2 * math.pi / spec.wavelength
    n_clad = math.sqrt(N_CORE**2 - spec.na**2)
    ours = np.linalg.eigvalsh(
        np.diag(ops.modes.betas) - n_clad * k0 * kappa / UM_PER_M * ops.gamma[0]
    )
    assert np.abs(ours - theirs).max() < 1e-3 * np.ptp(theirs)
    assert np.abs(theirs - np.sort(ops.modes.betas)).max() > 1e-2 * np.ptp(theirs)


def test_a_coarser_solver_grid_is_resampled_onto_the_camera() -> None:
    fibre = ModalFibre(core_radius=10.0, grid=32, coupling_across=1.0)
    sim = simulate_mmf(60, SEED, size=S, fibre="modes", modal=fibre)
    pitch = fibre.spec(S, CORE).pitch * 32 / S  # the camera's pixel in µm
    want = 1.029 * fibre.wavelength / (2 * fibre.na) / pitch
    got = np.nanmean(grain_size_batch(sim.images, MASK)["fwhm_r"])
    assert got == pytest.approx(want, rel=0.1)
    assert sim.meta["modal"]["grid"] == 32


# ----------------------------------------------------------------------------- records and CLI


def test_frames_rebuild_from_the_record_and_the_fibre_states() -> None:
    fibre = ModalFibre(core_radius=10.0, polarization="both", conformations=3, twist=20.0)
    sim = simulate_mmf(12, SEED, size=S, fibre="modes", modal=fibre)
    record = json.loads(json.dumps(sim.meta))  # as simulation.json holds it
    again = simulate_from_record(record, n=5)
    assert np.array_equal(again.images, sim.images[:5])  # prefix-stable, from the record alone
    states = fibre_states(record)
    assert len(states) == 3 and states[0].shape == (2, S * S, 256)
    for s in range(3):
        rows = np.flatnonzero(sim.labels["state"] == s)
        out = propagate(sim.patterns[rows], states[s])
        assert np.allclose(out, sim.images[rows], rtol=1e-3, atol=1e-4 * sim.images.max())
    assert {"state", "curvature", "bend_angle", "twist"} <= set(sim.labels.columns)
    assert record["modal"]["modes"] == solve_modes(fibre.spec(S, CORE)).count


def test_drift_is_a_reflected_random_walk_along_the_frames() -> None:
    still = draw_factors(400, SEED, ModalFibre(temperature=(0.0, 4.0)))["temperature"]
    moving = draw_factors(400, SEED, ModalFibre(temperature=(0.0, 4.0), drift=0.02))
    walk = moving["temperature"]
    assert walk.min() >= 0 and walk.max() <= 4
    assert np.abs(np.diff(walk)).mean() < 0.2 * np.abs(np.diff(still)).mean()
    assert np.abs(np.diff(walk)).mean() == pytest.approx(4 * 0.02 * math.sqrt(2 / math.pi), rel=0.2)
    prefix = draw_factors(100, SEED, ModalFibre(temperature=(0.0, 4.0), drift=0.02))
    assert np.array_equal(prefix["temperature"], walk[:100])


def test_temperature_drift_decorrelates_neighbouring_frames_less() -> None:
    fibre = ModalFibre(core_radius=10.0, coupling_across=1.0, temperature=(0.0, 20.0), drift=0.01)
    x = np.repeat(gaussian_inputs(1), 60, axis=0)
    factors = draw_factors(60, SEED, fibre)
    images = modal_images(x, fibre, factors, S, CORE, SEED)
    near = in_core_pcc(images[:-1], images[1:]).mean()
    far = in_core_pcc(images[:30], images[30:]).mean()
    assert near > 0.9 and far < near


def test_camera_counts_photons_for_both_fibres() -> None:
    camera = Camera(photons=1e6)
    for kwargs in ({}, {"fibre": "modes", "modal": STEP}):
        clean = simulate_mmf(3, SEED, size=S, **kwargs)
        noisy = simulate_mmf(3, SEED, size=S, camera=camera, **kwargs)
        reference = 256 / core_mask(S, CORE).sum()
        want = clean.images / reference * 1e6
        assert np.all(np.abs(noisy.images - want) < 6 * np.sqrt(want) + 1)  # Poisson, 6 sigma
        assert noisy.meta["camera"]["photons"] == 1e6
    adc = simulate_mmf(2, SEED, size=S, camera=Camera(1e4, 2.0, 8, 4e3)).images
    assert adc.max() <= 4e3 and len(np.unique(adc)) <= 256


def test_cli_writes_a_modal_set_with_its_factors(tmp_path: Path) -> None:
    out = tmp_path / "modal"
    argv = ["mmf", "--n", "6", "--seed", "1", "--out", str(out), "--size", str(S)]
    argv += ["--fibre", "modes", "--core-radius", "10", "--temperature-range", "0:3"]
    argv += ["--wavelength-range=-0.01:0.01", "--bend", "0:0.5", "--drift", "0.1"]
    argv += ["--polarization", "both", "--photons", "5000", "--read-noise", "2"]
    assert cli.main(argv) == 0
    labels = pd.read_csv(out / "labels.csv")
    for column in ("temperature", "detuning", "curvature", "bend_angle"):
        assert column in labels.columns
    assert labels["temperature"].between(0, 3).all()
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["fibre"] == "modes" and meta["modal"]["polarization"] == "both"
    assert meta["modal"]["temperature"] == [0.0, 3.0] and meta["camera"]["read_noise"] == 2.0
    assert meta["modal"]["dn_dT"] == 1e-5 and meta["modal"]["modes"] > 30
    assert cli.main(["mmf", "--n", "2", "--seed", "1", "--out", str(tmp_path / "g")]) == 0
    gaussian = json.loads((tmp_path / "g" / "simulation.json").read_text())
    assert gaussian["fibre"] == "gaussian" and gaussian["modal"] is None


def test_a_generators_modal_training_set_is_rebuilt_from_its_record(tmp_path: Path) -> None:
    """What diffusion.evaluate does when a generator's training folder is gone: the modal set
    simulated again from simulation.json alone, frame for frame, its record checked."""
    out = tmp_path / "original"
    argv = ["mmf", "--n", "12", "--seed", "4", "--out", str(out), "--size", "32"]
    argv += ["--fibre", "modes", "--core-radius", "8", "--conformations", "2", "--twist", "10"]
    argv += ["--temperature-range", "0:2", "--photons", "3000", "--read-noise", "1"]
    assert cli.main(argv) == 0
    record = json.loads((out / "simulation.json").read_text())
    config = {"dataset": {"path": str(tmp_path / "gone"), "simulation": record}}
    found = training_set(config, log=lambda m: None, progress=False)
    assert "intensity_scale matched" in found.check
    for name in ("images/000000.png", "images/000011.png"):
        a = np.asarray(Image.open(out / name))
        np.testing.assert_array_equal(a, np.asarray(Image.open(found.path / name)))
    rebuilt = pd.read_csv(found.path / "labels.csv")
    pd.testing.assert_frame_equal(rebuilt, pd.read_csv(out / "labels.csv"))


def test_oracles_of_a_fixed_fibre_are_perfect_and_a_moving_one_orders_them() -> None:
    x = simulate_mmf(12, 2026, size=S, digits="test").patterns
    small = {"core_radius": 10.0}
    fixed = oracle_pccs(x, ModalFibre(**small), MASK, size=S, draws=8, best_of=4)
    for k in ORACLES:
        assert np.allclose(fixed[k], 1.0, atol=1e-5), k
    one = oracle_pccs(x, ModalFibre(**small, conformations=1), MASK, size=S, draws=8, best_of=4)
    assert np.allclose(one["one_state_tm"], 1.0, atol=1e-5)
    moving = ModalFibre(**small, detuning=(0.0, 2.0))  # many decorrelations across the range
    got = oracle_table(oracle_pccs(x, moving, MASK, size=S, draws=32, best_of=8))
    assert got["one_state_tm"]["mean"] < got["pooled_mean"]["mean"] - 0.1
    assert got["pooled_mean"]["mean"] < 0.95 and got["best_of_k"]["mean"] < 0.98
    with pytest.raises(ValueError, match="best_of"):
        oracle_pccs(x, moving, MASK, size=S, draws=4, best_of=8)


def test_fibre_states_rebuild_a_set_and_draw_its_states() -> None:
    """A set's record gives back its fibre: a fixed fibre's frames bit for bit (modal and
    Gaussian), and for a moving one, states drawn independently that differ per draw."""
    fibre = ModalFibre(core_radius=10.0)
    sim = simulate_mmf(6, SEED, size=S, fibre="modes", modal=fibre)
    states = FibreStates.from_record(sim.meta)
    assert not states.perturbed and states.modal is not None
    np.testing.assert_allclose(states.one_state(sim.patterns), sim.images, rtol=1e-5, atol=1e-7)
    draws = states.draws(sim.patterns, 3, seed=1)
    assert draws.shape == (6, 3, S, S)
    np.testing.assert_allclose(draws, np.repeat(sim.images[:, None], 3, 1), rtol=1e-5, atol=1e-7)
    gauss = simulate_mmf(6, SEED, size=S)
    np.testing.assert_array_equal(
        FibreStates.from_record(gauss.meta).one_state(gauss.patterns), gauss.images
    )
    moving = FibreStates(size=S, modal=ModalFibre(core_radius=10.0, detuning=(0.0, 2.0), drift=0.1))
    assert moving.perturbed and moving.modal.drift == 0.0
    d = moving.draws(sim.patterns, 4, seed=1)
    assert in_core_pcc(d[:, 0], d[:, 1]).mean() < 0.9
    np.testing.assert_array_equal(d, moving.draws(sim.patterns, 4, seed=1))
    bent = FibreStates(size=S, bend=0.9, states=4)
    assert bent.perturbed and len(bent.matrices()) == 4
    g = bent.draws(gauss.patterns, 8, seed=2)
    outs = np.stack([propagate(gauss.patterns, t) for t in bent.matrices()], 1)  # (6, 4, S, S)
    # every draw is one of the four states' frames
    match = np.abs(g[:, :, None] - outs[:, None]).max((-2, -1)).min(-1)
    assert match.max() < 1e-6


def test_the_fibre_state_columns_are_probe_targets() -> None:
    """The Model page's probes take numeric label columns: a drifting temperature is continuous,
    a conformation a class."""
    fibre = ModalFibre(core_radius=10.0, temperature=(0.0, 5.0), drift=0.05, conformations=4)
    labels = simulate_mmf(64, SEED, size=S, fibre="modes", modal=fibre).labels
    assert label_kind(labels["temperature"].to_numpy()) == "continuous"
    assert label_kind(labels["state"].to_numpy()) == "class"
    assert label_kind(labels["curvature"].to_numpy()) == "class"  # one value per conformation


@pytest.mark.parametrize("kwargs", [{}, {"fibre": "modes", "modal": STEP}])
def test_fibre_states_of_a_camera_set_give_its_mean_counts(kwargs: dict) -> None:
    sim = simulate_mmf(200, SEED, size=S, camera=Camera(photons=500.0), **kwargs)
    mean = propagate(sim.patterns, fibre_states(sim.meta)[0])
    assert sim.images[:, MASK].mean() == pytest.approx(mean[:, MASK].mean(), rel=0.01)
    assert np.corrcoef(sim.images[:, MASK].ravel(), mean[:, MASK].ravel())[0, 1] > 0.9


def test_the_modal_fibre_carries_any_pattern_family_and_its_record_rebuilds_it() -> None:
    sim = simulate_mmf(12, seed=3, fibre="modes", modal=STEP, family="letters")
    assert "letter" in sim.labels.columns and sim.meta["family"] == "letters"
    again = simulate_from_record(sim.meta)
    np.testing.assert_array_equal(again.images, sim.images)
    np.testing.assert_array_equal(again.patterns, sim.patterns)
