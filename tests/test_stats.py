from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy import stats as sst

from speckle import free, gaussian_fibre, mmf, simulated, stats


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Eight fully developed speckle frames, 128 x 128, circular pupil D = 32 (grain ~4.1 px)."""
    return free.simulate_free(8, 11, size=128, diameter=32).images


def test_grain_fwhm_of_the_airy_autocovariance_is_exact() -> None:
    # The theoretical |2 J1(v)/v|^2 autocovariance: the sub-pixel interpolation must recover
    # 1.029 N/D to within a percent although the FWHM is not a whole number of pixels.
    for n, d in [(256, 40), (512, 100), (256, 64)]:
        c = free.expected_autocovariance(free.pupil_mask(n, d))
        g = stats.fwhm_from_autocovariance_batch(c[None])
        want = simulated.AIRY_FWHM * n / d
        for key in ("fwhm_x", "fwhm_y", "fwhm_r"):
            assert g[key][0] == pytest.approx(want, rel=0.01), (n, d, key)
        assert g["anisotropy"][0] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(("diameter", "aspect"), [(16, 1.0), (32, 1.0), (32, 0.5)])
def test_grain_size_recovers_pupil_factors(diameter: int, aspect: float) -> None:
    pupil = "circle" if aspect == 1 else "ellipse"
    sim = free.simulate_free(6, 3, size=128, diameter=diameter, pupil=pupil, aspect=aspect)
    g = stats.grain_size_batch(sim.images)
    fx = simulated.AIRY_FWHM * 128 / diameter
    fy = fx / aspect
    assert g["fwhm_x"].mean() == pytest.approx(fx, rel=0.1)
    assert g["fwhm_y"].mean() == pytest.approx(fy, rel=0.1)
    assert g["anisotropy"].mean() == pytest.approx(1 / aspect, rel=0.1)
    single = stats.grain_size(sim.images[0])
    assert single.fwhm_x == pytest.approx(g["fwhm_x"][0])
    assert single.fwhm_r == pytest.approx(g["fwhm_r"][0])


def test_contrast_recovers_number_of_looks() -> None:
    for m in (1, 2, 4, 9):
        sim = free.simulate_free(4, m, size=256, diameter=64, looks=m)
        assert stats.contrast_batch(sim.images).mean() == pytest.approx(1 / math.sqrt(m), rel=0.05)


def test_blur_lowers_contrast_and_widens_grains(frames: np.ndarray) -> None:
    img = frames[0]
    blurred = ndimage.gaussian_filter(img, 2.0, mode="wrap")
    assert stats.contrast(img) == pytest.approx(1.0, abs=0.05)
    assert stats.contrast(blurred) < 0.6
    assert stats.local_contrast(blurred, 7) < stats.local_contrast(img, 7)
    assert stats.grain_size(blurred).fwhm_r > 1.5 * stats.grain_size(img).fwhm_r
    assert stats.exp_distance(blurred) > 5 * stats.exp_distance(img)
    assert stats.ks_exp(blurred) > 3 * stats.ks_exp(img)


def test_shift_changes_nothing(frames: np.ndarray) -> None:
    img = frames[1]
    moved = np.roll(img, (13, -7), axis=(0, 1))
    assert stats.contrast(moved) == pytest.approx(stats.contrast(img), rel=1e-9)
    assert stats.histogram_distance(img, moved) == pytest.approx(0.0, abs=1e-12)
    assert stats.ks_exp(moved) == pytest.approx(stats.ks_exp(img), rel=1e-9)
    # The grain is measured over lit pixel pairs only: the same frame placed anywhere on a larger
    # dark canvas, with its mask, gives exactly the same grain as the frame alone.
    h, w = img.shape
    sizes = []
    for y, x in ((0, 0), (40, 9), (17, 64)):
        canvas, lit = np.zeros((h + 64, w + 64)), np.zeros((h + 64, w + 64), dtype=bool)
        canvas[y : y + h, x : x + w], lit[y : y + h, x : x + w] = img, True
        g = stats.grain_size(canvas, mask=lit)
        sizes.append((g.fwhm_x, g.fwhm_y))
    g = stats.grain_size(img)
    for got in sizes:
        assert got == pytest.approx((g.fwhm_x, g.fwhm_y), rel=1e-9)
    # and a different realization with the same statistics is close, a blurred one is not
    other = frames[2]
    assert stats.histogram_distance(img, other) < 0.05
    blurred = ndimage.gaussian_filter(img, 2.0, mode="wrap")
    assert stats.histogram_distance(img, blurred) > 0.2


def test_exponential_distribution_measures() -> None:
    rng = np.random.default_rng(0)
    x = rng.exponential(3.0, (200, 250))
    assert stats.contrast(x) == pytest.approx(1.0, abs=0.02)
    assert stats.ks_exp(x) == pytest.approx(sst.kstest(x.ravel() / x.mean(), "expon").statistic)
    assert stats.ks_exp(x) < 0.01
    assert stats.exp_distance(x) < 0.02
    # W1 against a fine quantile grid of Exp(1) agrees with the exact integral
    q = -np.log1p(-(np.arange(200_000) + 0.5) / 200_000)
    w_ref = sst.wasserstein_distance(x.ravel() / x.mean(), q)
    assert stats.exp_distance(x) == pytest.approx(w_ref, abs=2e-3)
    g = rng.gamma(4.0, 1.0, (100, 100))  # 4 looks: clearly not exponential
    assert stats.ks_exp(g) > 0.2
    assert stats.exp_distance(g) > 0.3
    hist, edges = stats.intensity_histogram(x, bins=15, range=(0.0, 3.0))
    # exp(-I) averaged over each bin, renormalized to the part of the law inside the range
    want = -np.diff(np.exp(-edges)) / np.diff(edges) / (1 - math.exp(-3.0))
    np.testing.assert_allclose(hist, want, rtol=0.06)
    full, full_edges = stats.intensity_histogram(x)
    assert full_edges[0] == 0 and full_edges[-1] == pytest.approx(x.max() / x.mean())
    assert (full * np.diff(full_edges)).sum() == pytest.approx(1.0)
    n = stats.normalized_intensity(x)
    assert n.mean() == pytest.approx(1.0)


def test_autocovariance_normalization(frames: np.ndarray) -> None:
    c = stats.autocovariance(frames[3])
    assert c.shape == frames[3].shape
    assert c[64, 64] == pytest.approx(1.0)
    assert np.abs(c).max() == pytest.approx(1.0)
    np.testing.assert_allclose(c[64, 65:80], c[64, 63:48:-1], atol=1e-10)  # c(-d) = c(d)
    # far lags of independent grains are uncorrelated
    assert np.abs(c[64, 96]) < 0.1


def test_local_contrast_window_is_respected(frames: np.ndarray) -> None:
    img = frames[4]
    k = [stats.local_contrast(img, w) for w in (3, 7, 21)]
    assert k[0] < k[1] < k[2] < stats.contrast(img)
    kmap = stats.local_contrast_map(img, 7)
    assert kmap.shape == img.shape
    assert np.nanmean(kmap) == pytest.approx(k[1])
    with pytest.raises(ValueError, match="window"):
        stats.local_contrast(img, 1)
    # A dark surround (fibre core on a black camera) has no local contrast, not a huge one.
    padded = np.pad(img, 40)
    dark_map = stats.local_contrast_map(padded, 7)
    assert np.isnan(dark_map[:30, :30]).all()
    # at most one lit pixel in 49: K = sqrt(49 - 1), the bound for non-negative data
    assert np.nanmax(dark_map) <= math.sqrt(48) + 1e-6
    np.testing.assert_allclose(dark_map[60:150, 60:150], kmap[20:110, 20:110], rtol=1e-6)


def test_speckle_stats_keys_and_batch(frames: np.ndarray) -> None:
    s = stats.speckle_stats(frames[0], window=5)
    assert tuple(s) == stats.STAT_KEYS
    assert all(type(v) is float for v in s.values())
    assert s["contrast"] == pytest.approx(1.0, abs=0.05)
    assert s["grain_fwhm_r"] == pytest.approx(simulated.AIRY_FWHM * 128 / 32, rel=0.1)
    b = stats.speckle_stats_batch(frames[:3], window=5)
    for k in stats.STAT_KEYS:
        assert b[k][0] == pytest.approx(s[k], rel=1e-9), k
    np.testing.assert_allclose(
        stats.local_contrast_batch(frames[:3], 5),
        [stats.local_contrast(f, 5) for f in frames[:3]],
    )


def test_degenerate_inputs() -> None:
    zero = np.zeros((16, 16))
    const = np.full((16, 16), 0.3)
    negative = -np.ones((16, 16))
    for img in (zero, negative):
        s = stats.speckle_stats(img)
        assert all(math.isnan(v) for k, v in s.items() if k != "mean"), s
        assert np.all(np.isnan(stats.normalized_intensity(img)))
        assert math.isnan(stats.histogram_distance(img, const))
    s = stats.speckle_stats(const)
    assert s["contrast"] == 0.0
    assert s["local_contrast"] == 0.0
    assert math.isnan(s["grain_fwhm_x"]) and math.isnan(s["anisotropy"])
    assert s["ks_exp"] == pytest.approx(1 - math.exp(-1))
    assert s["exp_w1"] == pytest.approx(2 / math.e)  # E|X - 1| for X ~ Exp(1)
    tiny = stats.speckle_stats(np.array([[1.0]]))
    assert math.isnan(tiny["grain_fwhm_r"])
    # Stripes along x: no half-maximum crossing along x (not measurable, nan), while along y
    # c(dy) ~= cos(2 pi dy / 16) crosses one half at dy = 16/6 (eight periods in the frame, so the
    # non-circular estimate is close to the periodic one).
    y = np.indices((128, 128))[0]
    stripes = 2.0 + np.sin(2 * np.pi * y / 16)
    g = stats.grain_size(stripes)
    assert math.isnan(g.fwhm_x) and math.isnan(g.anisotropy)
    assert g.fwhm_y == pytest.approx(2 * 16 / 6, rel=0.02)
    with pytest.raises(ValueError, match="2-D"):
        stats.contrast(np.zeros((2, 4, 4)))


@pytest.mark.parametrize("sizes", [(500, 500), (300, 1200), (1, 7)])
def test_wasserstein_matches_scipy(sizes) -> None:
    rng = np.random.default_rng(sum(sizes))
    u = rng.exponential(1.0, sizes[0])
    v = rng.gamma(3.0, 0.4, sizes[1]).round(1)  # ties, as in quantized images
    assert stats.wasserstein_1d(u, v) == pytest.approx(sst.wasserstein_distance(u, v), rel=1e-12)
    assert stats.wasserstein_1d(u, u) == 0.0


# ----------------------------------------------------------------------------- lit region


@pytest.fixture(scope="module")
def fibre() -> np.ndarray:
    """Frames of eight fibres: one fibre's frames share a common speckle component (every
    pattern is non-negative), so its frames' mean K is one draw that can sit a few percent from
    1 (0.97 for the default fibre); over fibres it is 1."""
    return np.concatenate([mmf.simulate_mmf(32, 3, fibre_seed=100 + k).images for k in range(8)])


def test_lit_mask_finds_the_fibre_core(fibre: np.ndarray) -> None:
    core = gaussian_fibre.core_mask(64)
    lit = stats.lit_mask(fibre)
    assert (lit & core).sum() / (lit | core).sum() > 0.95
    one = stats.lit_mask(fibre[0])  # a single frame's own speckle is smoothed away first
    assert (one & core).sum() / (one | core).sum() > 0.8
    free_space = free.simulate_free(4, 0, size=64, diameter=16).images
    assert stats.lit_mask(free_space).all()
    with pytest.raises(ValueError, match="mask shape"):
        stats.contrast(fibre[0], mask=np.ones((8, 8), dtype=bool))


def test_fibre_statistics_in_the_core_are_those_of_fully_developed_speckle(
    fibre: np.ndarray,
) -> None:
    lit = stats.lit_mask(fibre)
    core_k = stats.contrast_batch(fibre, lit)
    assert core_k.mean() == pytest.approx(1.0, abs=0.03)
    assert stats.contrast_batch(fibre).mean() > 1.3  # the dark cladding inflates it
    assert stats.ks_exp_batch(fibre, lit).mean() < 0.06 < stats.ks_exp_batch(fibre).mean()
    grain = np.nanmean(stats.grain_size_batch(fibre, lit)["fwhm_r"])
    assert grain == pytest.approx(64 / 16, rel=0.05)  # the simulator's default grain, size/16
    whole = np.nanmean(stats.grain_size_batch(fibre)["fwhm_r"])
    assert whole > 1.15 * grain
    # The mean image as a "reconstruction" keeps little of the contrast inside the core.
    ratio = stats.contrast(fibre.mean(axis=0), lit) / core_k.mean()
    assert ratio < 0.8


@pytest.mark.parametrize("speckle_px", [2, 4, 8])
def test_grain_of_non_periodic_speckle_matches_theory(speckle_px: int) -> None:
    """Speckle of N/D = s px cut from a larger field (not periodic in the frame, as on a camera):
    the FWHM is the Airy width 1.029 s within 3%."""
    rng = np.random.default_rng(speckle_px)
    n = 512
    pupil = free.pupil_mask(n, n / speckle_px)
    crops = []
    for _ in range(4):
        field = np.fft.fft2(pupil * np.exp(2j * np.pi * rng.random((n, n))))
        big = np.abs(field) ** 2
        crops += [big[i : i + 128, j : j + 128] for i in (0, 256) for j in (0, 256)]
    g = stats.grain_size_batch(np.array(crops))
    assert np.nanmean(g["fwhm_r"]) == pytest.approx(simulated.AIRY_FWHM * speckle_px, rel=0.03)
