from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vae import metrics

RNG = np.random.default_rng(7)


def smooth_image(shape: tuple[int, ...], seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    """A smooth random image in [0, 1]: neighbouring pixels correlated like a real picture."""
    rng = np.random.default_rng(seed)
    sig = (0,) * (len(shape) - 2) + (sigma, sigma)
    x = ndimage.gaussian_filter(rng.standard_normal(shape), sig, mode="wrap")
    x -= x.min(axis=(-2, -1), keepdims=True)
    return x / x.max(axis=(-2, -1), keepdims=True)


def reference_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Brute-force Wang et al. (2004) SSIM: an explicit 11x11 Gaussian (sigma 1.5) window around
    every pixel whose window lies inside the image, population statistics, mean of the map."""
    r = np.arange(-5, 6)
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(5, a.shape[0] - 5):
        for j in range(5, a.shape[1] - 5):
            pa, pb = a[i - 5 : i + 6, j - 5 : j + 6], b[i - 5 : i + 6, j - 5 : j + 6]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va = (w * (pa - ma) ** 2).sum()
            vb = (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append(
                ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
            )
    return float(np.mean(vals))


def test_identical_images() -> None:
    a = smooth_image((32, 32))
    assert metrics.mse(a, a) == 0.0
    assert metrics.psnr(a, a) == np.inf
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert metrics.pcc(a, a) == pytest.approx(1.0, abs=1e-12)


def test_known_values() -> None:
    a = np.zeros((16, 16))
    b = np.full((16, 16), 0.1)
    assert metrics.mse(a, b) == pytest.approx(0.01)
    assert metrics.psnr(a, b) == pytest.approx(20.0)
    assert metrics.psnr(a * 255, b * 255, data_range=255) == pytest.approx(20.0)
    # Constant images: no variance, so SSIM is the luminance term (2 mx my + C1)/(mx^2 + my^2 + C1).
    c1 = (0.01 * 1.0) ** 2
    want = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    assert metrics.ssim(np.full((16, 16), 0.5), np.full((16, 16), 0.6)) == pytest.approx(want)
    x = smooth_image((24, 24), seed=1)
    assert metrics.pcc(x, 2 * x + 3) == pytest.approx(1.0)
    assert metrics.pcc(x, 1 - x) == pytest.approx(-1.0)


def test_ssim_matches_brute_force_reference() -> None:
    a = smooth_image((28, 30), seed=2)
    b = np.clip(a + 0.1 * RNG.standard_normal(a.shape), 0, 1)
    got = metrics.ssim(a, b)
    assert 0.2 < got < 0.95
    assert got == pytest.approx(reference_ssim(a, b), rel=1e-10)
    assert metrics.ssim(2 * a, 2 * b, data_range=2.0) == pytest.approx(got, rel=1e-10)


def test_shift_lowers_pcc_and_ssim() -> None:
    a = smooth_image((48, 48), seed=3)
    p = [metrics.pcc(a, np.roll(a, s, axis=1)) for s in (0, 1, 3)]
    s = [metrics.ssim(a, np.roll(a, k, axis=1)) for k in (0, 1, 3)]
    assert p[0] > p[1] > p[2]
    assert s[0] > s[1] > s[2]
    assert p[2] < 0.8 and s[2] < 0.8


def test_noise_lowers_psnr_monotonically() -> None:
    a = smooth_image((32, 32), seed=4)
    noise = RNG.standard_normal(a.shape)
    psnrs = [metrics.psnr(a, a + s * noise) for s in (0.01, 0.05, 0.2)]
    assert psnrs[0] > psnrs[1] > psnrs[2]
    assert psnrs[0] == pytest.approx(40.0, abs=1.0)


def test_batch_equals_single() -> None:
    a = smooth_image((5, 24, 24), seed=5)
    b = np.clip(a + 0.05 * RNG.standard_normal(a.shape), 0, 1)
    b[2] = a[2]
    got = metrics.pixel_metrics(a, b)
    assert set(got) == {"mse", "psnr", "ssim", "pcc"}
    for name, single in [
        ("mse", metrics.mse),
        ("psnr", metrics.psnr),
        ("ssim", metrics.ssim),
        ("pcc", metrics.pcc),
    ]:
        want = np.array([single(x, y) for x, y in zip(a, b, strict=True)])
        np.testing.assert_allclose(got[name], want, rtol=1e-12)
    np.testing.assert_allclose(metrics.mse_batch(a, b), got["mse"])
    np.testing.assert_allclose(metrics.ssim_batch(a, b), got["ssim"])
    np.testing.assert_allclose(metrics.pcc_batch(a, b), got["pcc"])
    np.testing.assert_allclose(metrics.psnr_batch(a, b), got["psnr"])
    assert got["psnr"][2] == np.inf


def test_degenerate_and_bad_input() -> None:
    flat = np.full((16, 16), 0.3)
    assert np.isnan(metrics.pcc(flat, smooth_image((16, 16))))
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.mse(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(flat, flat, data_range=0)
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        metrics.pixel_metrics(flat, flat)
