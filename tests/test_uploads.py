from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from common import cache
from explorer import sources
from explorer.atlas import build_atlas, build_projection
from explorer.metrics import compare, percentile_of
from explorer.uploads import OOD_PERCENTILE, analyse, load_upload, posterior_samples
from frames import ImageFolder, Normalization
from speckle.free import expected_autocovariance, free_intensity, pupil_mask
from speckle.io import write_dataset
from speckle.mmf import simulate_mmf
from speckle.stats import contrast
from vae.checkpoint import load_checkpoint


def _free_speckle(
    n: int = 256, diameter: float = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = pupil_mask(n, diameter, "circle")
    screen = np.exp(2j * np.pi * rng.random((n, n)))
    return free_intensity(screen, mask).astype(np.float64), mask


def test_identical_images() -> None:
    x, _ = _free_speckle(64, 16)
    x = x / x.max()
    m = compare(x, x)
    assert (
        m["mse"] == 0
        and m["psnr"] == np.inf
        and m["ssim"] == pytest.approx(1.0)
        and m["pcc"] == pytest.approx(1.0)
    )
    assert m["contrast_ratio"] == pytest.approx(1.0) and m["local_contrast_ratio"] == pytest.approx(
        1.0
    )
    assert m["hist_w1"] == pytest.approx(0.0, abs=1e-12) and m["grain_ratio"] == pytest.approx(1.0)


def test_blurred_speckle_loses_the_contrast_the_simulator_predicts() -> None:
    """Blurring with a kernel h multiplies K² by Σ (h⋆h)(Δ)·c(Δ), c the speckle's normalized
    autocovariance, which the simulator knows from its pupil (Goodman ch. 4)."""
    ks, predicted = [], None
    for seed in range(4):
        x, mask = _free_speckle(256, 64, seed)
        blurred = ndimage.uniform_filter(x, 3, mode="wrap")
        ks.append(contrast(blurred) / contrast(x))
    c = expected_autocovariance(mask)
    h = np.zeros_like(c)
    centre = np.array(c.shape) // 2
    h[centre[0] - 1 : centre[0] + 2, centre[1] - 1 : centre[1] + 2] = 1 / 9
    hh = np.real(np.fft.fftshift(np.fft.ifft2(np.abs(np.fft.fft2(np.fft.ifftshift(h))) ** 2)))
    predicted = np.sqrt((hh * c).sum())
    assert np.mean(ks) == pytest.approx(predicted, rel=0.03)
    m = compare(x / x.max(), blurred / x.max())
    assert m["contrast_ratio"] < 0.9 and m["grain_ratio"] > 1.05


def test_shifted_image_loses_pcc_but_keeps_its_statistics() -> None:
    x, _ = _free_speckle(128, 32)
    x = x / x.max()
    shifted = np.roll(x, (5, 7), axis=(0, 1))
    m = compare(x, shifted)
    assert m["pcc"] < 0.2
    assert m["contrast_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert m["hist_w1"] == pytest.approx(0.0, abs=1e-9)
    # The grain size comes from a zero-padded (non-periodic) autocovariance, so the pixel pairs
    # that a circular shift moves across the border count differently: equal within 1%.
    assert m["grain_ratio"] == pytest.approx(1.0, rel=0.01)


def test_percentile_of() -> None:
    ref = np.arange(100)
    assert (
        percentile_of(-1, ref) == 0
        and percentile_of(49, ref) == 50
        and percentile_of(1e9, ref) == 100
    )


@pytest.fixture(scope="module")
def demo_atlas(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv(cache.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
    out = tmp_path_factory.mktemp("sim") / "mmf"
    write_dataset(simulate_mmf(300, seed=7), out)
    demo = load_checkpoint(sources.REPO / sources.DEMO_MODEL)
    norm = Normalization.from_dict(demo.config["preprocessing"]["normalization"])
    atlas = build_atlas(demo, ImageFolder(out, 64, norm))
    proj, _ = build_projection(atlas, "pca")
    yield atlas, proj, out
    mp.undo()


def _png16(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((img / img.max() * 65535).astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def test_uploads_are_analysed_and_bad_ones_reported(demo_atlas) -> None:
    atlas, proj, out = demo_atlas
    norm = Normalization.from_dict(atlas.checkpoint.config["preprocessing"]["normalization"])
    fibre = simulate_mmf(2, seed=99).images  # in distribution: new samples, same fibre
    noise = np.random.default_rng(0).random((96, 128))  # out of distribution, and not square
    tiff = io.BytesIO()
    Image.fromarray((fibre[1] / fibre[1].max() * 65535).astype(np.uint16)).save(tiff, format="TIFF")
    uploads = [
        load_upload("fibre.png", _png16(fibre[0]), 64, norm),
        load_upload("fibre16.tif", tiff.getvalue(), 64, norm),
        load_upload("noise.png", _png16(noise), 64, norm),
        load_upload("broken.png", b"\x89PNG\r\n\x1a\nnot really", 64, norm),
        load_upload("empty.npy", b"", 64, norm),
    ]
    analyse(uploads, atlas, proj, k=3)
    fibre_u, tif_u, noise_u, broken, empty = uploads
    assert broken.error.startswith("broken.png: ") and empty.error.startswith("empty.npy: ")
    assert "cropped 128×96 → 96×96 (centre)" in noise_u.notes
    for u in (fibre_u, tif_u, noise_u):
        assert u.recon.shape == (64, 64) and u.position.shape == (2,) and len(u.neighbours) == 3
        assert set(u.metrics) >= {
            "mse",
            "psnr",
            "ssim",
            "pcc",
            "contrast_ratio",
            "hist_w1",
            "grain_ratio",
        }
    assert fibre_u.metrics["pcc"] > 0.8 and not fibre_u.flagged
    assert tif_u.metrics["pcc"] > 0.8
    assert noise_u.metrics["pcc"] < fibre_u.metrics["pcc"]
    assert (
        noise_u.ood["reconstruction error"] > OOD_PERCENTILE
        and "reconstruction error" in noise_u.flagged
    )
    samples = posterior_samples(fibre_u, atlas, 3)
    assert samples.shape == (3, 64, 64) and not np.allclose(samples[0], samples[1])
