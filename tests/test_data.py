"""vae.data: reading every supported file type, preprocessing, the bad-file zoo, folders, labels,
stacks, workers, fingerprints, and fuzzing of read_image. Everything is generated in tmp_path."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vae import data
from vae.data import (
    ArrayDataset,
    ImageError,
    ImageFolder,
    Normalization,
    RawImage,
    preprocess,
    read_image,
    split_indices,
)

RNG = np.random.default_rng(0)


def speckle(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    """Fully developed speckle intensity: exponential statistics, mean 1."""
    return np.random.default_rng(seed).exponential(1.0, (h, w))


def u16(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.clip(speckle(h, w, seed) * 8000, 0, 65535).astype(np.uint16)


def u8(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.clip(speckle(h, w, seed) * 40, 0, 255).astype(np.uint8)


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def encode(arr: np.ndarray | Image.Image, fmt: str, **kw) -> bytes:
    im = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def npy_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid little PNG whose header claims width × height: a decompression bomb's signature."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- bit depths


def test_16_bit_png_and_tiff_keep_every_value(tmp_path: Path) -> None:
    a = u16(40, 48)
    a[3, 5] = 65535
    for name in ("a.png", "a.tif", "a.tiff"):
        raw = read_image(save(tmp_path / name, a))
        assert raw.pixels.dtype == np.float32 and raw.pixels.shape == (40, 48)
        assert raw.full_scale == 65535 and raw.pixels.max() == 65535
        np.testing.assert_array_equal(raw.pixels, a)
    big_endian = read_image(save(tmp_path / "be.tif", a.astype(">u2")))
    assert big_endian.source.endswith("I;16B")
    np.testing.assert_array_equal(big_endian.pixels, a)


def test_8_bit_bilevel_int32_and_float_files(tmp_path: Path) -> None:
    a8 = u8(16, 20)
    for name in ("b.png", "b.bmp", "b.tif", "b.gif"):
        raw = read_image(save(tmp_path / name, a8))
        assert raw.full_scale == 255, name
        np.testing.assert_array_equal(raw.pixels, a8)
    jpg = read_image(save(tmp_path / "b.jpg", a8, quality=95))
    assert jpg.full_scale == 255 and jpg.pixels.shape == (16, 20)
    assert abs(jpg.pixels.mean() - a8.mean()) < 2  # lossy, but the same picture

    bits = speckle(16, 16) > 1
    raw = read_image(save(tmp_path / "bits.png", bits))
    assert raw.full_scale == 1 and set(np.unique(raw.pixels)) <= {0.0, 1.0}
    np.testing.assert_array_equal(raw.pixels, bits)

    i32 = np.clip(speckle(16, 16) * 30000, 0, 60000).astype(np.int32)
    i32[0, 0] = 70000  # beyond 16 bits: full scale is the data max
    raw = read_image(save(tmp_path / "i32.tif", i32))
    assert raw.full_scale == 70000
    np.testing.assert_array_equal(raw.pixels, i32)

    f32 = (speckle(16, 24) * 3.5).astype(np.float32)
    raw = read_image(save(tmp_path / "f.tif", f32))
    np.testing.assert_array_equal(raw.pixels, f32)
    assert raw.full_scale == pytest.approx(f32.max())


def test_npy_images_and_bytes_uploads(tmp_path: Path) -> None:
    a = u16()
    np.save(tmp_path / "a.npy", a)
    raw = read_image(tmp_path / "a.npy")
    assert raw.full_scale == 65535
    np.testing.assert_array_equal(raw.pixels, a)
    np.testing.assert_array_equal(read_image(npy_bytes(a[None]), "one-frame.npy").pixels, a)
    buf = io.BytesIO()
    np.savez_compressed(buf, img=a)
    np.testing.assert_array_equal(read_image(buf.getvalue(), "a.npz").pixels, a)
    png = encode(a, "PNG")
    from_bytes = read_image(png, "upload.png")
    np.testing.assert_array_equal(from_bytes.pixels, read_image(save(tmp_path / "a.png", a)).pixels)
    # The content decides the format, not the name.
    np.testing.assert_array_equal(read_image(png, "misnamed.jpg").pixels, a)


# ----------------------------------------------------------------------------- colour


def test_colour_modes_become_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: ITU-R 601-2 luma 0.299 · 255
    raw = read_image(save(tmp_path / "red.png", rgb))
    assert raw.pixels.shape == (16, 16) and raw.full_scale == 255
    assert np.all(raw.pixels == 76) and "RGB converted to grayscale" in raw.notes[0]
    grey = np.repeat(u8(16, 16)[..., None], 3, axis=2)
    np.testing.assert_array_equal(read_image(save(tmp_path / "g.png", grey)).pixels, grey[..., 0])

    rgba = np.dstack([grey, np.full((16, 16), 7, np.uint8)])
    raw = read_image(save(tmp_path / "rgba.png", rgba))
    assert "alpha ignored" in raw.notes[0]
    np.testing.assert_array_equal(raw.pixels, grey[..., 0])
    la = np.dstack([grey[..., 0], np.full((16, 16), 7, np.uint8)])
    raw = read_image(save(tmp_path / "la.png", la))
    assert "alpha ignored" in raw.notes[0]
    np.testing.assert_array_equal(raw.pixels, grey[..., 0])

    Image.fromarray(grey).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").pixels.shape == (16, 16)
    Image.fromarray(grey).convert("CMYK").save(tmp_path / "cmyk.tif")
    Image.fromarray(grey).convert("CMYK").save(tmp_path / "cmyk.jpg")
    for name in ("cmyk.tif", "cmyk.jpg"):
        raw = read_image(tmp_path / name)
        assert raw.pixels.shape == (16, 16) and "CMYK" in raw.notes[0]

    # Camera JPEGs with an embedded preview (MPO): the first frame is the picture.
    colour = Image.fromarray(grey)
    raw = read_image(encode(colour, "MPO", save_all=True, append_images=[colour]), "cam.jpg")
    assert raw.notes[0] == "first of 2 MPO frames used" and raw.pixels.shape == (16, 16)


# ----------------------------------------------------------------------------- preprocessing


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
        {"mean_scale": float("nan")},
        {"high": "65535"},
        {"unknown": 1},
        [("mode", "max")],
    ):
        with pytest.raises(ValueError):
            Normalization.from_dict(bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- bad files


def write_bad_files(root: Path) -> dict[str, str]:
    """Each bad file, and words its error must contain."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("this is not an image\n")
    save(root / "one.png", np.zeros((1, 1), np.uint8))
    save(root / "small.png", np.zeros((4, 64), np.uint8))
    png = encode(u16(), "PNG")
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    tif = encode(u16(), "TIFF")
    (root / "truncated.tif").write_bytes(tif[: len(tif) - 500])
    (root / "bomb.png").write_bytes(png_claiming(100_000, 100_000))  # PIL's own limit trips
    (root / "huge.png").write_bytes(png_claiming(9000, 9000))  # under PIL's limit, over ours
    frames = [Image.fromarray(u8(16, 16, seed)) for seed in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    frames[0].save(root / "pages.tif", save_all=True, append_images=frames[1:])
    nan = speckle(16, 16).astype(np.float32)
    nan[2, 2] = np.nan
    save(root / "nan.tif", nan)
    inf = speckle(16, 16)
    inf[0, 0] = np.inf
    np.save(root / "inf.npy", inf)
    np.save(root / "scalar.npy", np.float32(1))
    np.save(root / "vector.npy", np.zeros(64, np.float32))
    np.save(root / "4d.npy", np.zeros((2, 2, 16, 16), np.float32))
    np.save(root / "complex.npy", np.zeros((16, 16), np.complex64))
    np.save(root / "object.npy", np.full((16, 16), None, object), allow_pickle=True)
    np.save(root / "record.npy", np.zeros((16, 16), [("a", "f4"), ("b", "i2")]))
    (root / "short.npy").write_bytes(npy_bytes(np.zeros((64, 64), np.float32))[:-100])
    (root / "fake.npy").write_bytes(b"not numpy at all")
    return {
        "empty.png": "empty file",
        "text.png": "not a readable image",
        "one.png": "1×1 pixels, smaller than 8×8",
        "small.png": "smaller than",
        "truncated.png": "not a readable image",
        "truncated.tif": "not a readable image",
        "bomb.png": "decompression bomb",
        "huge.png": "9000×9000 pixels is over the limit",
        "anim.gif": "3 frames (animated)",
        "pages.tif": "3 frames (multi-page)",
        "nan.tif": "NaN",
        "inf.npy": "NaN or Inf",
        "scalar.npy": "shape ()",
        "vector.npy": "shape (64,)",
        "4d.npy": "shape (2, 2, 16, 16)",
        "complex.npy": "unsupported array dtype complex64",
        "object.npy": "unsupported array dtype object",
        "record.npy": "unsupported array dtype",
        "short.npy": "truncated",
        "fake.npy": "not a .npy file",
    }


def test_each_bad_file_raises_a_one_line_image_error_naming_it(tmp_path: Path) -> None:
    for name, words in write_bad_files(tmp_path).items():
        with pytest.raises(ImageError) as e:
            read_image(tmp_path / name)
        msg = str(e.value)
        assert msg.startswith(f"{tmp_path / name}: ") and words in msg and "\n" not in msg, msg
        with pytest.raises(ImageError, match=f"^{name}: "):
            read_image((tmp_path / name).read_bytes(), name)


def test_size_limits_are_checked_before_reading(tmp_path: Path, monkeypatch) -> None:
    path = save(tmp_path / "a.png", u16(64, 64))
    monkeypatch.setattr(data, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImageError, match="over the limit of 100 bytes"):
        read_image(path)
    monkeypatch.setattr(data, "MAX_FILE_BYTES", 10**9)
    monkeypatch.setattr(data, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="64×64 pixels is over the limit of 1000"):
        read_image(path)
    np.save(tmp_path / "a.npy", np.zeros((64, 64), np.uint8))
    with pytest.raises(ImageError, match="over the limit"):
        read_image(tmp_path / "a.npy")


def test_hostile_npy_header_does_not_allocate(tmp_path: Path) -> None:
    header = npy_bytes(np.zeros((1, 1), np.float64))
    huge = header.replace(b"(1, 1)", b"(10000000, 1000000)")  # 80 TB claimed, 8 bytes present
    with pytest.raises(ImageError, match="truncated"):
        read_image(huge, "huge.npy")


def test_folder_skips_each_bad_file_once_and_loads_the_rest(tmp_path: Path, caplog) -> None:
    bad = write_bad_files(tmp_path / "bad")
    for i in range(3):
        save(tmp_path / "good" / f"{i}.png", u16(seed=i))
    with caplog.at_level(logging.WARNING, logger="vae.data"):
        ds = ImageFolder(tmp_path, 32)
    assert len(ds) == 3 and [f for f, _ in ds.files] == [f"good/{i}.png" for i in range(3)]
    assert len(ds.skipped) == len(bad)
    warned = [r.getMessage() for r in caplog.records if r.name == "vae.data"]
    for name, words in bad.items():
        assert sum(m.startswith(f"bad/{name}: ") for m in ds.skipped) == 1, name
        assert sum(m.startswith(f"bad/{name}: ") and words in m for m in warned) == 1, name
    assert all("\n" not in m for m in warned)
    assert ds[0].shape == (1, 32, 32)


def test_large_files_get_header_and_end_checks_at_scan(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(data, "FULL_DECODE_BYTES", 0)  # every file counts as large
    for fmt, suffix in (("PNG", "png"), ("TIFF", "tif"), ("JPEG", "jpg"), ("BMP", "bmp")):
        img = encode(u8(64, 64), fmt)
        (tmp_path / f"ok.{suffix}").write_bytes(img)
        (tmp_path / f"cut.{suffix}").write_bytes(img[: len(img) - 300])
    messages: list[str] = []
    ds = ImageFolder(tmp_path, 32, log=messages.append)
    assert sorted(f for f, _ in ds.files) == ["ok.bmp", "ok.jpg", "ok.png", "ok.tif"]
    assert sorted(m.split(":")[0] for m in messages) == ["cut.bmp", "cut.jpg", "cut.png", "cut.tif"]
    assert all("truncated" in m or "not a readable image" in m for m in messages), messages


def test_trailing_bytes_after_the_end_marker_are_fine(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(data, "FULL_DECODE_BYTES", 0)
    (tmp_path / "tail.jpg").write_bytes(encode(u8(64, 64), "JPEG") + b"\0" * 5000)
    (tmp_path / "tail.png").write_bytes(encode(u8(64, 64), "PNG") + b"\0" * 5000)
    assert len(ImageFolder(tmp_path, 32)) == 2


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ImageFolder(tmp_path / "nope", 32)
    with pytest.raises(ImageError, match=r"no usable images \(0 files skipped\)"):
        ImageFolder(tmp_path, 32)
    (tmp_path / "a.png").write_text("junk")
    (tmp_path / "notes.txt").write_text("not even a candidate")
    with pytest.raises(ImageError, match=r"no usable images \(1 files skipped\)"):
        ImageFolder(tmp_path, 32, log=lambda m: None)


def test_scan_is_recursive_sorted_case_blind_and_skips_hidden(tmp_path: Path) -> None:
    save(tmp_path / "b" / "z.PNG", u16())
    save(tmp_path / "b" / "c" / "a.TIF", u16())
    save(tmp_path / "a.png", u16())
    save(tmp_path / ".hidden" / "x.png", u16())
    save(tmp_path / "b" / ".x.png", u16())
    ds = ImageFolder(tmp_path, 32)
    assert [f for f, _ in ds.files] == ["a.png", "b/z.PNG", "b/c/a.TIF"]


def test_folder_notes_summarize_preprocessing(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / f"wide{i}.png", u16(48, 64, i))
    save(tmp_path / "square.png", u16(32, 32))
    save(tmp_path / "colour.png", np.dstack([u8(32, 32)] * 3))
    ds = ImageFolder(tmp_path, 32)
    assert (
        "3 of 5 images (64×48) are centre-cropped to 48×48 and resized to 32×32 (area)" in ds.notes
    )
    assert "1 of 5 images are RGB, converted to grayscale (luminance)" in ds.notes
    assert len(ds.notes) == 2


# ----------------------------------------------------------------------------- labels


def folder_with_labels(root: Path, csv: bytes, n: int = 4) -> Path:
    for i in range(n):
        save(root / "img" / f"{i:03d}.png", u16(seed=i))
    (root / "labels.csv").write_bytes(csv)
    return root


def test_labels_match_by_path_then_basename(tmp_path: Path) -> None:
    csv = (
        b"Filename,digit,angle,tag\n"
        b"img/000.png,3,1.5,a\n"
        b"001.png,4,2.5,b\n"  # basename only
        b"img\\002.png,5,,c\n"  # Windows separators
        b"ghost.png,9,9,d\n"
    )
    messages: list[str] = []
    ds = ImageFolder(folder_with_labels(tmp_path, csv), 32, log=messages.append)
    lab = ds.labels
    assert list(lab.columns) == ["file", "digit", "angle", "tag"]
    assert list(lab["file"]) == [f"img/{i:03d}.png" for i in range(4)]
    assert list(lab["digit"][:3]) == [3, 4, 5] and np.isnan(lab["digit"][3])
    assert np.isnan(lab["angle"][2]) and list(lab["tag"][:3]) == ["a", "b", "c"]
    assert messages == ["labels.csv: 1 rows name files that are not in the dataset"]


def test_labels_keep_leading_zeros_and_prefer_the_exact_path(tmp_path: Path) -> None:
    save(tmp_path / "x" / "007.png", u16())
    save(tmp_path / "y" / "007.png", u16(seed=1))
    (tmp_path / "labels.csv").write_text("name,run\ny/007.png,2\n007.png,1\n")
    ds = ImageFolder(tmp_path, 32, log=lambda m: None)
    assert dict(zip(ds.labels["file"], ds.labels["run"], strict=True)) == {
        "x/007.png": 1,
        "y/007.png": 2,
    }


@pytest.mark.parametrize(
    "csv, message",
    [
        (b"digit,angle\n1,2\n", "no filename column"),
        (b"", "unreadable"),
        (b"file,digit\n" + "img/000.png,\xe9t\xe9\n".encode("latin-1"), None),
        (b'file,digit\n"img/000.png,3\n\x00\x00', None),
        (b"file,digit\nimg/000.png,1\nimg/001.png,2,3,4\n", "malformed rows"),
        (bytes(range(256)) * 4, None),
        (b"\xff\xfe\x00\x00garbage", None),
    ],
)
def test_bad_labels_never_crash(tmp_path: Path, csv: bytes, message: str | None) -> None:
    messages: list[str] = []
    ds = ImageFolder(folder_with_labels(tmp_path, csv), 32, log=messages.append)
    assert len(ds) == 4 and list(ds.labels["file"])[0] == "img/000.png"
    assert len(ds.labels) == 4
    if message:
        assert any(message in m for m in messages), messages


def test_latin1_labels_are_read(tmp_path: Path) -> None:
    csv = "file,sample\nimg/000.png,échantillon\n".encode("latin-1")
    ds = ImageFolder(folder_with_labels(tmp_path, csv), 32, log=lambda m: None)
    assert ds.labels["sample"][0] == "échantillon"


def test_pattern_column_excludes_its_folder_and_reads_patterns(tmp_path: Path) -> None:
    rows = ["file,pattern,digit"]
    for i in range(5):
        save(tmp_path / "images" / f"{i:06d}.png", u16(seed=i))
        save(tmp_path / "patterns" / f"{i:06d}.png", (np.eye(16) * 255).astype(np.uint8))
        rows.append(f"images/{i:06d}.png,patterns/{i:06d}.png,{i}")
    save(tmp_path / "patterns" / "unlisted.png", u8())
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = ImageFolder(tmp_path, 32)
    assert len(ds) == 5 and all(f.startswith("images/") for f, _ in ds.files)
    p = ds.pattern(2)
    assert p.dtype == np.float32 and p.shape == (16, 16)
    np.testing.assert_array_equal(p, np.eye(16))
    assert list(ds.labels["digit"]) == list(range(5))
    assert ImageFolder(tmp_path / "images", 32).pattern(0) is None  # no labels, no pattern


# ----------------------------------------------------------------------------- stacks


def test_npy_and_npz_stacks_expand_to_frames(tmp_path: Path) -> None:
    stack = (speckle(4, 32 * 32).reshape(4, 32, 32) * 100).astype(np.float32)
    np.save(tmp_path / "s.npy", stack)
    np.savez(tmp_path / "multi.npz", a=stack[:2], b=stack[3])
    np.savez_compressed(tmp_path / "zipped.npz", stack[:3])
    np.save(tmp_path / "f.npy", np.asfortranarray(stack[:2]))
    (tmp_path / "labels.csv").write_text("file,t\ns.npy#1,10\ns.npy,99\nzipped.npz#2,7\n")
    ds = ImageFolder(tmp_path, 32, Normalization("fixed", high=1000), log=lambda m: None)
    names = list(ds.labels["file"])
    assert names == (
        ["f.npy#0", "f.npy#1", "multi.npz#a#0", "multi.npz#a#1", "multi.npz#b"]
        + [f"s.npy#{k}" for k in range(4)]
        + [f"zipped.npz#{k}" for k in range(3)]
    )
    assert ds.files[5] == ("s.npy", 0) and ds.files[4] == ("multi.npz", None)
    expected = [stack[0], stack[1], stack[0], stack[1], stack[3], *stack, *stack[:3]]
    for i, frame in enumerate(expected):
        np.testing.assert_array_equal(ds.read_raw(i).pixels, frame)
        np.testing.assert_allclose(ds[i][0].numpy(), np.clip(frame / 1000, 0, 1), rtol=1e-6)
    t = dict(zip(names, ds.labels["t"], strict=True))
    assert t["s.npy#1"] == 10 and t["s.npy#0"] == 99 and t["zipped.npz#2"] == 7
    assert np.isnan(t["f.npy#0"])


def test_stack_frames_with_nan_are_skipped_one_warning(tmp_path: Path) -> None:
    stack = speckle(5 * 16, 16).reshape(5, 16, 16).astype(np.float32)
    stack[1, 3, 3] = np.nan
    stack[3, 0, 0] = np.inf
    np.save(tmp_path / "s.npy", stack)
    messages: list[str] = []
    ds = ImageFolder(tmp_path, 16, log=messages.append)
    assert [k for _, k in ds.files] == [0, 2, 4]
    assert messages == ["s.npy: 2 frames contain NaN or Inf (#1, #3); skipped"]


def test_stacks_are_memory_mapped_not_loaded(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.zeros((3, 16, 16), np.uint16))
    np.savez(tmp_path / "z.npz", x=np.zeros((3, 16, 16), np.uint16))
    ds = ImageFolder(tmp_path, 16)
    for i in (0, 4):
        ds.read_raw(i)
    assert all(isinstance(a, np.memmap) for a in ds._open.values() if isinstance(a, np.ndarray))


# ----------------------------------------------------------------------------- workers, ids


def mixed_folder(root: Path) -> Path:
    for i in range(5):
        save(root / f"{i}.png", u16(40, 48, i))
    np.save(root / "s.npy", u16(3 * 32, 32).reshape(3, 32, 32))
    np.savez_compressed(root / "z.npz", u16(2 * 32, 32).reshape(2, 32, 32))
    return root


def test_loader_with_workers_gives_the_same_batches(tmp_path: Path) -> None:
    ds = ImageFolder(mixed_folder(tmp_path), 32, log=lambda m: None)  # a lambda must not matter
    assert pickle.dumps(ds)
    ds[5]  # open a memory map in this process before the workers start

    def load(workers: int, context: str | None) -> torch.Tensor:
        loader = torch.utils.data.DataLoader(
            ds, batch_size=4, num_workers=workers, multiprocessing_context=context
        )
        return torch.cat(list(loader))

    # Linux forks the workers; "spawn" (macOS, Windows) pickles the dataset.
    batches = [load(0, None), load(2, None), load(2, "spawn")]
    assert batches[0].shape == (10, 1, 32, 32)
    assert torch.equal(batches[0], batches[1]) and torch.equal(batches[0], batches[2])


def test_fingerprint_is_stable_and_tracks_changes(tmp_path: Path) -> None:
    mixed_folder(tmp_path)
    fp = ImageFolder(tmp_path, 32).fingerprint()
    assert len(fp) == 64 and ImageFolder(tmp_path, 32).fingerprint() == fp
    (tmp_path / "notes.txt").write_text("not data")
    assert ImageFolder(tmp_path, 32).fingerprint() == fp
    assert ImageFolder(tmp_path, 16).fingerprint() != fp
    assert ImageFolder(tmp_path, 32, Normalization("mean")).fingerprint() != fp
    path = tmp_path / "2.png"
    st = path.stat()
    save(path, u16(40, 48, seed=99))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse file-system clocks
    assert ImageFolder(tmp_path, 32).fingerprint() != fp


def test_split_is_deterministic_disjoint_and_validated() -> None:
    tr, va = split_indices(100, 0.2, seed=3)
    assert len(va) == 20 and not set(tr) & set(va) and sorted([*tr, *va]) == list(range(100))
    assert np.array_equal(split_indices(100, 0.2, seed=3)[1], va)
    assert not np.array_equal(split_indices(100, 0.2, seed=4)[1], va)
    assert len(split_indices(1, 0.5, 0)[0]) == 1 and len(split_indices(0, 0.5, 0)[0]) == 0
    with pytest.raises(ValueError):
        split_indices(10, 1.0, 0)


def test_array_dataset_interface() -> None:
    imgs = RNG.random((5, 16, 16)).astype(np.float32)
    ds = ArrayDataset(imgs, patterns=imgs[:, :8, :8])
    assert len(ds) == 5 and ds[2].shape == (1, 16, 16)
    assert torch.equal(ds[2][0], torch.from_numpy(imgs[2]))
    assert list(ds.labels["file"]) == [f"array#{i}" for i in range(5)] and ds.files[1] == (
        "array",
        1,
    )
    assert ds.read_raw(1).full_scale == 1.0 and ds.pattern(0).shape == (8, 8)
    fp = ds.fingerprint()
    assert ArrayDataset(imgs.copy()).fingerprint() == fp
    changed = imgs.copy()
    changed[0, 0, 0] = 0.5
    assert ArrayDataset(changed).fingerprint() != fp
    # A read-only copy inside, so that the fingerprint computed once stays true.
    with pytest.raises(ValueError, match="read-only"):
        ds.images[0, 0, 0] = 0.5
    before = ds.images[0, 0, 0]
    imgs[0, 0, 0] = 0.25  # the caller's array stays writable, and is not the dataset's
    assert ds.images[0, 0, 0] == before and ds.fingerprint() == fp
    with pytest.raises(ValueError):
        ArrayDataset(imgs * 2)
    with pytest.raises(ValueError):
        ArrayDataset(imgs[0])


# ----------------------------------------------------------------------------- fuzzing

HEADERS = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"II*\x00",
    b"MM\x00*",
    b"II*\x00\x08\x00\x00\x00",
    b"BM",
    b"GIF89a",
    b"\xff\xd8\xff",
    b"\x93NUMPY\x01\x00",
    b"PK\x03\x04",
]
VALID = {
    "a.png": encode(u16(16, 16), "PNG"),
    "b.png": encode(np.dstack([u8(12, 12)] * 3), "PNG"),
    "a.tif": encode(u16(16, 16), "TIFF"),
    "f.tif": encode(speckle(12, 12).astype(np.float32), "TIFF"),
    "a.jpg": encode(u8(16, 16), "JPEG"),
    "a.bmp": encode(u8(12, 12), "BMP"),
    "a.gif": encode(u8(12, 12), "GIF"),
    "a.npy": npy_bytes(speckle(12, 12).astype(np.float32)),
}


def assert_image_or_our_error(payload: bytes, name: str) -> None:
    try:
        raw = read_image(payload, name)
    except ImageError as e:
        assert str(e).startswith(f"{name}: ") and "\n" not in str(e)
        return
    assert isinstance(raw, RawImage)
    assert raw.pixels.ndim == 2 and raw.pixels.dtype == np.float32
    assert np.isfinite(raw.pixels).all() and np.isfinite(raw.full_scale)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(HEADERS),
    st.binary(max_size=4096),
    st.sampled_from(["x.png", "x.tif", "x.jpg", "x.npy", "x.npz", "x"]),
)
def test_random_bytes_give_an_image_or_an_image_error(head: bytes, body: bytes, name: str) -> None:
    assert_image_or_our_error(head + body, name)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), st.data())
def test_damaged_files_give_an_image_or_an_image_error(name: str, draw) -> None:
    payload = bytearray(VALID[name])
    for _ in range(draw.draw(st.integers(0, 6))):
        payload[draw.draw(st.integers(0, len(payload) - 1))] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(payload)))
    assert_image_or_our_error(bytes(payload[:cut] if draw.draw(st.booleans()) else payload), name)
