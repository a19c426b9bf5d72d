"""frames.normalize: crop, resize and the three normalizations, with their effect on K."""

from __future__ import annotations

import json

import numpy as np
import pytest

from frames import Normalization, RawImage, normalize, preprocess
from tests.data_files import speckle, u16


def test_crop_and_resize_with_notes() -> None:
    raw = RawImage(speckle(96, 80).astype(np.float32), 1.0)
    img, notes = preprocess(raw, 64, Normalization())
    assert img.shape == (64, 64) and img.dtype == np.float32
    assert notes == ["cropped 80×96 → 80×80 (centre)", "resized 80×80 → 64×64 (area)"]
    up, notes = preprocess(speckle(20, 20).astype(np.float32), 32, Normalization())
    assert up.shape == (32, 32) and notes == ["resized 20×20 → 32×32 (bilinear)"]
    same, notes = preprocess(speckle(32, 32).astype(np.float32), 32, Normalization())
    assert notes == []


def test_crop_is_centred_and_area_resize_is_binning() -> None:
    x = np.arange(8 * 12, dtype=np.float32).reshape(8, 12)
    out, _ = preprocess(RawImage(x, 1000.0), 8, Normalization("fixed", high=1000))
    np.testing.assert_allclose(out, x[:, 2:10] / 1000, rtol=1e-6)
    y = speckle(64, 64).astype(np.float32)
    out, _ = preprocess(RawImage(y, 100.0), 16, Normalization("fixed", high=100))
    binned = y.reshape(16, 4, 16, 4).mean(axis=(1, 3)) / 100
    np.testing.assert_allclose(out, binned, rtol=1e-5)


def test_three_normalizations() -> None:
    x = u16(64, 64).astype(np.float32)
    raw = RawImage(x, 65535.0)
    m, _ = preprocess(raw, 64, Normalization("max"))
    assert m.max() == 1.0 and m.min() >= 0
    # A pure scale keeps the speckle contrast K = σ/μ.
    assert m.std() / m.mean() == pytest.approx(x.std() / x.mean(), rel=1e-5)

    flat = RawImage(1000 + 10 * speckle(64, 64).astype(np.float32), 65535.0)  # nothing clips
    mean, _ = preprocess(flat, 64, Normalization("mean", mean_scale=5))
    assert mean.mean() == pytest.approx(1 / 5, rel=1e-5)
    clipped, _ = preprocess(raw, 64, Normalization("mean", mean_scale=5))
    assert clipped.max() == 1.0
    assert 0.99 * 0.2 < clipped.mean() < 0.2  # a few bright pixels (≈ e⁻⁵) are clipped

    fixed, _ = preprocess(raw, 64, Normalization("fixed", high=65535))
    np.testing.assert_allclose(fixed, np.clip(x / 65535, 0, 1), rtol=1e-6)
    default_high, _ = preprocess(raw, 64, Normalization("fixed"))
    np.testing.assert_array_equal(default_high, fixed)
    grey = RawImage(np.full((8, 8), 51, np.float32), 255.0)
    eight_bit, _ = preprocess(grey, 8, Normalization("fixed"))
    assert eight_bit.mean() == pytest.approx(0.2)
    window, _ = preprocess(raw, 64, Normalization("fixed", low=1000, high=3000))
    np.testing.assert_allclose(window, np.clip((x - 1000) / 2000, 0, 1), rtol=1e-6)

    dark, _ = preprocess(RawImage(np.zeros((8, 8), np.float32), 255.0), 8, Normalization("max"))
    assert not dark.any()
    # The mapping alone, as the app applies it to arrays it already holds.
    np.testing.assert_array_equal(normalize(x, Normalization("fixed"), 65535.0), fixed)


def test_normalization_round_trips_and_rejects_bad_values() -> None:
    for norm in (
        Normalization(),
        Normalization("mean", mean_scale=4),
        Normalization("fixed", low=10, high=1000),
    ):
        d = json.loads(json.dumps(norm.to_dict()))
        assert Normalization.from_dict(d) == norm and Normalization.from_dict(d).to_dict() == d
    assert Normalization(mean_scale=5).to_dict() == Normalization(mean_scale=5.0).to_dict()
    for bad in (
        {"mode": "median"},
        {"mode": "fixed", "low": 5, "high": 1},
        {"mean_scale": 0},
        {"mean_scale": -1},
        {"mean_scale": float("nan")},
        {"high": "65535"},
        {"unknown": 1},
        [("mode", "max")],
    ):
        with pytest.raises(ValueError):
            Normalization.from_dict(bad)  # type: ignore[arg-type]


def test_mean_normalization_divides_by_the_lit_region_mean() -> None:
    """On fibre frames the mean over the whole frame includes the dark cladding: dividing by it
    puts the clip near 3<I> of the core. The lit-region mean keeps it at 5<I>_core."""
    from speckle.gaussian_fibre import core_mask
    from speckle.mmf import simulate_mmf
    from speckle.stats import contrast

    frames = simulate_mmf(100, 5).images
    core = core_mask(64)
    norm = Normalization("mean")
    ours = np.array([normalize(f, norm) for f in frames])
    whole = np.clip(frames / (5 * frames.mean(axis=(1, 2), keepdims=True)), 0, 1)
    assert (ours[:, core] >= 1).mean() < 0.015 < 0.03 < (whole[:, core] >= 1).mean()
    kept = np.mean(
        [contrast(o, core) / contrast(f, core) for o, f in zip(ours, frames, strict=True)]
    )
    assert kept > 0.95
    assert np.mean([o[core].mean() for o in ours]) == pytest.approx(0.2, rel=0.05)
    # Speckle lit everywhere: the lit region is the whole frame, as before.
    flat = speckle(64, 64, seed=3)
    np.testing.assert_allclose(
        normalize(flat, norm), np.clip(flat / (5 * flat.mean()), 0, 1), rtol=1e-5
    )
