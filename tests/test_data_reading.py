"""frames.reading: every supported file type and bit depth, colour, the bad-file zoo, limits,
fuzzing of read_image, and reads from many threads at once. Everything is generated."""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from frames import MAX_PIXELS, ImageError, RawImage, read_image
from frames import image as image_module
from tests.data_files import (
    encode,
    npy_bytes,
    png_claiming,
    save,
    speckle,
    u8,
    u16,
    write_bad_files,
)

# PIL's limit is ours, so it warns for sizes between MAX_PIXELS and twice that; our error follows.
BOMB_WARNING = "ignore::PIL.Image.DecompressionBombWarning"

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
    f32 = speckle(16, 24).astype(np.float32)
    np.save(tmp_path / "f.npy", f32)
    raw = read_image(tmp_path / "f.npy")
    np.testing.assert_array_equal(raw.pixels, f32)
    assert raw.full_scale == pytest.approx(f32.max()) and raw.source == "npy float32"
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


# ----------------------------------------------------------------------------- bad files


@pytest.mark.filterwarnings(BOMB_WARNING)
def test_each_bad_file_raises_a_one_line_image_error_naming_it(tmp_path: Path) -> None:
    for name, words in write_bad_files(tmp_path).items():
        with pytest.raises(ImageError) as e:
            read_image(tmp_path / name)
        msg = str(e.value)
        assert msg.startswith(f"{tmp_path / name}: ") and words in msg and "\n" not in msg, msg
        with pytest.raises(ImageError, match=f"^{name}: "):
            read_image(tmp_path / name, name)  # a given name replaces the path in messages
        with pytest.raises(ImageError, match=f"^{name}: "):
            read_image((tmp_path / name).read_bytes(), name)


def test_pil_pixel_limit_is_ours() -> None:
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS
    over = pytest.raises(ImageError, match="9000×9000 pixels is over the limit")
    with pytest.warns(Image.DecompressionBombWarning), over:  # PIL's warning, then our error
        read_image(png_claiming(9000, 9000), "huge.png")
    with pytest.raises(ImageError, match="a possible decompression bomb"):
        read_image(png_claiming(2 * MAX_PIXELS // 1000 + 1, 1000), "bomb.png")


def test_size_limits_are_checked_before_reading(tmp_path: Path, monkeypatch) -> None:
    path = save(tmp_path / "a.png", u16(64, 64))
    monkeypatch.setattr(image_module, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImageError, match="over the limit of 100 bytes"):
        read_image(path)
    monkeypatch.setattr(image_module, "MAX_FILE_BYTES", 10**9)
    monkeypatch.setattr(image_module, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="64×64 pixels is over the limit of 1000"):
        read_image(path)
    np.save(tmp_path / "a.npy", np.zeros((64, 64), np.uint8))
    with pytest.raises(ImageError, match="over the limit"):
        read_image(tmp_path / "a.npy")


# ----------------------------------------------------------------------------- threads

WHOLE = {
    f"w{i}{ext}": encode(u8(64, 64, seed=i), fmt)
    for i, (fmt, ext) in enumerate([("PNG", ".png"), ("TIFF", ".tif"), ("JPEG", ".jpg")] * 2)
}
CUT = {"c" + name[1:]: data[: len(data) * 2 // 3] for name, data in WHOLE.items()}


@pytest.mark.parametrize("lenient", [False, True], ids=["pil-default", "truncated-images-on"])
def test_concurrent_reads_each_get_their_own_result(monkeypatch, lenient: bool) -> None:
    """Streamlit script threads, DataLoader workers and background jobs read at once. Each read
    must get its own file's pixels or error, and leave the warnings filters and PIL's
    LOAD_TRUNCATED_IMAGES (both process-wide) as they were; with that switch turned on by other
    code, truncated files must still be refused."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient)
    expected = {name: read_image(data, name).pixels for name, data in WHOLE.items()}
    items = sorted({**WHOLE, **CUT}.items())
    filters = list(warnings.filters)
    n_threads, rounds = 8, 10
    barrier = threading.Barrier(n_threads, timeout=60)
    wrong: list[str] = []

    def work(k: int) -> None:
        try:
            for _ in range(rounds):
                barrier.wait()  # every round starts in all threads at once
                for name, data in items[k:] + items[:k]:
                    try:
                        raw = read_image(data, name)
                    except ImageError as e:
                        if name in WHOLE:
                            wrong.append(str(e))
                        continue
                    if name in CUT:
                        wrong.append(f"{name}: read as an image")
                    elif not np.array_equal(raw.pixels, expected[name]):
                        wrong.append(f"{name}: other pixels")
        except BaseException as e:  # a broken barrier or a foreign exception fails the test
            wrong.append(repr(e))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert wrong == []
    assert list(warnings.filters) == filters
    assert ImageFile.LOAD_TRUNCATED_IMAGES is lenient


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


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL on the damaged TIFF tags it skips
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(HEADERS),
    st.binary(max_size=4096),
    st.sampled_from(["x.png", "x.tif", "x.jpg", "x.npy", "x.npz", "x"]),
)
def test_random_bytes_give_an_image_or_an_image_error(head: bytes, body: bytes, name: str) -> None:
    assert_image_or_our_error(head + body, name)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), st.data())
def test_damaged_files_give_an_image_or_an_image_error(name: str, draw) -> None:
    payload = bytearray(VALID[name])
    for _ in range(draw.draw(st.integers(0, 6))):
        payload[draw.draw(st.integers(0, len(payload) - 1))] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(payload)))
    assert_image_or_our_error(bytes(payload[:cut] if draw.draw(st.booleans()) else payload), name)
