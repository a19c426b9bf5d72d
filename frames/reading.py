"""Reading one image: `read_image`, and the scan-time check of an image file (`probe_pil`).

`read_image` turns one file (PNG, TIFF, JPEG, BMP, GIF, or a 2-D .npy/.npz) or the bytes of an
upload into a `RawImage`: float32 intensities in the file's own units (0..255, 0..65535, or
float as stored) plus the full-scale value of its type. Colour becomes grayscale (luminance).
Anything wrong with a file raises `ImageError`, a one-line "<file>: <problem>" message, never
another exception.

Reading runs on Streamlit script threads, DataLoader workers and background jobs at once, so it
changes no process-wide state per call: no warnings filters, no PIL switches.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile

from frames.arrays import read_npy_bytes, read_npz_bytes
from frames.image import (
    ARRAY_SUFFIXES,
    MAX_PIXELS,
    RawImage,
    check_byte_size,
    check_shape,
    dtype_full_scale,
    image_error,
    one_line_errors,
)

# Only these PIL plugins may parse user bytes: fewer parsers, less attack surface (PIL's EPS
# plugin, for one, runs Ghostscript).
PIL_FORMATS = ("PNG", "TIFF", "JPEG", "BMP", "GIF")
# Files up to this size are fully decoded at scan time, so corrupt ones are skipped up front;
# larger ones get header and end-of-file checks only (a full decode costs ~5 ms per MB).
FULL_DECODE_BYTES = 256 * 1024
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

# PIL takes no pixel limit per call, only this process-wide one, so it is set here, once, from
# ours: Image.open then raises DecompressionBombError for anything over 2 × MAX_PIXELS before it
# parses further, and its DecompressionBombWarning (over MAX_PIXELS) only comes for sizes that
# check_shape refuses right after the header is read.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def read_image(source: str | Path | bytes, name: str | None = None) -> RawImage:
    """Read one 2-D image from a path or from bytes (an upload; `name` is its file name, used in
    messages). The content decides the format, not the suffix. Raises ImageError, nothing else."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<upload>"
    else:
        label = name or str(source)
    with one_line_errors(label, "image"):
        return _read(source, label)


def _read(source, label: str) -> RawImage:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        check_byte_size(len(data), label)
        suffix = Path(label).suffix.lower()
    else:
        path = Path(source)
        if not path.is_file():
            raise image_error(label, "no such file")
        check_byte_size(path.stat().st_size, label)
        data = path.read_bytes()
        check_byte_size(len(data), label)  # it may have changed since stat()
        suffix = path.suffix.lower()
    if data[:6] == b"\x93NUMPY":
        return read_npy_bytes(data, label)
    if data[:4] == b"PK\x03\x04":  # a zip archive: only .npz is supported
        return read_npz_bytes(data, label)
    if suffix in ARRAY_SUFFIXES:
        raise image_error(label, f"not a {suffix} file (the content is not a NumPy array)")
    return _read_pil(data, label)


def _open_pil(f: BinaryIO, label: str) -> tuple[Image.Image, list[str]]:
    """Open (header only) and check size and frame count, before any pixel is decoded."""
    try:
        im = Image.open(f, formats=PIL_FORMATS)
    except Image.DecompressionBombError:
        raise image_error(
            label, f"over {MAX_PIXELS} pixels (a possible decompression bomb)"
        ) from None
    except Image.UnidentifiedImageError:
        raise image_error(
            label, "not a readable image (not PNG, TIFF, JPEG, BMP or GIF data)"
        ) from None
    w, h = im.size
    check_shape((h, w), label)
    notes = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        if im.format != "MPO":
            what = "animated" if im.format == "GIF" else "multi-page"
            raise image_error(
                label,
                f"has {frames} frames ({what}); read it as a stack (a data folder or an upload)",
            )
        notes.append(f"first of {frames} MPO frames used")  # camera JPEGs with a preview
    return im, notes


def _read_pil(data: bytes, label: str) -> RawImage:
    im, notes = _open_pil(io.BytesIO(data), label)
    wide_colour = im.mode in ("RGB", "RGBA") and any(";16" in str(t.args) for t in im.tile)
    # ImageFile.LOAD_TRUNCATED_IMAGES is process-wide and read by every thread's decode, so we
    # never switch it; with PIL's default (off) the decode below fails on truncated and corrupt
    # files. Should other code have turned it on, PIL pads a truncated file instead, and the
    # file must then also end where its header says (read before load() drops the tile list).
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    whole = lenient and _looks_complete(im, io.BytesIO(data), len(data))
    im.load()  # full decode
    if lenient and not whole:
        raise image_error(
            label,
            "not a readable image (truncated: it does not end where its header says, and PIL's "
            "LOAD_TRUNCATED_IMAGES is on)",
        )
    pixels, full, more = _gray(im, label)
    if wide_colour:
        more.append("16-bit colour was read as 8 bits per channel")
    check_shape(pixels.shape, label)
    return RawImage(pixels, full, notes + more, f"{im.format} {im.mode}")


def _gray(im: Image.Image, label: str) -> tuple[np.ndarray, float, list[str]]:
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.float32), 65535.0, []
    if mode == "I":
        arr = np.asarray(im, dtype=np.int32)
        # 16-bit data often arrives as mode "I"; only larger or negative values use the data max.
        fits_16 = arr.min() >= 0 and arr.max() <= 65535
        return arr.astype(np.float32), 65535.0 if fits_16 else float(max(arr.max(), 1)), []
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise image_error(label, "contains NaN or Inf")
        return arr, dtype_full_scale(arr.dtype, arr), []
    if mode == "1":
        return np.asarray(im).astype(np.float32), 1.0, []
    if mode == "L":
        return np.asarray(im, dtype=np.float32), 255.0, []
    notes = []
    if mode in ALPHA_MODES or "transparency" in im.info:
        notes.append(f"{mode} converted to grayscale (luminance; alpha ignored)")
    else:
        notes.append(f"{mode} converted to grayscale (luminance)")
    if mode == "LA":
        return np.asarray(im.getchannel("L"), dtype=np.float32), 255.0, notes
    # ITU-R 601-2 luma via PIL; palette, CMYK and the rest go through RGB first.
    rgb = im if mode == "RGB" else im.convert("RGB")
    return np.asarray(rgb.convert("L"), dtype=np.float32), 255.0, notes


def probe_pil(path: Path, rel: str) -> tuple[tuple[int, int], str]:
    """Scan-time check of an image file: (h, w) and PIL mode. Small files are fully decoded;
    large ones only when their end does not look complete (decoding costs ~5 ms per MB)."""
    size = path.stat().st_size
    check_byte_size(size, rel)
    if size <= FULL_DECODE_BYTES:
        raw = read_image(path, rel)
        return raw.pixels.shape, raw.source.rpartition(" ")[2]
    with one_line_errors(rel, "image"), open(path, "rb") as f:
        im, _ = _open_pil(f, rel)
        shape, mode = (im.size[1], im.size[0]), im.mode
        complete = _looks_complete(im, f, size)
    if not complete:
        read_image(path, rel)  # a full decode decides (some writers append trailing data)
    return shape, mode


def _looks_complete(im: Image.Image, f: BinaryIO, size: int) -> bool:
    """Whether the file ends where its header says, as an interrupted copy would not."""
    if im.format in ("PNG", "JPEG", "MPO", "GIF"):
        f.seek(max(0, size - 1024))
        ends = {"PNG": b"IEND\xaeB`\x82", "JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "GIF": b";"}
        return ends[im.format] in f.read()
    if im.format == "TIFF":
        tags = im.tag_v2
        offsets = np.atleast_1d(tags.get(273) or tags.get(324) or ()).astype(np.int64)
        counts = np.atleast_1d(tags.get(279) or tags.get(325) or ()).astype(np.int64)
        n = min(len(offsets), len(counts))
        return bool(n) and bool(np.all(offsets[:n] + counts[:n] <= size))
    if im.format == "BMP" and im.tile and im.tile[0].codec_name == "raw":
        tile = im.tile[0]
        return tile.offset + tile.args[1] * im.size[1] <= size
    return False
