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

from speckle import __version__, cli, free, io, simulated, slm_patterns, stats
from speckle import gaussian_fibre as gauss
from speckle import mmf as fibre
from vae.metrics import pcc

ROOT = Path(__file__).resolve().parents[1]
CORE = gauss.core_mask(64)


def in_core_pcc(a: np.ndarray, b: np.ndarray) -> float:
    return pcc(a[CORE][None], b[CORE][None])


# ----------------------------------------------------------------------------- free space


def test_fully_developed_speckle_has_unit_contrast() -> None:
    img = free.simulate_free(1, 0, size=512, diameter=128).images[0]
    assert img.dtype == np.float32
    assert stats.contrast(img) == pytest.approx(1.0, abs=0.03)
    assert img.mean() == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("m", [4, 9])
def test_looks_give_contrast_one_over_sqrt_m(m: int) -> None:
    sim = free.simulate_free(4, 10 + m, size=256, diameter=64, looks=m)
    assert (sim.labels["looks"] == m).all()
    assert stats.contrast_batch(sim.images).mean() == pytest.approx(1 / math.sqrt(m), rel=0.05)


@pytest.mark.parametrize("diameter", [12, 24, 40])
def test_grain_fwhm_is_1_03_n_over_d(diameter: int) -> None:
    sim = free.simulate_free(6, diameter, size=128, diameter=diameter)
    g = stats.grain_size_batch(sim.images)
    want = 1.03 * 128 / diameter
    for key in ("fwhm_x", "fwhm_y", "fwhm_r"):
        assert g[key].mean() == pytest.approx(want, rel=0.1), key


def test_pupil_shapes_set_the_grain() -> None:
    n = 128
    for pupil, d in [("square", 32), ("annulus", 32)]:
        sim = free.simulate_free(6, 5, size=n, diameter=d, pupil=pupil, inner=0.6)
        theory = free.expected_autocovariance(free.pupil_mask(n, d, pupil, inner=0.6))
        want = stats.fwhm_from_autocovariance_batch(theory[None])["fwhm_r"][0]
        got = stats.grain_size_batch(sim.images)["fwhm_r"].mean()
        assert got == pytest.approx(want, rel=0.1), pupil
    # sinc^2 of a square pupil: 0.886 N/D; an annulus has a narrower central lobe than its disc
    sq = stats.fwhm_from_autocovariance_batch(
        free.expected_autocovariance(free.pupil_mask(n, 32, "square"))[None]
    )
    assert sq["fwhm_x"][0] == pytest.approx(0.886 * n / 32, rel=0.02)
    ann = free.expected_autocovariance(free.pupil_mask(n, 32, "annulus", inner=0.6))
    ann_r = stats.fwhm_from_autocovariance_batch(ann[None])["fwhm_r"][0]
    assert ann_r < 0.9 * 1.03 * n / 32
    mask = free.pupil_mask(64, 20, "ellipse", aspect=0.5)
    assert np.any(mask, axis=0).sum() == 20 and np.any(mask, axis=1).sum() == 10


def test_tilt_is_an_exact_translation() -> None:
    # decorrelation 1 freezes the screen, so frames differ only by their random tilt
    sim = free.simulate_free(6, 3, size=64, diameter=20, tilt=6, decorrelation=1.0)
    lab = sim.labels
    assert lab["tilt_x"].nunique() > 1 and lab["tilt_y"].nunique() > 1
    assert lab[["tilt_x", "tilt_y"]].abs().max().max() <= 6
    ref = sim.images[0]
    for i in range(1, len(lab)):
        dy = int(lab.tilt_y[i] - lab.tilt_y[0])
        dx = int(lab.tilt_x[i] - lab.tilt_x[0])
        moved = np.roll(ref, (dy, dx), axis=(0, 1))
        np.testing.assert_allclose(sim.images[i], moved, rtol=1e-4, atol=1e-5 * ref.max())
    # the same through the low-level function, from one screen
    rng = np.random.default_rng(0)
    screen = np.exp(2j * np.pi * rng.random((32, 32)))
    mask = free.pupil_mask(32, 10)
    flat = free.free_intensity(screen, mask)
    tilted = free.free_intensity(screen, mask, tilt=(3, -5))
    np.testing.assert_allclose(tilted, np.roll(flat, (-5, 3), axis=(0, 1)), rtol=1e-4, atol=1e-6)
    assert not np.allclose(tilted, flat)


def test_defocus_changes_the_pattern_not_its_statistics() -> None:
    rng = np.random.default_rng(1)
    screen = np.exp(2j * np.pi * rng.random((256, 256)))
    mask = free.pupil_mask(256, 64)
    a = free.free_intensity(screen, mask)
    b = free.free_intensity(screen, mask, defocus=2.0)
    assert pcc(a, b) < 0.3
    assert stats.contrast(b) == pytest.approx(1.0, abs=0.05)


def test_decorrelation_sets_frame_to_frame_correlation() -> None:
    for rho in (0.0, 0.8):
        sim = free.simulate_free(12, 4, size=128, diameter=32, decorrelation=rho)
        r = np.mean([pcc(sim.images[k], sim.images[k + 1]) for k in range(11)])
        # intensity correlation is |field correlation|^2 for circular Gaussian fields
        assert r == pytest.approx(rho**2, abs=0.07), rho


def test_intensity_follows_exp_minus_i() -> None:
    imgs = free.simulate_free(2, 8, size=512, diameter=128).images
    # grain ~4 px: pixels 8 apart are practically independent (|2 J1(2 pi)/(2 pi)|^2 < 0.005)
    v = imgs[:, ::8, ::8].ravel() / imgs.mean()
    assert sst.kstest(v, "expon").pvalue > 0.01
    amplitude = np.sqrt(v) / np.sqrt(v).mean()
    assert sst.kstest(amplitude, "expon").pvalue < 1e-6
    two_looks = free.simulate_free(1, 9, size=512, diameter=128, looks=2).images
    v2 = two_looks[:, ::8, ::8].ravel() / two_looks.mean()
    assert sst.kstest(v2, "expon").pvalue < 1e-6


def test_oversampling_integrates_small_grains() -> None:
    # Integrated speckle (Goodman ch. 4): over a pixel of q x q fine samples,
    # K^2 = sum over lags of the pixel-overlap (triangle) weights times |mu|^2.
    q = 4
    for d in (48, 64):
        c = free.expected_autocovariance(free.pupil_mask(64 * q, d))
        lag = np.arange(-(q - 1), q)
        w = (q - np.abs(lag)) / q**2
        centre = 64 * q // 2
        want = math.sqrt((w[:, None] * w[None, :] * c[centre + lag][:, centre + lag]).sum())
        binned = free.simulate_free(6, 6, size=64, diameter=d, oversample=q).images
        point = free.simulate_free(6, 6, size=64, diameter=d).images
        assert binned.mean() == pytest.approx(1.0, abs=0.02)
        assert stats.contrast_batch(binned).mean() == pytest.approx(want, rel=0.03)
        assert stats.contrast_batch(point).mean() == pytest.approx(1.0, abs=0.05)
    assert want < 0.75


def test_grid_larger_than_size_is_cropped() -> None:
    sim = free.simulate_free(3, 2, size=48, grid=128, diameter=32)
    assert sim.images.shape == (3, 48, 48)
    assert sim.meta["grid"] == 128
    assert stats.grain_size_batch(sim.images)["fwhm_r"].mean() == pytest.approx(
        1.03 * 128 / 32, rel=0.15
    )


def test_camera_model() -> None:
    clean = free.simulate_free(4, 7, size=128, diameter=32)
    cam = free.simulate_free(4, 7, size=128, diameter=32, photons=10.0)
    # photon counting of speckle: K^2 = 1 + 1/<n> (shot noise adds to the speckle variance)
    k2 = stats.contrast_batch(cam.images) ** 2
    assert k2.mean() == pytest.approx(1 + 1 / 10, rel=0.06)
    assert np.all(cam.images == np.rint(cam.images))
    assert cam.images.mean() == pytest.approx(10 * clean.images.mean(), rel=0.02)
    adc = free.simulate_free(
        2, 7, size=64, diameter=16, photons=50.0, read_noise=2.0, bit_depth=4, full_well=150.0
    ).images
    steps = adc / 10.0  # 150 e- full scale over 15 levels
    np.testing.assert_allclose(steps, np.rint(steps), atol=1e-4)
    assert adc.min() >= 0 and adc.max() == pytest.approx(150.0)
    with pytest.raises(ValueError, match="photons"):
        free.simulate_free(1, 0, read_noise=3.0)


def test_free_labels_and_ranges() -> None:
    sim = free.simulate_free(
        64,
        1,
        size=32,
        diameter=(6.0, 12.0),
        pupil="circle,ellipse,square,annulus",
        aspect=(0.4, 0.8),
        inner=(0.2, 0.5),
        looks=(1, 3),
        tilt=2,
        defocus=0.5,
    )
    lab = sim.labels
    assert list(lab.columns) == [
        "frame",
        "pupil",
        "diameter",
        "aspect",
        "inner",
        "looks",
        "tilt_x",
        "tilt_y",
        "defocus",
    ]
    assert set(lab.pupil) == set(free.PUPILS)
    assert lab.diameter.between(6, 12).all()
    ell = lab.pupil == "ellipse"
    assert lab.aspect[ell].between(0.4, 0.8).all() and (lab.aspect[~ell] == 1).all()
    ann = lab.pupil == "annulus"
    assert lab.inner[ann].between(0.2, 0.5).all() and (lab.inner[~ann] == 0).all()
    assert set(lab.looks) == {1, 2, 3}
    assert lab[["tilt_x", "tilt_y"]].abs().max().max() == 2
    assert lab.defocus.abs().max() <= 0.5
    again = free.simulate_free(64, 1, size=32, diameter=(6.0, 12.0), looks=(1, 3))
    assert not np.array_equal(again.images, sim.images)
    with pytest.raises(ValueError, match="fit"):
        free.simulate_free(1, 0, size=32, diameter=40)


# ----------------------------------------------------------------------------- multimode fibre


@pytest.fixture(scope="module")
def mmf() -> simulated.SimulatedSet:
    return fibre.simulate_mmf(96, 1)


def test_mmf_is_deterministic(mmf: simulated.SimulatedSet) -> None:
    again = fibre.simulate_mmf(96, 1)
    assert np.array_equal(again.images, mmf.images)
    assert np.array_equal(again.patterns, mmf.patterns)
    pd.testing.assert_frame_equal(again.labels, mmf.labels)
    other = fibre.simulate_mmf(96, 2)
    assert not np.array_equal(other.labels.source_index, mmf.labels.source_index)


def test_mmf_same_fibre_for_every_sample_seed() -> None:
    gauss.transmission_matrix.cache_clear()
    t1 = gauss.transmission_matrix(1234)
    gauss.transmission_matrix.cache_clear()
    assert np.array_equal(t1, gauss.transmission_matrix(1234))
    assert t1.shape == (64 * 64, 256) and t1.dtype == np.complex64
    # No augmentation: the pattern is the digit itself, so the same digit drawn by two different
    # sample seeds is the same input and must give the same output.
    kw = dict(shift=0.0, rotation=0.0, scale=1.0)
    a = fibre.simulate_mmf(80, 11, **kw)
    b = fibre.simulate_mmf(80, 12, **kw)
    common = np.intersect1d(a.labels.source_index, b.labels.source_index)
    assert len(common) >= 1
    for s in common:
        i = int(np.flatnonzero(a.labels.source_index == s)[0])
        j = int(np.flatnonzero(b.labels.source_index == s)[0])
        assert np.array_equal(a.patterns[i], b.patterns[j])
        # Same to float precision, not bit for bit: the two sit at different rows of their
        # blocks, and BLAS may sum a row differently by its place in a block.
        np.testing.assert_allclose(a.images[i], b.images[j], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gauss.propagate(a.patterns[:4], t1), a.images[:4], rtol=1e-6)


def test_mmf_other_fibre_gives_other_speckle(mmf: simulated.SimulatedSet) -> None:
    other = fibre.simulate_mmf(16, 1, fibre_seed=99)
    assert np.array_equal(other.patterns, mmf.patterns[:16])
    r = np.mean([in_core_pcc(x, y) for x, y in zip(other.images, mmf.images, strict=False)])
    assert abs(r) < 0.1


def test_mmf_bend(mmf: simulated.SimulatedSet) -> None:
    straight = mmf.images[:24]
    same = fibre.simulate_mmf(24, 1, bend=1.0).images
    assert np.array_equal(same, straight)
    # mu = 0 is entirely the bend fibre (seed fibre_seed + 1)
    gone = fibre.simulate_mmf(24, 1, bend=0.0).images
    assert np.array_equal(gone, fibre.simulate_mmf(24, 1, fibre_seed=1235).images)
    for mu, lo, hi in [(0.05, -0.1, 0.1), (0.8, 0.5, 0.78)]:
        bent = fibre.simulate_mmf(24, 1, bend=mu).images
        # intensity correlation |mu|^2 (0.0025 and 0.64)
        r = np.mean([in_core_pcc(x, y) for x, y in zip(bent, straight, strict=True)])
        assert lo < r < hi, (mu, r)
    with pytest.raises(ValueError, match="bend"):
        fibre.simulate_mmf(1, 0, bend=1.5)


def test_mmf_physics(mmf: simulated.SimulatedSet) -> None:
    imgs = mmf.images
    assert imgs.shape == (96, 64, 64) and imgs.dtype == np.float32
    assert np.all(imgs[:, ~CORE] == 0)
    assert np.mean(imgs[:, CORE] > 0) > 0.999
    # fully developed inside the core: contrast ~1, exponential intensities
    k = [x[CORE].std() / x[CORE].mean() for x in imgs]
    assert np.mean(k) == pytest.approx(1.0, abs=0.05)
    w1 = [stats.exp_distance(x[CORE][None]) for x in imgs]
    assert np.mean(w1) < 0.06
    # grains of the default size/16 = 4 px, measured on a crop inside the core
    g = stats.grain_size_batch(imgs[:, 14:50, 14:50])
    assert np.nanmean(g["fwhm_r"]) == pytest.approx(4.0, rel=0.1)
    # a lossless fibre: output power equals input power on average
    ratio = imgs.sum(axis=(1, 2)) / mmf.labels.power.to_numpy()
    assert ratio.mean() == pytest.approx(1.0, rel=0.05)


def test_mmf_labels_and_ranges(mmf: simulated.SimulatedSet) -> None:
    lab = mmf.labels
    for col in ("digit", "source_index", "dx", "dy", "angle", "scale", "power"):
        assert col in lab.columns
    _, target = slm_patterns._digits()
    assert np.array_equal(lab.digit, target[lab.source_index])
    assert lab.digit.between(0, 9).all() and lab.digit.nunique() == 10
    assert lab[["dx", "dy"]].abs().max().max() <= 2.0
    assert lab[["dx", "dy"]].abs().max().max() > 1.5
    assert lab.angle.abs().max() <= 15 and lab.angle.abs().max() > 12
    assert lab.scale.between(0.9, 1.1).all()
    p = mmf.patterns
    assert p.shape == (96, 16, 16) and p.dtype == np.float32
    assert p.min() >= 0 and p.max() <= 1 and p.max() > 0.9
    narrow = fibre.simulate_mmf(64, 3, shift=0.5, rotation=5.0, scale=(1.0, 1.2)).labels
    assert narrow[["dx", "dy"]].abs().max().max() <= 0.5
    assert narrow.angle.abs().max() <= 5
    assert narrow.scale.between(1.0, 1.2).all()


def test_transform_patterns_geometry() -> None:
    base = np.zeros((1, 16, 16), dtype=np.float32)
    base[0, 3:6, 9:14] = 1.0  # an asymmetric bar, top right
    one, zero = np.ones(1), np.zeros(1)
    np.testing.assert_array_equal(
        slm_patterns.transform_patterns(base, zero, zero, zero, one), base
    )
    rot = slm_patterns.transform_patterns(base, zero, zero, np.array([90.0]), one)
    np.testing.assert_allclose(rot[0], np.rot90(base[0]), atol=1e-5)  # counter-clockwise
    moved = slm_patterns.transform_patterns(base, np.array([2.0]), np.array([-1.0]), zero, one)
    np.testing.assert_allclose(moved[0], np.roll(base[0], (-1, 2), axis=(0, 1)), atol=1e-6)
    big = slm_patterns.transform_patterns(base, zero, zero, zero, np.array([1.1]))
    assert big.sum() > base.sum()


def test_mean_image_and_pattern_probe_are_in_the_expected_regime(
    mmf: simulated.SimulatedSet,
) -> None:
    # What a VAE on the users' data faces: a strong common component (mean-image PCC ~0.75) ...
    m = mmf.images.mean(axis=0)
    r = np.mean([pcc(x, m) for x in mmf.images])
    assert 0.65 < r < 0.85
    # ... and inputs that the augmentation makes only partly linearly separable (a logistic
    # regression reaches ~75 %; the closed-form ridge probe used here, being fast, ~66 %).
    from sklearn.linear_model import RidgeClassifier

    acc = {}
    for name, kw in [("default", {}), ("plain", dict(shift=0.0, rotation=0.0, scale=1.0))]:
        train = fibre.simulate_mmf(1500, 20, **kw)
        test = fibre.simulate_mmf(500, 21, **kw)
        clf = RidgeClassifier().fit(train.patterns.reshape(1500, -1), train.labels.digit)
        acc[name] = clf.score(test.patterns.reshape(500, -1), test.labels.digit)
    assert 0.55 < acc["default"] < 0.8
    assert acc["plain"] > acc["default"] + 0.15


# ----------------------------------------------------------------------------- CLI


def run_cli(*args: str, module: str = "speckle") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_vae_speckle_is_the_same_command(tmp_path: Path) -> None:
    """`python -m vae.speckle` is kept for existing scripts: same options, same files."""
    args = ("mmf", "--n", "3", "--seed", "5", "--size", "32")
    new = run_cli(*args, "--out", str(tmp_path / "new"))
    old = run_cli(*args, "--out", str(tmp_path / "old"), module="vae.speckle")
    assert new.returncode == 0 and old.returncode == 0, new.stderr + old.stderr
    for name in ("images/000002.png", "patterns/000000.png", "labels.csv"):
        assert (tmp_path / "new" / name).read_bytes() == (tmp_path / "old" / name).read_bytes()
    bad = run_cli("mmf", "--n", "3", module="vae.speckle")
    assert bad.returncode == 2 and "--seed" in bad.stderr and len(bad.stderr.splitlines()) == 1


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "I;16", path
        return np.asarray(im)


def test_cli_mmf_writes_a_dataset(tmp_path: Path) -> None:
    out = tmp_path / "set"
    res = run_cli("mmf", "--n", "5", "--seed", "3", "--out", str(out), "--bend", "0.9")
    assert res.returncode == 0, res.stderr
    pngs = sorted((out / "images").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(5)]
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["kind"] == "mmf" and meta["seed"] == 3 and meta["fibre_seed"] == 1234
    assert meta["bend"] == 0.9 and meta["version"] == __version__
    labels = pd.read_csv(out / "labels.csv")
    assert list(labels.columns[:3]) == ["file", "pattern", "digit"]
    assert labels.file[0] == "images/000000.png" and labels.pattern[4] == "patterns/000004.png"
    sim = fibre.simulate_mmf(5, 3, bend=0.9)
    stored = np.stack([read_png(out / f) for f in labels.file]) / meta["intensity_scale"]
    np.testing.assert_allclose(stored, sim.images, atol=0.51 / meta["intensity_scale"])
    assert np.array_equal(labels.digit, sim.labels.digit)
    with Image.open(out / labels.pattern[0]) as im:
        assert im.mode == "L" and im.size == (16, 16)
        np.testing.assert_allclose(np.asarray(im) / 255, sim.patterns[0], atol=0.5 / 255 + 1e-6)
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_is_byte_reproducible_and_guards_out(tmp_path: Path, capsys) -> None:
    args = ["free", "--n", "4", "--seed", "5", "--diameter", "8:16", "--looks", "1:3"]
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "b")]) == 0
    for f in sorted((tmp_path / "a" / "images").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / "images" / f.name).read_bytes()
    labels = pd.read_csv(tmp_path / "a" / "labels.csv")
    assert "pattern" not in labels.columns and not (tmp_path / "a" / "patterns").exists()
    assert labels.diameter.between(8, 16).all()
    capsys.readouterr()
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "--overwrite" in err and err.count("\n") == 1
    assert cli.main([*args[:4], "7", *args[5:], "--out", str(tmp_path / "a"), "--overwrite"]) == 0
    meta = json.loads((tmp_path / "a" / "simulation.json").read_text())
    assert meta["seed"] == 7 and meta["looks"] == [1, 3]


def test_cli_usage_errors_are_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["mmf", "--n", "x", "--seed", "1", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--n" in err
    assert (
        cli.main(
            ["free", "--n", "1", "--seed", "1", "--out", str(tmp_path / "x"), "--diameter", "100"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fit" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "stats" in capsys.readouterr().out


def test_cli_stats(tmp_path: Path) -> None:
    sim = free.simulate_free(2, 1, size=64, diameter=16)
    io.write_dataset(sim, tmp_path / "ds")
    np.save(tmp_path / "one.npy", sim.images[0])
    np.save(tmp_path / "stack.npy", sim.images)
    rgb = (np.clip(sim.images[1] / 4, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(np.stack([rgb] * 3, axis=-1)).save(tmp_path / "rgb.png")
    Image.fromarray(sim.images[0]).save(tmp_path / "float.tif")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    res = run_cli("stats", str(tmp_path), "--json")
    assert res.returncode == 1
    assert "broken.png" in res.stderr and res.stderr.count("\n") == 1
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    files = [Path(r["file"]).name for r in rows]
    assert files.count("stack.npy") == 2 and files.count("float.tif") == 1
    assert len(rows) == 2 + 1 + 2 + 1 + 1  # dataset pngs, one.npy, stack, rgb, tif
    required = {"file", "contrast", "grain_fwhm_x", "grain_fwhm_y", "ks_exp"}
    assert all(required <= set(r) for r in rows)
    one = next(r for r in rows if r["file"].endswith("one.npy"))
    assert one["contrast"] == pytest.approx(stats.contrast(sim.images[0]))
    tif = next(r for r in rows if r["file"].endswith("float.tif"))
    assert tif["grain_fwhm_r"] == pytest.approx(stats.grain_size(sim.images[0]).fwhm_r)
    png = next(r for r in rows if r["file"].endswith("000000.png"))
    assert png["contrast"] == pytest.approx(stats.contrast(sim.images[0]), rel=1e-3)


def test_cli_stats_refuses_hostile_files_one_line_each(tmp_path: Path, capsys) -> None:
    """stats reads through the hardened reader in `frames`: each bad file is one stderr line naming
    it, nothing is unpickled or allocated from a header's word, and the good files still count."""
    from tests.data_files import npy_bytes, png_claiming

    img = free.simulate_free(3, 2, size=32, diameter=8).images
    Image.fromarray((np.clip(img[0] / 4, 0, 1) * 255).astype(np.uint8)).save(tmp_path / "ok.png")
    np.savez(tmp_path / "ok.npz", img[:2])
    png = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    huge = npy_bytes(np.zeros((1, 1))).replace(b"(1, 1)", b"(100000, 100000, 100000)")
    (tmp_path / "huge.npy").write_bytes(huge)  # 8 PB claimed, 8 bytes present
    nan = img.copy()
    nan[1, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "pickle.npy", np.full((16, 16), None, object), allow_pickle=True)
    bad = ["cut.png", "bomb.png", "huge.npy", "nan.npy#1", "pickle.npy", "missing.png"]
    names = ["ok.png", "ok.npz", *(b.partition("#")[0] for b in bad)]
    assert cli.main(["stats", "--json", *(str(tmp_path / n) for n in names)]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == len(bad), err
    for line, name in zip(lines, bad, strict=True):
        assert line.startswith(f"speckle stats: {tmp_path / name}: "), line
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(Path(r["file"]).name, r.get("index")) for r in rows] == [
        ("ok.png", None),
        ("ok.npz", 0),
        ("ok.npz", 1),
    ]
    assert rows[2]["contrast"] == pytest.approx(stats.contrast(img[1]), rel=1e-5)


def test_bundled_digits_are_read_without_importing_scikit_learn() -> None:
    """The digits come from scikit-learn's data file directly (its import costs a fresh start
    1.3 s), and are exactly what load_digits gives."""
    code = (
        "import sys; from speckle import mmf as fibre, slm_patterns; "
        "images, target = slm_patterns._digits_8x8(); "
        "fibre.simulate_mmf(4, 1); print(images.shape, int(target.sum()), 'sklearn' in sys.modules)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    from sklearn.datasets import load_digits

    d = load_digits()
    assert res.stdout.split() == ["(1797,", "8,", "8)", str(int(d.target.sum())), "False"]
    images, target = slm_patterns._digits_8x8()
    assert np.array_equal(images, d.images) and np.array_equal(target, d.target)


# ----------------------------------------------------------------------------- handwriting, states


def test_digit_splits_never_share_handwriting() -> None:
    train = fibre.simulate_mmf(400, 1, digits="train")
    test = fibre.simulate_mmf(400, 1, digits="test")
    tr, te = set(train.labels.source_index), set(test.labels.source_index)
    assert not tr & te
    assert all(i % 5 == 4 for i in te) and not any(i % 5 == 4 for i in tr)
    assert (
        len(slm_patterns.digit_pool("test")) == 359 and len(slm_patterns.digit_pool("all")) == 1797
    )
    assert test.meta["digits"] == "test"
    assert set(test.labels.digit) == set(range(10))
    with pytest.raises(ValueError, match="digits must be one of"):
        fibre.simulate_mmf(4, 1, digits="valid")


def test_grain_finer_than_two_pixels_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 px"):
        fibre.simulate_mmf(4, 1, grain=1.5)
    res = run_cli("mmf", "--n", "2", "--seed", "1", "--out", "unused", "--grain", "1.2")
    assert res.returncode == 1 and "at least 2 px" in res.stderr


def test_fibre_states_decorrelate_by_mu_to_the_fourth() -> None:
    """Two states share mu T: their output fields correlate by mu^2, intensities by mu^4."""
    mu = 0.9
    one = slm_patterns._digits()[0][:1]
    sim = fibre.simulate_mmf(64, 2, patterns=one, shift=0, rotation=0, scale=1.0, bend=mu, states=8)
    state = sim.labels.state.to_numpy()
    assert set(state) <= set(range(8)) and len(set(state)) > 4
    pairs = [(i, j) for i in range(64) for j in range(i) if state[i] != state[j]][:200]
    r = np.mean([in_core_pcc(sim.images[i], sim.images[j]) for i, j in pairs])
    assert r == pytest.approx(mu**4, abs=0.08)
    same = [(i, j) for i in range(64) for j in range(i) if state[i] == state[j]][:50]
    assert np.mean([in_core_pcc(sim.images[i], sim.images[j]) for i, j in same]) > 0.999
    with pytest.raises(ValueError, match="bend"):
        fibre.simulate_mmf(4, 1, states=3)


def test_cli_sends_own_patterns_through_the_fibre(tmp_path: Path) -> None:
    pats = tmp_path / "slm"
    pats.mkdir()
    for k in range(3):
        img = np.zeros((32, 32), dtype=np.uint8)
        img[4 + 8 * k : 12 + 8 * k, 8:24] = 255  # a bar at three heights
        Image.fromarray(img).save(pats / f"bar{k}.png")
    (pats / "notes.png").write_text("not an image")
    out = tmp_path / "set"
    res = run_cli(
        "mmf",
        "--n",
        "12",
        "--seed",
        "4",
        "--patterns",
        str(pats),
        "--shift",
        "0",
        "--rotation",
        "0",
        "--scale",
        "1",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    assert "notes.png" in res.stderr  # the bad file is named and skipped
    labels = pd.read_csv(out / "labels.csv")
    assert set(labels.source_file) <= {"bar0.png", "bar1.png", "bar2.png"}
    assert "digit" not in labels
    row = labels.iloc[0]
    pattern = np.asarray(Image.open(out / row.pattern), dtype=np.float64) / 255
    k = int(row.source_file[3])
    assert pattern[2 + 4 * k : 6 + 4 * k, 4:12].min() > 0.9 and pattern.sum() == pytest.approx(
        32, rel=0.05
    )


@pytest.mark.parametrize("file_format", ["png", "tiff"])
def test_cli_stats_of_a_simulated_set_reads_its_frames_not_its_patterns(
    tmp_path: Path, file_format: str
) -> None:
    """The README's example on a small set: one row per speckle frame (those `--data` trains on),
    none for the input patterns, and the core's contrast that of fully developed speckle."""
    out = tmp_path / "mmf-test"
    args = f"mmf --n 200 --seed 100 --digits test --format {file_format} --out {out}"
    made = run_cli(*args.split())
    assert made.returncode == 0, made.stderr
    res = run_cli("stats", str(out), "--json")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 200
    assert not any("pattern" in r["file"] for r in rows)
    assert all(r["grain_fwhm_r"] is not None and "core" in r["mask"] for r in rows)
    # A 64 px frame holds a finite number of grains, which biases its contrast a little low:
    # 0.976 over the README's 1000 frames; the patterns pulled the mean down to 0.88.
    assert abs(np.mean([r["contrast"] for r in rows]) - 1) < 0.03


def test_cli_stats_takes_the_lit_region(tmp_path: Path) -> None:
    """Fibre frames: auto finds the simulator's core, and the contrast there is that of fully
    developed speckle; none measures the whole frame, cladding included; a mask file is used as
    given, and one of the wrong size is refused for the frames it does not fit."""
    sim = fibre.simulate_mmf(4, 2)
    io.write_dataset(sim, tmp_path / "fib")
    core = gauss.core_mask(64)

    def rows(*args: str) -> list[dict]:
        res = run_cli("stats", str(tmp_path / "fib" / "images"), "--json", *args)
        assert res.returncode == 0, res.stderr
        return [json.loads(line) for line in res.stdout.splitlines()]

    auto = rows()
    assert all("simulation.json core" in r["mask"] for r in auto)
    assert auto[0]["contrast"] == pytest.approx(stats.contrast(sim.images[0], core), rel=0.01)
    assert auto[0]["lit_fraction"] == pytest.approx(core.mean())
    whole = rows("--mask", "none")
    assert all(r["mask"] == "whole frame" for r in whole)
    assert whole[0]["contrast"] > 1.3 > auto[0]["contrast"]
    Image.fromarray(core.astype(np.uint8) * 255).save(tmp_path / "core.png")
    given = rows("--mask", str(tmp_path / "core.png"))
    assert given[0]["contrast"] == pytest.approx(auto[0]["contrast"], rel=1e-6)
    Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / "small.png")
    bad = run_cli("stats", str(tmp_path / "fib" / "images"), "--mask", str(tmp_path / "small.png"))
    assert bad.returncode == 1 and "frames are 64x64" in bad.stderr
    missing = run_cli("stats", str(tmp_path / "fib"), "--mask", str(tmp_path / "nope.png"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    # A single frame without a dataset around it: its own smoothed threshold, about the core.
    np.save(tmp_path / "alone.npy", sim.images[0])
    res = run_cli("stats", str(tmp_path / "alone.npy"), "--json")
    row = json.loads(res.stdout)
    assert row["mask"] == "thresholded frame" and abs(row["lit_fraction"] - core.mean()) < 0.08
