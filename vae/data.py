"""Users' speckle images: reading, preprocessing exactly as in training, and lazy datasets.

Reading: `read_image` turns one file (PNG, TIFF, JPEG, BMP, GIF, or a 2-D .npy/.npz) or the bytes
of an upload into a `RawImage`: float32 intensities in the file's own units (0..255, 0..65535, or
float as stored) plus the full-scale value of its type. Colour becomes grayscale (luminance).
Anything wrong with a file raises `ImageError`, a one-line "<file>: <problem>" message, never
another exception.

Preprocessing (`preprocess`): centre-crop to a square, resize to size×size (area averaging when
shrinking, like camera pixel binning; bilinear when enlarging), then normalize to [0, 1]. The
three normalizations and what each does to the speckle contrast K = σ/μ:

- ``max`` (per-image max; what many users do): x = I / max(I). A pure scale, so K is kept within
  each image, but a single hot pixel sets the scale: the mean brightness the network sees varies a
  lot between frames, and for fully developed speckle max(I) ≈ ⟨I⟩·ln(N) leaves most pixels dark.
- ``mean`` (per-image mean): x = I / (mean_scale·⟨I⟩), clipped to 1. Every frame has the same mean
  ⟨x⟩ = 1/mean_scale, so frames are comparable; K is kept except that pixels above
  mean_scale·⟨I⟩ are clipped, which lowers K slightly (for exponential statistics
  P(I > 5⟨I⟩) = e⁻⁵ ≈ 0.7% of the pixels).
- ``fixed`` (fixed range): x = (I − low)/(high − low), clipped; `high` defaults to the file's full
  scale (255, 65535, or the data max for float data). Keeps absolute intensities, including the
  overall power, comparable across frames, but dark frames use few grey levels.

Datasets: `ImageFolder` scans a folder tree once (validating every file, skipping bad ones with one
warning each) and reads pixels lazily; .npy/.npz stacks give one sample per frame and are
memory-mapped when stored uncompressed. An optional labels.csv becomes `.labels`.
`ArrayDataset` offers the same interface over an in-memory array. Both are plain map-style
datasets (len and indexing), which DataLoader and Subset take as they are; torch is imported on
the first item only, so that opening a folder, scanning it and fingerprinting it need no torch.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import struct
import tempfile
import warnings
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pandas as pd
from PIL import Image, ImageFile

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif")
ARRAY_SUFFIXES = (".npy", ".npz")
SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES
# Only these PIL plugins may parse user bytes: fewer parsers, less attack surface (PIL's EPS
# plugin, for one, runs Ghostscript).
PIL_FORMATS = ("PNG", "TIFF", "JPEG", "BMP", "GIF")
MIN_SIDE = 8  # smaller frames (1×1 placeholders, icons) are not speckle images
MAX_PIXELS = 64_000_000  # per frame; checked from the header, before decoding
MAX_FILE_BYTES = 200 * 1024 * 1024  # per image file, or per compressed array inside an .npz
MAX_FRAMES = 1_000_000  # per stack file
MAX_OPEN_ARRAYS = 32  # memory-mapped stacks kept open per process (each holds a file descriptor)
# Files up to this size are fully decoded at scan time, so corrupt ones are skipped up front;
# larger ones get header and end-of-file checks only (a full decode costs ~5 ms per MB).
FULL_DECODE_BYTES = 256 * 1024
NORMALIZATIONS = ("max", "mean", "fixed")
LABEL_FILE = "labels.csv"
FILE_COLUMNS = ("file", "filename", "name", "path")  # labels.csv filename column, by priority
PATTERN_COLUMN = "pattern"
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
logger = logging.getLogger("vae.data")


class ImageError(ValueError):
    """A file that cannot be used as an image. The message is one line: "<file>: <problem>"."""


def _error(label: str, problem: str) -> ImageError:
    # File names and library messages may hold newlines; the message must stay one line.
    text = f"{label}: {problem}"
    return ImageError(" ".join(text.split())[:500])


@dataclass
class RawImage:
    """One image before preprocessing.

    pixels: (H, W) float32 intensities in the file's own units.
    full_scale: what "fully bright" means for the stored type: 255 (8-bit), 65535 (16-bit),
        1 (bilevel or bool), the type's max for other unsigned ints, and the data max for float
        and signed data. `Normalization("fixed")` uses it when `high` is None.
    notes: what reading changed ("RGB converted to grayscale (luminance)").
    source: the stored type, e.g. "PNG I;16" or "npy uint16".
    """

    pixels: np.ndarray
    full_scale: float
    notes: list[str] = field(default_factory=list)
    source: str = ""


@dataclass(frozen=True)
class Normalization:
    """How intensities map to [0, 1]; see the module docstring for each mode's effect on K."""

    mode: str = "max"  # "max" | "mean" | "fixed"
    mean_scale: float = 5.0  # "mean": x = I / (mean_scale · ⟨I⟩), clipped to [0, 1]
    low: float = 0.0  # "fixed": x = (I − low) / (high − low), clipped
    high: float | None = None  # None ⇒ the file's full-scale value

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATIONS:
            raise ValueError(
                f"normalization mode must be one of {NORMALIZATIONS}, got {self.mode!r}"
            )
        for name in ("mean_scale", "low", "high"):
            value = getattr(self, name)
            if value is None and name == "high":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"normalization {name} must be a number, got {value!r}")
            if not np.isfinite(value):
                raise ValueError(f"normalization {name} must be finite, got {value!r}")
            # Plain floats, so equal settings give equal to_dict() output and fingerprints.
            object.__setattr__(self, name, float(value))
        if self.mean_scale <= 0:
            raise ValueError(f"normalization mean_scale must be > 0, got {self.mean_scale}")
        if self.high is not None and self.high <= self.low:
            raise ValueError(
                f"normalization needs high > low, got low={self.low}, high={self.high}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        if not isinstance(d, dict):
            raise ValueError(f"normalization must be a mapping, got {d!r}")
        unknown = set(d) - {"mode", "mean_scale", "low", "high"}
        if unknown:
            raise ValueError(f"unknown normalization keys {sorted(unknown)}")
        return cls(**d)


# ----------------------------------------------------------------------------- reading images


def read_image(source: str | Path | bytes, name: str | None = None) -> RawImage:
    """Read one 2-D image from a path or from bytes (an upload; `name` is its file name, used in
    messages). The content decides the format, not the suffix. Raises ImageError, nothing else."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<upload>"
    else:
        label = name or str(source)
    try:
        return _read(source, label)
    except ImageError:
        raise
    except MemoryError:
        raise _error(label, "too large to decode") from None
    except Exception as e:  # PIL and numpy raise a zoo of types on hostile bytes
        raise _error(label, f"not a readable image ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _read(source, label: str) -> RawImage:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_byte_size(len(data), label)
        suffix = Path(label).suffix.lower()
    else:
        path = Path(source)
        if not path.is_file():
            raise _error(label, "no such file")
        _check_byte_size(path.stat().st_size, label)
        data = path.read_bytes()
        _check_byte_size(len(data), label)  # it may have changed since stat()
        suffix = path.suffix.lower()
    if data[:6] == b"\x93NUMPY":
        return _read_npy_bytes(data, label)
    if data[:4] == b"PK\x03\x04":  # a zip archive: only .npz is supported
        return _read_npz_bytes(data, label)
    if suffix in ARRAY_SUFFIXES:
        raise _error(label, f"not a {suffix} file (the content is not a NumPy array)")
    return _read_pil(data, label)


def _check_byte_size(n: int, label: str) -> None:
    if n == 0:
        raise _error(label, "empty file (0 bytes)")
    if n > MAX_FILE_BYTES:
        raise _error(label, f"{n} bytes is over the limit of {MAX_FILE_BYTES} bytes")


def _check_shape(shape: tuple[int, ...], label: str) -> None:
    if len(shape) != 2:
        raise _error(label, f"expected a 2-D image, got shape {tuple(shape)}")
    h, w = shape
    if min(h, w) < MIN_SIDE:
        raise _error(label, f"image is {w}×{h} pixels, smaller than {MIN_SIDE}×{MIN_SIDE}")
    if h * w > MAX_PIXELS:
        raise _error(label, f"{w}×{h} pixels is over the limit of {MAX_PIXELS} pixels")


def _full_scale(dtype: np.dtype, pixels: np.ndarray) -> float:
    if dtype.kind == "b":
        return 1.0
    if dtype.kind == "u":
        return float(np.iinfo(dtype).max)
    # Float (and signed, e.g. background-subtracted) data has no natural full scale.
    peak = float(pixels.max()) if pixels.size else 0.0
    return peak if peak > 0 else 1.0


def _from_array(arr: np.ndarray, label: str, source: str = "") -> RawImage:
    _check_dtype(arr.dtype, label)
    _check_shape(arr.shape, label)
    pixels = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(pixels).all():
        raise _error(label, "contains NaN or Inf")
    return RawImage(pixels, _full_scale(arr.dtype, pixels), [], source or f"array {arr.dtype}")


def _check_dtype(dtype: np.dtype, label: str) -> None:
    if dtype.kind not in "uifb" or dtype.fields is not None or dtype.subdtype is not None:
        raise _error(label, f"unsupported array dtype {dtype} (need integer, float or bool)")


# --- .npy / .npz: headers are read and checked before any pixel is, so a hostile header cannot
# make numpy allocate terabytes.


@dataclass(frozen=True)
class _ArrayInfo:
    key: str | None  # member name inside an .npz (without ".npy"); None for an .npy
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int | None  # where the data starts in the file, when it can be memory-mapped


def _npy_header(f: BinaryIO, available: int, label: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Parse an .npy header (no pickle) and check that `available` bytes hold the data."""
    start = f.tell()
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise _error(label, f"unsupported .npy format version {version}")
    _check_dtype(dtype, label)
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise _error(label, f"bad array shape {shape}")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > available - (f.tell() - start):
        raise _error(label, f"truncated array data (shape {shape}, {dtype})")
    return tuple(shape), dtype, bool(fortran)


def _npz_infos(f: BinaryIO, label: str) -> list[_ArrayInfo]:
    infos = []
    with zipfile.ZipFile(f) as zf:
        for member in zf.infolist():
            if member.is_dir():
                continue
            key = member.filename.removesuffix(".npy")
            with zf.open(member) as m:
                shape, dtype, fortran = _npy_header(m, member.file_size, f"{label}#{key}")
                header_len = m.tell()
            offset = None
            if member.compress_type == zipfile.ZIP_STORED:
                # The local header (30 bytes + name + extra) precedes the member's bytes.
                f.seek(member.header_offset)
                local = f.read(30)
                if local[:4] != b"PK\x03\x04":
                    raise _error(label, "corrupt zip archive")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                offset = member.header_offset + 30 + name_len + extra_len + header_len
            elif member.file_size > MAX_FILE_BYTES:
                raise _error(
                    label,
                    f"compressed array {key!r} is {member.file_size} bytes unpacked, over the "
                    f"limit of {MAX_FILE_BYTES}; save it uncompressed (np.savez or np.save)",
                )
            infos.append(_ArrayInfo(key, shape, dtype, fortran, offset))
    if not infos:
        raise _error(label, "no arrays inside the .npz")
    return infos


def _array_infos(path: Path, label: str) -> list[_ArrayInfo]:
    """The arrays a .npy/.npz file holds, from headers only."""
    with open(path, "rb") as f:
        head = f.read(6)
        f.seek(0)
        if head == b"\x93NUMPY":
            size = path.stat().st_size
            shape, dtype, fortran = _npy_header(f, size, label)
            return [_ArrayInfo(None, shape, dtype, fortran, f.tell())]
        if head[:4] == b"PK\x03\x04":
            return _npz_infos(f, label)
    raise _error(label, f"not a {path.suffix.lower()} file (the content is not a NumPy array)")


def _read_npy_bytes(data: bytes, label: str) -> RawImage:
    buf = io.BytesIO(data)
    _npy_header(buf, len(data), label)
    buf.seek(0)
    return _single_image(np.load(buf, allow_pickle=False), label, "npy")


def _read_npz_bytes(data: bytes, label: str) -> RawImage:
    buf = io.BytesIO(data)
    infos = _npz_infos(buf, label)
    if len(infos) != 1:
        raise _error(label, f"an .npz with {len(infos)} arrays is a stack; load it as a folder")
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        return _single_image(z[z.files[0]], label, "npz")


def _single_image(arr: np.ndarray, label: str, kind: str) -> RawImage:
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise _error(label, f"expected a 2-D array, got shape {arr.shape} (a stack needs a folder)")
    return _from_array(arr, label, f"{kind} {arr.dtype}")


# --- PIL formats


class _PilGuard:
    """PIL's settings for reading untrusted files, restored afterwards. The truncated-image switch
    is process-wide, so it is only touched if someone else turned it on."""

    def __enter__(self) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        # Hostile files make PIL warn (corrupt EXIF, bomb-sized headers); our own checks decide.
        warnings.simplefilter("ignore")
        self._truncated = ImageFile.LOAD_TRUNCATED_IMAGES
        if self._truncated:
            ImageFile.LOAD_TRUNCATED_IMAGES = False

    def __exit__(self, *exc) -> None:
        if self._truncated:
            ImageFile.LOAD_TRUNCATED_IMAGES = True
        self._warnings.__exit__(*exc)


def _open_pil(f: BinaryIO, label: str) -> tuple[Image.Image, list[str]]:
    """Open (header only) and check size and frame count, before any pixel is decoded."""
    try:
        im = Image.open(f, formats=PIL_FORMATS)
    except Image.DecompressionBombError:
        raise _error(label, f"over {MAX_PIXELS} pixels (a possible decompression bomb)") from None
    except Image.UnidentifiedImageError:
        raise _error(label, "not a readable image (not PNG, TIFF, JPEG, BMP or GIF data)") from None
    w, h = im.size
    _check_shape((h, w), label)
    notes = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        if im.format != "MPO":
            what = "animated" if im.format == "GIF" else "multi-page"
            raise _error(
                label, f"has {frames} frames ({what}); save one frame per file, or a .npy stack"
            )
        notes.append(f"first of {frames} MPO frames used")  # camera JPEGs with a preview
    return im, notes


def _read_pil(data: bytes, label: str) -> RawImage:
    with _PilGuard():
        im, notes = _open_pil(io.BytesIO(data), label)
        wide_colour = im.mode in ("RGB", "RGBA") and any(";16" in str(t.args) for t in im.tile)
        im.load()  # full decode: truncated and corrupt files fail here
        pixels, full, more = _gray(im, label)
        if wide_colour:
            more.append("16-bit colour was read as 8 bits per channel")
    _check_shape(pixels.shape, label)
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
            raise _error(label, "contains NaN or Inf")
        return arr, _full_scale(arr.dtype, arr), []
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


def _probe_pil(path: Path, rel: str) -> tuple[tuple[int, int], str]:
    """Scan-time check of an image file: (h, w) and PIL mode. Small files are fully decoded;
    large ones only when their end does not look complete (decoding costs ~5 ms per MB)."""
    size = path.stat().st_size
    _check_byte_size(size, rel)
    if size <= FULL_DECODE_BYTES:
        raw = read_image(path, rel)
        return raw.pixels.shape, raw.source.rpartition(" ")[2]
    try:
        with open(path, "rb") as f, _PilGuard():
            im, _ = _open_pil(f, rel)
            shape, mode = (im.size[1], im.size[0]), im.mode
            complete = _looks_complete(im, f, size)
    except ImageError:
        raise
    except Exception as e:  # hostile headers, same zoo as in read_image
        raise _error(rel, f"not a readable image ({_reason(e)})") from None
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


# ----------------------------------------------------------------------------- preprocessing


def preprocess(
    raw: RawImage | np.ndarray, size: int, norm: Normalization
) -> tuple[np.ndarray, list[str]]:
    """Centre-crop to a square, resize to size×size, normalize: ((size, size) float32 in [0, 1],
    notes). A bare array gets the full scale of its dtype, like a file would."""
    if not isinstance(raw, RawImage):
        raw = _from_array(np.asarray(raw), "image")
    if int(size) < 1:
        raise ValueError(f"size must be ≥ 1, got {size}")
    size = int(size)
    img, notes = raw.pixels, list(raw.notes)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    h, w = img.shape
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[top : top + s, left : left + s]
        notes.append(f"cropped {w}×{h} → {s}×{s} (centre)")
    s = img.shape[0]
    if s != size:
        # Area averaging mimics camera pixel binning and keeps speckle statistics better than
        # bicubic (no ringing, no negative lobes) when shrinking.
        shrink = s > size
        method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
        im = Image.fromarray(np.ascontiguousarray(img, np.float32))  # mode "F"
        img = np.asarray(im.resize((size, size), method))
        notes.append(f"resized {s}×{s} → {size}×{size} ({'area' if shrink else 'bilinear'})")
    return normalize(img, norm, raw.full_scale), notes


def normalize(img: np.ndarray, norm: Normalization, full_scale: float = 1.0) -> np.ndarray:
    """The intensity mapping alone (no crop or resize): float32 in [0, 1]."""
    img = np.asarray(img, np.float32)
    if norm.mode == "max":
        m = float(img.max())
        out = img / m if m > 0 else np.zeros_like(img)
    elif norm.mode == "mean":
        m = float(img.mean())
        out = img / (norm.mean_scale * m) if m > 0 else np.zeros_like(img)
    else:
        high = norm.high if norm.high is not None else full_scale
        if high <= norm.low:
            raise ValueError(f"fixed range: low={norm.low} is not below high={high}")
        out = (img - norm.low) / (high - norm.low)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic held-out split: (train, val) sorted index arrays. Training keeps at least
    one sample."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(int(round(n * val_fraction)), n - 1) if n > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# ----------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the root, with "/" separators
    key: str | None = None  # array name inside an .npz holding several arrays
    index: int | None = None  # frame inside a stack

    @property
    def name(self) -> str:
        """The sample's id in labels: "a.png", "stack.npy#3", "set.npz#key#3"."""
        parts = [self.path] + ([self.key] if self.key else [])
        return "#".join(parts + ([str(self.index)] if self.index is not None else []))


def _rel(text: str) -> str:
    """A labels.csv path as our relative key: "/" separators, no leading "./"."""
    text = text.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def _scan(root: Path, skip_dirs: set[str], skip_files: set[str]) -> list[str]:
    """Relative paths of candidate files, sorted (each folder's files, then its subfolders)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        prefix = f"{rel_dir}/" if rel_dir else ""
        hidden_or_skipped = {d for d in dirnames if d.startswith(".") or prefix + d in skip_dirs}
        dirnames[:] = sorted(set(dirnames) - hidden_or_skipped)  # os.walk descends in this order
        for f in sorted(filenames):
            if f.startswith(".") or Path(f).suffix.lower() not in SUFFIXES:
                continue
            if prefix + f not in skip_files:
                found.append(prefix + f)
    return found


def _read_csv(path: Path, warn: Callable[[str], None]) -> pd.DataFrame | None:
    """labels.csv as text columns, or None after one warning if it cannot be used."""
    bad_lines: list[list[str]] = []
    for encoding in ("utf-8-sig", "latin-1"):  # latin-1 decodes any bytes: the loop returns
        bad_lines.clear()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas' warnings; ours are one line each
                frame = pd.read_csv(
                    path,
                    encoding=encoding,
                    dtype=str,
                    engine="python",  # the only engine that reports bad lines to a callable
                    index_col=False,  # rows with extra fields are bad, not an implicit index
                    on_bad_lines=bad_lines.append,
                )
        except UnicodeDecodeError:
            continue
        except Exception as e:  # a labels file must never stop the data from loading
            warn(f"{LABEL_FILE}: unreadable ({_reason(e)}); no labels used")
            return None
        if bad_lines:
            warn(f"{LABEL_FILE}: {len(bad_lines)} malformed rows ignored")
        return frame
    return None


SCAN_RECORD_FORMAT = "speckle-vae-scan/2"
_RECORD_FIELDS = 7  # byte size, mtime_ns, ctime_ns, inode, height, width, PIL mode


def _scan_checks() -> dict:
    """What a scan's verdict depends on: a record made under other limits is not reused."""
    return {"full_decode_bytes": FULL_DECODE_BYTES, "min_side": MIN_SIDE,
            "max_pixels": MAX_PIXELS, "max_file_bytes": MAX_FILE_BYTES}  # fmt: skip


def _file_key(stat: os.stat_result) -> list[int]:
    # ctime too: chmod, or a copy that keeps the mtime (cp -p, rsync -a, tar), changes it, and
    # utime cannot set it back; with the inode, a file replaced by another is always new.
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def _read_scan_record(path: str | Path | None, root: Path) -> dict[str, list]:
    """{relative path: _file_key + [height, width, mode]} of the image files a scan of `root`
    found usable, as written by _write_scan_record; {} when there is none or it does not parse,
    belongs to another folder or other scan limits, or has an entry of the wrong form (then
    every file is checked again, which only costs time). Stacks are never recorded: their NaN
    check reads them whole."""
    if path is None:
        return {}
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != SCAN_RECORD_FORMAT or doc.get("root") != str(root.resolve()):
            return {}
        if doc.get("checks") != _scan_checks():
            return {}
        files = doc["files"]
        for rel, rec in files.items():
            ok = isinstance(rec, list) and len(rec) == _RECORD_FIELDS and isinstance(rec[-1], str)
            if not ok or not all(isinstance(v, int) and v >= 0 for v in rec[:-1]):
                return {}
            if Path(rel).suffix.lower() not in IMAGE_SUFFIXES:
                return {}
            _check_shape((rec[4], rec[5]), rel)
        return files
    except Exception:  # a missing, unreadable or hand-edited record: scan as if new
        return {}


def _write_scan_record(path: str | Path, root: Path, files: dict[str, list]) -> None:
    """Atomically (a temporary file of its own, then rename); a read-only or full disk only
    costs speed."""
    path = Path(path)
    doc = {"format": SCAN_RECORD_FORMAT, "root": str(root.resolve()), "checks": _scan_checks(),
           "files": files}  # fmt: skip
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        logger.info("%s: scan record not written (%s)", path, e.strerror or e)


class ImageFolder:
    """A folder tree of images and .npy/.npz stacks, preprocessed on read.

    `dataset[i]` is a (1, size, size) float32 tensor. Attributes: `files` [(relative path, frame
    index or None)], `labels` (DataFrame: "file", then the labels.csv columns), `skipped` (one
    message per unusable file), `notes` (what preprocessing does to this data). Bad files are
    skipped with one `log` call each (default: the "vae.data" logger's warning). Picklable, so
    DataLoader workers work; memory maps are opened lazily in each process."""

    def __init__(
        self,
        root: str | Path,
        size: int,
        norm: Normalization = Normalization(),
        *,
        log: Callable[[str], None] | None = None,
        scan_record: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.size = int(size)
        self.norm = norm
        self._log = log
        if self.size < 1:
            raise ValueError(f"size must be ≥ 1, got {size}")
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder")
        self._stacks: dict[str, list[_ArrayInfo]] = {}  # array headers, read once at scan
        self._open: OrderedDict = OrderedDict()
        self._pid = os.getpid()
        frame, skip_dirs, skip_files = self._read_labels()
        self.skipped: list[str] = []
        self.samples: list[Sample] = []
        shapes: list[tuple[int, int]] = []
        modes: list[str] = []
        stats = []
        known = _read_scan_record(scan_record, self.root)
        seen: dict[str, list] = {}
        for rel in _scan(self.root, skip_dirs, skip_files):
            path = self.root / rel
            try:
                stat = path.stat()
                record = known.get(rel)
                if record is not None and record[:4] == _file_key(stat):
                    # Checked at an earlier scan and unchanged since (same size, mtime, ctime
                    # and inode): its shape and mode are known without decoding it again.
                    self.samples.append(Sample(rel))
                    shapes.append((record[4], record[5]))
                    modes.append(record[6])
                    seen[rel] = record
                elif path.suffix.lower() in ARRAY_SUFFIXES:
                    for sample, shape in self._probe_stack(path, rel):
                        self.samples.append(sample)
                        shapes.append(shape)
                        modes.append("array")
                else:
                    shape, mode = _probe_pil(path, rel)
                    self.samples.append(Sample(rel))
                    shapes.append(shape)
                    modes.append(mode)
                    seen[rel] = _file_key(stat) + [int(shape[0]), int(shape[1]), mode]
                stats.append((rel, stat.st_size, stat.st_mtime_ns))
            except ImageError as e:
                self._skip(str(e))
            except Exception as e:  # a scan must never stop on one file
                self._skip(str(_error(rel, _reason(e))))
        if not self.samples:
            raise ImageError(f"{self.root}: no usable images ({len(self.skipped)} files skipped)")
        self.files: list[tuple[str, int | None]] = [(s.path, s.index) for s in self.samples]
        self.labels = self._match_labels(frame)
        self.notes = _summarize(shapes, modes, self.size)
        self._fingerprint = self._hash(stats)
        self._open.clear()  # the scan's maps and decoded arrays
        if scan_record is not None and seen != known:
            _write_scan_record(scan_record, self.root, seen)

    # --- scanning

    def _warn(self, msg: str) -> None:
        (self._log or logger.warning)(msg)

    def _skip(self, msg: str) -> None:
        self.skipped.append(msg)
        self._warn(msg)

    def _probe_stack(self, path: Path, rel: str) -> list[tuple[Sample, tuple[int, int]]]:
        infos = self._stacks[rel] = _array_infos(path, rel)
        named = len(infos) > 1  # a single array needs no key in the sample names
        out = []
        for info in infos:
            label = f"{rel}#{info.key}" if named else rel
            key = info.key if named else None
            if len(info.shape) == 2:
                frames = [None]
                shape = info.shape
            elif len(info.shape) == 3 and 0 < info.shape[0] <= MAX_FRAMES:
                frames = list(range(info.shape[0]))
                shape = info.shape[1:]
            else:
                raise _error(
                    label, f"expected a 2-D image or a 3-D (N, H, W) stack, got shape {info.shape}"
                )
            _check_shape(shape, label)
            bad = self._nonfinite_frames(path, info) if info.dtype.kind == "f" else set()
            if bad and frames == [None]:
                raise _error(label, "contains NaN or Inf")
            if bad:
                first = ", ".join(f"#{k}" for k in sorted(bad)[:5]) + ("…" if len(bad) > 5 else "")
                self._skip(f"{label}: {len(bad)} frames contain NaN or Inf ({first}); skipped")
            out += [(Sample(rel, key, k), shape) for k in frames if k not in bad]
        return out

    def _nonfinite_frames(self, path: Path, info: _ArrayInfo) -> set[int]:
        """Frames (or {0} for a 2-D array) holding NaN/Inf, read in chunks, not kept."""
        arr = self._array(path, info)
        if arr.ndim == 2:
            return set() if np.isfinite(arr).all() else {0}
        step = max(1, (64 << 20) // max(1, arr[0].nbytes))
        bad: set[int] = set()
        for i in range(0, arr.shape[0], step):
            ok = np.isfinite(arr[i : i + step]).all(axis=(1, 2))
            bad.update(int(i + j) for j in np.flatnonzero(~ok))
        return bad

    def _read_labels(self) -> tuple[pd.DataFrame | None, set[str], set[str]]:
        """labels.csv with its filename column renamed "file"; and, when it names input patterns,
        the folders and files that hold them (they are not samples)."""
        path = self.root / LABEL_FILE
        if not path.is_file():
            return None, set(), set()
        frame = _read_csv(path, self._warn)
        if frame is None:
            return None, set(), set()
        columns = {str(c).strip().lower(): c for c in frame.columns}
        column = next((columns[c] for c in FILE_COLUMNS if c in columns), None)
        if column is None:
            names = ", ".join(FILE_COLUMNS)
            self._warn(f"{LABEL_FILE}: no filename column (one of {names}); no labels used")
            return None, set(), set()
        frame = frame.rename(columns={column: "file"})
        frame = frame[frame["file"].notna()].reset_index(drop=True)
        frame["file"] = frame["file"].map(_rel)
        for c in frame.columns:
            if c not in ("file", PATTERN_COLUMN):
                # Everything was read as text, so file names keep their leading zeros.
                with contextlib.suppress(ValueError, TypeError):
                    frame[c] = pd.to_numeric(frame[c])
        skip_dirs: set[str] = set()
        skip_files: set[str] = set()
        if PATTERN_COLUMN in frame.columns:
            patterns = frame[PATTERN_COLUMN].dropna().map(_rel)
            frame[PATTERN_COLUMN] = frame[PATTERN_COLUMN].map(_rel, na_action="ignore")
            skip_files = set(patterns)
            sample_dirs = {p.rpartition("/")[0] for p in frame["file"]}
            # A folder holding only patterns is left out entirely (fast, and catches patterns
            # without a row); one shared with samples loses only the named pattern files.
            skip_dirs = {p.rpartition("/")[0] for p in skip_files} - sample_dirs - {""}
        return frame, skip_dirs, skip_files

    def _match_labels(self, frame: pd.DataFrame | None) -> pd.DataFrame:
        names = [s.name for s in self.samples]
        out = pd.DataFrame({"file": names})
        if frame is None:
            return out
        keys = list(frame["file"])
        by_key: dict[str, int] = {}
        for row, key in enumerate(keys):
            by_key.setdefault(key, row)
        duplicates = len(keys) - len(by_key)
        # Basenames: a bare name in the csv wins; otherwise only a basename that is unique there.
        bases = Counter(_basename(k) for k in by_key)
        by_base = {_basename(k): r for k, r in by_key.items() if bases[_basename(k)] == 1}
        by_base |= {k: r for k, r in by_key.items() if "/" not in k}
        rows = [_label_row(s, by_key, by_base) for s in self.samples]
        unused = len(by_key) - len(set(rows) - {-1})
        if duplicates:
            self._warn(
                f"{LABEL_FILE}: {duplicates} duplicate rows; the first row of each file is used"
            )
        if unused:
            self._warn(f"{LABEL_FILE}: {unused} rows name files that are not in the dataset")
        data = frame.drop(columns="file").reindex(rows).reset_index(drop=True)
        return pd.concat([out, data], axis=1)

    def _hash(self, stats: list[tuple[str, int, int]]) -> str:
        h = hashlib.sha256(b"vae.data.ImageFolder/1\n")
        for rel, size, mtime in sorted(stats):
            h.update(f"{rel}\0{size}\0{mtime}\n".encode())
        # The samples too: labels.csv can change which files are patterns and which are samples.
        h.update("\n".join(s.name for s in self.samples).encode())
        h.update(json.dumps([self.size, self.norm.to_dict()], sort_keys=True).encode())
        return h.hexdigest()

    # --- reading

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # memory maps are reopened in each process
        state["_log"] = None  # only the scan logs; a lambda would not pickle
        return state

    def _cache(self) -> OrderedDict:
        # Per process: a forked DataLoader worker must not use the parent's maps.
        if self._pid != os.getpid():
            self._open, self._pid = OrderedDict(), os.getpid()
        return self._open

    def _array(self, path: Path, info: _ArrayInfo) -> np.ndarray:
        """A stack's array: memory-mapped when stored raw, else decoded. Few are kept open: each
        map holds a file descriptor, and a decoded array costs its full size."""
        cache = self._cache()
        key = (str(path), info.key)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        if info.offset is not None:
            order = "F" if info.fortran else "C"
            arr = np.memmap(path, info.dtype, "r", info.offset, info.shape, order=order)
        else:
            for old in [k for k, v in cache.items() if not isinstance(v, np.memmap)]:
                del cache[old]  # one decoded array at a time
            with np.load(path, allow_pickle=False) as z:
                arr = z[info.key]
        cache[key] = arr
        while len(cache) > MAX_OPEN_ARRAYS:
            cache.popitem(last=False)
        return arr

    def read_raw(self, i: int) -> RawImage:
        """Sample i before preprocessing."""
        s = self.samples[i]
        path = self.root / s.path
        if path.suffix.lower() not in ARRAY_SUFFIXES:
            return read_image(path, s.path)
        try:
            info = next(x for x in self._stacks[s.path] if s.key is None or x.key == s.key)
            arr = self._array(path, info)
            frame = arr if s.index is None else arr[s.index]
            # A copy: a view would keep the map alive and hand out read-only memory.
            return _from_array(np.array(frame), s.name, f"{path.suffix[1:]} {info.dtype}")
        except ImageError:
            raise
        except Exception as e:  # the file changed since the scan
            raise _error(s.name, f"cannot be read any more ({_reason(e)})") from None

    def image(self, i: int) -> np.ndarray:
        """Sample i preprocessed: (size, size) float32 in [0, 1]."""
        return preprocess(self.read_raw(i), self.size, self.norm)[0]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.image(int(i)))[None]

    def pattern(self, i: int) -> np.ndarray | None:
        """The input pattern (e.g. the SLM image) named in labels.csv's `pattern` column, as
        float32 in [0, 1] at its own resolution; None if there is none or it cannot be read."""
        if PATTERN_COLUMN not in self.labels.columns:
            return None
        rel = self.labels[PATTERN_COLUMN].iloc[i]
        if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in rel.split("/"):
            return None  # only files inside the dataset folder
        try:
            raw = read_image(self.root / rel, rel)
        except ImageError:
            return None
        return np.clip(raw.pixels / raw.full_scale, 0, 1).astype(np.float32)

    def fingerprint(self) -> str:
        """Stable hex id for caches: sha256 over the files as scanned (relative path, byte size,
        mtime), the sample list, size and normalization. A new scan sees changed files."""
        return self._fingerprint

    def subset(self, names: list[str]) -> ImageFolder:
        """The samples named in `names` (sample names, as in `labels["file"]`), in dataset order.
        A name that is not a sample is an error: a retraining subset must be exactly what was
        asked for."""
        wanted = set(names)
        keep = [i for i, s in enumerate(self.samples) if s.name in wanted]
        if len(keep) != len(wanted):
            have = {s.name for s in self.samples}
            missing = sorted(wanted - have)
            raise ImageError(
                f"{self.root}: {len(missing)} subset names are not samples (first: {missing[0]!r})"
            )
        out = copy.copy(self)
        out.samples = [self.samples[i] for i in keep]
        out.files = [self.files[i] for i in keep]
        out.labels = self.labels.iloc[keep].reset_index(drop=True)
        out._open = OrderedDict()
        digest = hashlib.sha256(self._fingerprint.encode())
        digest.update("\n".join(s.name for s in out.samples).encode())
        out._fingerprint = digest.hexdigest()
        return out


def _basename(key: str) -> str:
    return key.rpartition("/")[2]


def _label_row(s: Sample, by_key: dict[str, int], by_base: dict[str, int]) -> int:
    """labels.csv row of a sample, or -1: its exact name (a stack frame's own row), then its
    file, then a basename."""
    for key in (s.name, s.path):
        if key in by_key:
            return by_key[key]
    for key in (s.name, s.path):
        if _basename(key) in by_base:
            return by_base[_basename(key)]
    return -1


def _summarize(shapes: list[tuple[int, int]], modes: list[str], size: int) -> list[str]:
    """What preprocessing does to this data set, in a few lines for logs and the UI."""
    n = len(shapes)

    def count(k: int) -> str:
        return f"all {n} images" if k == n else f"{k} of {n} images"

    notes = []
    for (h, w), k in sorted(Counter(shapes).items()):
        s = min(h, w)
        what = [f"centre-cropped to {s}×{s}"] if h != w else []
        if s != size:
            what.append(f"resized to {size}×{size} ({'area' if s > size else 'bilinear'})")
        if what:
            notes.append(f"{count(k)} ({w}×{h}) are " + " and ".join(what))
    for mode, k in sorted(Counter(modes).items()):
        if mode not in ("L", "I", "F", "1", "array") and not mode.startswith("I;16"):
            alpha = "; alpha ignored" if mode in ALPHA_MODES else ""
            kind = {"P": "palette", "PA": "palette+alpha", "LA": "grey+alpha"}.get(mode, mode)
            notes.append(f"{count(k)} are {kind}, converted to grayscale (luminance{alpha})")
    return notes


class ArrayDataset:
    """In-memory images (N, H, W) already in [0, 1] (tests, and callers of explorer.atlas with
    arrays of their own), with the ImageFolder interface: `labels`, `files`, `skipped`, `notes`,
    `read_raw`, `image`, `pattern`, `fingerprint`. The images are a read-only copy, so that the
    fingerprint, a cache key, is computed once and cannot go stale if the caller's array changes."""

    def __init__(
        self,
        images: np.ndarray,
        labels: pd.DataFrame | None = None,
        patterns: np.ndarray | None = None,
        *,
        name: str = "array",
    ) -> None:
        # A read-only copy of our own (these sets are small): the fingerprint, computed once,
        # stays true whatever the caller does with its array.
        self.images = np.array(images, np.float32, order="C", copy=True)
        self.images.flags.writeable = False
        self._fingerprint: str | None = None
        if self.images.ndim != 3:
            raise ValueError(f"expected (N, H, W) images, got shape {self.images.shape}")
        if not np.isfinite(self.images).all():
            raise ValueError("images contain NaN or Inf")
        if self.images.size and (self.images.min() < 0 or self.images.max() > 1):
            raise ValueError(
                f"images must be in [0, 1], got {self.images.min():g}..{self.images.max():g}"
            )
        n = len(self.images)
        if patterns is not None and len(patterns) != n:
            raise ValueError(f"{len(patterns)} patterns for {n} images")
        self.size = self.images.shape[-1]
        self.files: list[tuple[str, int | None]] = [(name, i) for i in range(n)]
        names = pd.DataFrame({"file": [f"{name}#{i}" for i in range(n)]})
        if labels is None:
            self.labels = names
        else:
            if len(labels) != n:
                raise ValueError(f"{len(labels)} label rows for {n} images")
            labels = labels.reset_index(drop=True)
            self.labels = labels if "file" in labels.columns else pd.concat([names, labels], axis=1)
        self.patterns = patterns
        self.skipped: list[str] = []
        self.notes: list[str] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.images[int(i)].copy())[None]  # torch wants writable memory

    def image(self, i: int) -> np.ndarray:
        return self.images[i]

    def read_raw(self, i: int) -> RawImage:
        return RawImage(self.images[i].copy(), 1.0, [], "array float32")

    def pattern(self, i: int) -> np.ndarray | None:
        if self.patterns is None:
            return None
        return np.asarray(self.patterns[i], np.float32)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256(f"vae.data.ArrayDataset/1 {self.images.shape}\n".encode())
            h.update(self.images.data)
            self._fingerprint = h.hexdigest()
        return self._fingerprint
