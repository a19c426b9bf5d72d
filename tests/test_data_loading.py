from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vae.data import (
    ArrayDataset,
    ImageError,
    ImageFolder,
    Normalization,
    preprocess,
    read_image,
    split_indices,
)

RNG = np.random.default_rng(0)


def speckle(h: int = 32, w: int = 32) -> np.ndarray:
    return RNG.exponential(1.0, (h, w))


def save(path: Path, arr: np.ndarray, mode: str | None = None, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path, format=fmt) if mode else Image.fromarray(arr).save(
        path, format=fmt
    )
    return path


def test_bit_depths_read_with_their_values(tmp_path: Path) -> None:
    a16 = (speckle() / speckle().max() * 65535).astype(np.uint16)
    a16[0, 0] = 65535
    raw = read_image(save(tmp_path / "a.png", a16))
    assert raw.pixels.max() == 65535 and raw.full_scale == 65535
    np.testing.assert_array_equal(raw.pixels, a16.astype(np.float32))
    tif = read_image(save(tmp_path / "a.tif", a16))
    assert tif.full_scale == 65535 and tif.pixels.max() == 65535
    a8 = (RNG.random((16, 20)) * 255).astype(np.uint8)
    raw8 = read_image(save(tmp_path / "b.bmp", a8))
    assert raw8.full_scale == 255
    np.testing.assert_array_equal(raw8.pixels, a8)
    f32 = speckle().astype(np.float32)
    rawf = read_image(save(tmp_path / "c.tif", f32, mode="F"))
    np.testing.assert_allclose(rawf.pixels, f32)
    np.save(tmp_path / "d.npy", f32)
    np.testing.assert_allclose(read_image(tmp_path / "d.npy").pixels, f32)
    jpg = read_image(save(tmp_path / "e.jpg", a8))
    assert jpg.pixels.shape == (16, 20)


def test_colour_modes_become_gray(tmp_path: Path) -> None:
    rgb = (RNG.random((16, 16, 3)) * 255).astype(np.uint8)
    raw = read_image(save(tmp_path / "rgb.png", rgb))
    assert raw.pixels.shape == (16, 16) and "converted to grayscale" in raw.notes[0]
    rgba = np.dstack([rgb, np.full((16, 16), 128, np.uint8)])
    assert "alpha ignored" in read_image(save(tmp_path / "rgba.png", rgba)).notes[0]
    pal = Image.fromarray(rgb).convert("P")
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").pixels.shape == (16, 16)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").pixels.shape == (16, 16)


def test_preprocess_crop_resize_and_notes() -> None:
    img, notes = preprocess(speckle(96, 80).astype(np.float32), 64, Normalization())
    assert img.shape == (64, 64) and img.max() == pytest.approx(1.0)
    assert notes == ["cropped 80×96 → 80×80 (centre)", "resized 80×80 → 64×64 (area)"]
    up, notes = preprocess(speckle(32, 32).astype(np.float32), 64, Normalization())
    assert up.shape == (64, 64) and "bilinear" in notes[0]


def test_normalizations() -> None:
    x = speckle(64, 64).astype(np.float32) * 100
    m, _ = preprocess(x, 64, Normalization("max"))
    assert m.max() == pytest.approx(1.0)
    mean, _ = preprocess(x * 0.01 + 1, 64, Normalization("mean", mean_scale=5))
    assert mean.mean() == pytest.approx(0.2, rel=1e-4)  # nothing clips: values ≤ ~1.1·⟨I⟩
    from vae.data import RawImage

    fixed, _ = preprocess(
        RawImage(np.full((64, 64), 32767.5, np.float32), 65535.0), 64, Normalization("fixed")
    )
    assert fixed.mean() == pytest.approx(0.5)
    norm = Normalization("fixed", low=10, high=1000)
    assert Normalization.from_dict(norm.to_dict()) == norm
    for bad in (
        {"mode": "median"},
        {"mode": "fixed", "low": 5, "high": 1},
        {"mean_scale": -1},
        {"x": 1},
    ):
        with pytest.raises(ValueError):
            Normalization.from_dict(bad)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width × height pixels: a decompression bomb's signature."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))  # fmt: skip


def _bad_files(root: Path) -> dict[str, str]:
    """Each bad file and the words its error must contain."""
    root.mkdir(parents=True, exist_ok=True)
    good = (speckle() * 1000).astype(np.uint16)
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("this is not an image")
    save(root / "tiny.png", np.zeros((1, 1), np.uint8))
    buf = io.BytesIO()
    Image.fromarray(good).save(buf, format="PNG")
    (root / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    frames = [Image.fromarray((RNG.random((16, 16)) * 255).astype(np.uint8)) for _ in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    np.save(root / "nan.npy", np.full((16, 16), np.nan, np.float32))
    np.save(root / "vec.npy", np.zeros(16, np.float32))
    (root / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    return {"empty.png": "empty", "text.png": "not a readable image", "tiny.png": "smaller than",
            "truncated.png": "not a readable image", "anim.gif": "frames", "nan.npy": "NaN",
            "vec.npy": "shape", "bomb.png": "pixels"}  # fmt: skip


def test_each_bad_file_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    for name, words in _bad_files(tmp_path).items():
        with pytest.raises(ImageError) as e:
            read_image(tmp_path / name, name)
        msg = str(e.value)
        assert msg.startswith(f"{name}: ") and words in msg and "\n" not in msg, msg


def test_folder_skips_bad_files_and_loads_the_rest(tmp_path: Path, caplog) -> None:
    root = tmp_path / "data"
    bad = _bad_files(root / "bad")
    for i in range(5):
        save(root / "good" / f"{i}.png", (speckle(40, 48) * 1000).astype(np.uint16))
    stack = (RNG.random((3, 32, 32)) * 100).astype(np.float32)
    np.save(root / "stack.npy", stack)
    np.savez(root / "more.npz", a=stack[:2], b=stack[0])
    with caplog.at_level(logging.WARNING, logger="vae.data"):
        ds = ImageFolder(root, 32, Normalization())
    assert len(ds) == 5 + 3 + 3
    assert len(ds.skipped) == len(bad)
    for name in bad:
        assert sum(f"bad/{name}:" in m for m in ds.skipped) == 1
        assert any(f"bad/{name}:" in r.message for r in caplog.records)
    assert ds[0].shape == (1, 32, 32)
    assert any("centre-cropped" in n and "resized" in n for n in ds.notes)
    names = list(ds.labels["file"])
    assert "stack.npy#1" in names and "more.npz#a#1" in names and "more.npz#b" in names
    i = names.index("stack.npy#2")
    np.testing.assert_allclose(ds.image(i), stack[2] / stack[2].max(), rtol=1e-6)


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ImageFolder(tmp_path / "nope", 32)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.png").write_text("junk")
    with pytest.raises(ImageError, match=r"no usable images \(1 files skipped\)"):
        ImageFolder(tmp_path / "x", 32, log=lambda m: None)


def _folder_with_labels(root: Path, csv: bytes) -> Path:
    for i in range(4):
        save(root / "img" / f"{i}.png", (speckle() * 1000).astype(np.uint16))
    (root / "labels.csv").write_bytes(csv)
    return root


def test_labels_match_by_path_then_basename(tmp_path: Path) -> None:
    csv = b"filename,digit,angle\nimg/0.png,3,1.5\n1.png,4,2.5\nimg/2.png,5,\nghost.png,9,9\n"
    messages: list[str] = []
    ds = ImageFolder(_folder_with_labels(tmp_path, csv), 32, log=messages.append)
    lab = ds.labels.set_index("file")
    assert lab.loc["img/0.png", "digit"] == 3 and lab.loc["img/1.png", "digit"] == 4
    assert np.isnan(lab.loc["img/2.png", "angle"]) and np.isnan(lab.loc["img/3.png", "digit"])
    assert any("1 rows name files that are not in the dataset" in m for m in messages)


@pytest.mark.parametrize(
    "csv, message",
    [
        (b"digit,angle\n1,2\n", "no filename column"),
        (b"file,digit\n" + "img/0.png,\xe9t\xe9\n".encode("latin-1"), None),
        (b'file,digit\n"img/0.png,3\n\x00\x00', None),
        (b"", "unreadable"),
    ],
)
def test_bad_labels_never_crash(tmp_path: Path, csv: bytes, message: str | None) -> None:
    messages: list[str] = []
    ds = ImageFolder(_folder_with_labels(tmp_path, csv), 32, log=messages.append)
    assert len(ds) == 4 and "file" in ds.labels.columns
    if message:
        assert any(message in m for m in messages), messages


def test_pattern_column_is_read_and_its_folder_not_scanned(tmp_path: Path) -> None:
    from speckle.io import write_dataset
    from speckle.mmf import simulate_mmf

    write_dataset(simulate_mmf(12, seed=0, size=32), tmp_path / "sim")
    ds = ImageFolder(tmp_path / "sim", 32)
    assert len(ds) == 12
    assert ds.pattern(0).shape == (16, 16) and ds.pattern(0).min() >= 0 and ds.pattern(0).max() <= 1
    assert set(ds.labels["digit"]) <= set(range(10))


def test_workers_give_the_same_batches(tmp_path: Path) -> None:
    for i in range(8):
        save(tmp_path / f"{i}.png", (speckle() * 1000).astype(np.uint16))
    ds = ImageFolder(tmp_path, 32)
    a = torch.cat(list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=0)))
    b = torch.cat(list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)))
    assert torch.equal(a, b)


def test_fingerprint_is_stable_and_tracks_changes(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / f"{i}.png", (speckle() * 1000).astype(np.uint16))
    fp = ImageFolder(tmp_path, 32).fingerprint()
    assert ImageFolder(tmp_path, 32).fingerprint() == fp
    assert ImageFolder(tmp_path, 32, Normalization("mean")).fingerprint() != fp
    save(tmp_path / "1.png", (speckle(32, 33) * 1000).astype(np.uint16))
    assert ImageFolder(tmp_path, 32).fingerprint() != fp


def test_split_is_deterministic_and_disjoint() -> None:
    tr, va = split_indices(100, 0.2, seed=3)
    assert len(va) == 20 and not set(tr) & set(va) and len(tr) + len(va) == 100
    assert np.array_equal(split_indices(100, 0.2, seed=3)[1], va)
    assert not np.array_equal(split_indices(100, 0.2, seed=4)[1], va)


def test_array_dataset() -> None:
    imgs = RNG.random((5, 16, 16)).astype(np.float32)
    ds = ArrayDataset(imgs)
    assert len(ds) == 5 and ds[2].shape == (1, 16, 16) and len(ds.fingerprint()) == 64


PNG_HEAD = b"\x89PNG\r\n\x1a\n"
TIFF_HEAD = b"II*\x00"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.sampled_from([b"", PNG_HEAD, TIFF_HEAD, b"BM", b"\x93NUMPY"]),
       st.sampled_from(["x.png", "x.tif", "x.npy", "x.jpg"]))  # fmt: skip
def test_random_bytes_give_an_image_or_our_error(data: bytes, head: bytes, name: str) -> None:
    try:
        raw = read_image(head + data, name)
    except ImageError as e:
        assert str(e).startswith(f"{name}: ") and "\n" not in str(e)
        return
    assert raw.pixels.ndim == 2 and raw.pixels.dtype == np.float32 and np.isfinite(raw.pixels).all()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 4), st.integers(1, 40), st.sampled_from(["uint8", "uint16", "float32", "float64", "int16", "bool"]),
       st.booleans())  # fmt: skip
def test_random_arrays_give_an_image_or_our_error(
    ndim: int, side: int, dtype: str, poison: bool
) -> None:
    arr = np.ones((side,) * ndim, dtype=dtype)
    if poison and arr.dtype.kind == "f" and arr.size:
        arr.flat[0] = np.nan
    buf = io.BytesIO()
    np.save(buf, arr)
    try:
        raw = read_image(buf.getvalue(), "a.npy")
    except ImageError:
        return
    assert raw.pixels.ndim == 2 and np.isfinite(raw.pixels).all()
