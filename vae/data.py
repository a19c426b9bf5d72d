"""Users' speckle images: reading, preprocessing exactly as in training, and lazy datasets.

Normalization, and what each mode does to speckle contrast K = σ/μ:

- ``max`` (per-image max; what many users do): x = I / max(I). A pure scale, so K is kept within
  each image, but one hot pixel sets the scale: the mean brightness the network sees varies a lot
  between frames, and for fully developed speckle max(I) ≈ ⟨I⟩·ln(N) makes most pixels dark.
- ``mean`` (per-image mean): x = I / (mean_scale·⟨I⟩), clipped to 1. Every frame has the same mean
  1/mean_scale, so contrasts are comparable across frames; only pixels above mean_scale·⟨I⟩ are
  clipped, which lowers K slightly (for exponential statistics P(I > 5⟨I⟩) = e⁻⁵ ≈ 0.7%).
- ``fixed`` (fixed range): x = (I − low)/(high − low), clipped; `high` defaults to the file's full
  scale (255, 65535). Keeps absolute intensities and the overall power comparable across frames,
  but dark frames use few grey levels, which quantizes low intensities.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageFile

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif")
ARRAY_SUFFIXES = (".npy", ".npz")
SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES
MIN_SIDE = 8  # 1×1 (and other tiny) files are not images of speckle
MAX_PIXELS = 64_000_000  # per frame; checked from the header, before decoding
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_FRAMES = 100_000  # per stack file
FULL_DECODE_BYTES = 4 * 1024 * 1024  # files up to this size are fully decoded at scan time
NORMALIZATIONS = ("max", "mean", "fixed")
LABEL_FILE = "labels.csv"
FILE_COLUMNS = ("file", "filename", "name", "path")
log = logging.getLogger("vae.data")


class ImageError(ValueError):
    """One line: '<file>: <problem>'."""


@dataclass
class RawImage:
    pixels: np.ndarray  # (H, W) float32, in the file's own units
    full_scale: float  # 255, 65535, 1.0 for bilevel, or the data max for float data
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Normalization:
    mode: str = "max"
    mean_scale: float = 5.0
    low: float = 0.0
    high: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.mode!r}")
        if not (isinstance(self.mean_scale, (int, float)) and self.mean_scale > 0):
            raise ValueError(f"mean_scale must be > 0, got {self.mean_scale!r}")
        if self.high is not None and not self.high > self.low:
            raise ValueError(f"fixed range needs high > low, got {self.low}..{self.high}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        if not isinstance(d, dict):
            raise ValueError(f"normalization must be an object, got {d!r}")
        unknown = set(d) - {"mode", "mean_scale", "low", "high"}
        if unknown:
            raise ValueError(f"unknown normalization keys {sorted(unknown)}")
        return cls(**d)


def _name(source, name: str | None) -> str:
    return name or (str(source) if not isinstance(source, (bytes, bytearray)) else "<upload>")


def _check_shape(arr: np.ndarray, label: str) -> None:
    if arr.ndim != 2:
        raise ImageError(f"{label}: expected a 2-D image, got shape {arr.shape}")
    h, w = arr.shape
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{label}: image is {w}×{h} pixels, smaller than {MIN_SIDE}×{MIN_SIDE}")
    if h * w > MAX_PIXELS:
        raise ImageError(f"{label}: {w}×{h} pixels is over the limit of {MAX_PIXELS}")


def _from_array(arr: np.ndarray, label: str) -> RawImage:
    if arr.dtype.kind not in "uifb":
        raise ImageError(f"{label}: unsupported array dtype {arr.dtype}")
    _check_shape(arr, label)
    pixels = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(pixels).all():
        raise ImageError(f"{label}: contains NaN or Inf")
    if arr.dtype.kind == "u":
        full = float(np.iinfo(arr.dtype).max)
    elif arr.dtype.kind == "b":
        full = 1.0
    else:
        full = float(pixels.max()) if pixels.size and pixels.max() > 0 else 1.0
    return RawImage(pixels, full)


def _gray(im: Image.Image, label: str) -> tuple[np.ndarray, float, list[str]]:
    notes: list[str] = []
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.uint16).astype(np.float32), 65535.0, notes
    if mode == "I":
        arr = np.asarray(im, dtype=np.int32)
        full = 65535.0 if arr.min() >= 0 and arr.max() <= 65535 else float(max(arr.max(), 1))
        return arr.astype(np.float32), full, notes
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ImageError(f"{label}: contains NaN or Inf")
        return arr, float(arr.max()) if arr.max() > 0 else 1.0, notes
    if mode == "1":
        return np.asarray(im, dtype=np.float32), 1.0, notes
    if mode == "L":
        return np.asarray(im, dtype=np.float32), 255.0, notes
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        notes.append(f"{mode} converted to grayscale (alpha ignored)")
    elif mode != "L":
        notes.append(f"{mode} converted to grayscale")
    # Luminance (ITU-R 601-2) through PIL; palette and CMYK go through RGB first.
    return np.asarray(im.convert("RGB").convert("L"), dtype=np.float32), 255.0, notes


def read_image(source: str | Path | bytes, name: str | None = None) -> RawImage:
    """Read one 2-D image. Any problem raises ImageError naming the file; nothing else escapes."""
    label = _name(source, name)
    try:
        return _read(source, label)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{label}: too large to decode") from None
    except Exception as e:  # PIL and numpy raise a zoo of types on hostile bytes
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{label}: not a readable image ({msg[:200]})") from None


def _read(source, label: str) -> RawImage:
    if isinstance(source, (bytes, bytearray)):
        data, suffix = bytes(source), Path(label).suffix.lower()
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(f"{label}: {len(data)} bytes is over the limit of {MAX_FILE_BYTES}")
        if not data:
            raise ImageError(f"{label}: empty file (0 bytes)")
        if suffix in ARRAY_SUFFIXES or data[:6] == b"\x93NUMPY":
            return _read_array(io.BytesIO(data), label)
        return _read_pil(io.BytesIO(data), label)
    path = Path(source)
    if not path.is_file():
        raise ImageError(f"{label}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"{label}: empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{label}: {size} bytes is over the limit of {MAX_FILE_BYTES}")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return _read_array(path, label)
    with open(path, "rb") as f:
        return _read_pil(io.BytesIO(f.read()), label)


def _read_array(f, label: str) -> RawImage:
    loaded = np.load(f, allow_pickle=False)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if len(loaded.files) != 1:
                raise ImageError(
                    f"{label}: an .npz with {len(loaded.files)} arrays is a stack, not one image"
                )
            arr = loaded[loaded.files[0]]
    else:
        arr = loaded
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ImageError(f"{label}: expected a 2-D array, got shape {arr.shape}")
    return _from_array(arr, label)


def _read_pil(buf: io.BytesIO, label: str) -> RawImage:
    with warnings.catch_warnings():
        # A decompression bomb warning becomes our error, not a silent 1-GB decode; PIL's other
        # warnings (corrupt EXIF and the like) on hostile files are noise.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        old_max, old_trunc = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = MAX_PIXELS, False
        try:
            try:
                im = Image.open(buf)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise ImageError(
                    f"{label}: decompression bomb (over {MAX_PIXELS} pixels)"
                ) from None
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{label}: {w}×{h} pixels is over the limit of {MAX_PIXELS}")
            if min(w, h) < MIN_SIDE:
                raise ImageError(
                    f"{label}: image is {w}×{h} pixels, smaller than {MIN_SIDE}×{MIN_SIDE}"
                )
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise ImageError(
                    f"{label}: has {frames} frames (animated or multi-page); save one frame per file"
                )
            im.load()  # full decode: truncated files fail here
            pixels, full, notes = _gray(im, label)
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_max, old_trunc
    _check_shape(pixels, label)
    return RawImage(pixels, full, notes)


def preprocess(
    raw: RawImage | np.ndarray, size: int, norm: Normalization
) -> tuple[np.ndarray, list[str]]:
    """Centre-crop to a square, resize to size×size, normalize to [0, 1]: (image, notes)."""
    if isinstance(raw, np.ndarray):
        raw = RawImage(np.asarray(raw, np.float32), 1.0)
    img, notes = raw.pixels, list(raw.notes)
    h, w = img.shape
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[top : top + s, left : left + s]
        notes.append(f"cropped {w}×{h} → {s}×{s} (centre)")
    s = img.shape[0]
    if s != size:
        # Area averaging mimics camera pixel binning and keeps speckle statistics better than
        # bicubic when shrinking; enlarging uses bilinear.
        method = Image.Resampling.BOX if s > size else Image.Resampling.BILINEAR
        img = np.asarray(
            Image.fromarray(img.astype(np.float32), mode="F").resize((size, size), method)
        )
        notes.append(f"resized {s}×{s} → {size}×{size} ({'area' if s > size else 'bilinear'})")
    return normalize(img, norm, raw.full_scale), notes


def normalize(img: np.ndarray, norm: Normalization, full_scale: float = 1.0) -> np.ndarray:
    img = np.asarray(img, np.float32)
    if norm.mode == "max":
        m = float(img.max())
        out = img / m if m > 0 else np.zeros_like(img)
    elif norm.mode == "mean":
        m = float(img.mean())
        out = img / (norm.mean_scale * m) if m > 0 else np.zeros_like(img)
    else:
        high = norm.high if norm.high is not None else full_scale
        out = (img - norm.low) / max(high - norm.low, 1e-12)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic held-out split: (train, val) index arrays, each sorted."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction)) if n > 1 else 0
    n_val = min(n_val, n - 1) if n > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _scan(root: Path, exclude: set[Path]) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if here in exclude:
            dirnames[:] = []
            continue
        for f in sorted(filenames):
            if not f.startswith(".") and Path(f).suffix.lower() in SUFFIXES:
                found.append(here / f)
    return found


def _stack_frames(path: Path, label: str) -> list[tuple[str | None, int | None]]:
    """The frames a .npy/.npz holds: [(key, index)], without reading the pixels."""
    if path.suffix.lower() == ".npy":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.ndim == 2:
            _from_array(np.asarray(arr), label)
            return [(None, None)]
        if arr.ndim == 3 and arr.shape[0] <= MAX_FRAMES:
            _check_shape(arr[0], label)
            return [(None, i) for i in range(arr.shape[0])]
        raise ImageError(f"{label}: expected a 2-D image or a 3-D stack, got shape {arr.shape}")
    frames = []
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            arr = z[key]
            if arr.ndim == 2:
                frames.append((key, None))
            elif arr.ndim == 3 and arr.shape[0] <= MAX_FRAMES:
                frames += [(key, i) for i in range(arr.shape[0])]
            else:
                raise ImageError(
                    f"{label}: array {key!r} has shape {arr.shape}, not an image or stack"
                )
            _check_shape(arr if arr.ndim == 2 else arr[0], label)
    if not frames:
        raise ImageError(f"{label}: no arrays inside")
    return frames


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the root
    key: str | None = None  # array name inside an .npz
    index: int | None = None  # frame inside a stack

    @property
    def name(self) -> str:
        parts = (
            [self.path]
            + ([self.key] if self.key else [])
            + ([str(self.index)] if self.index is not None else [])
        )
        return "#".join(parts)


class ImageFolder(torch.utils.data.Dataset):
    """A folder of images (searched recursively) and .npy/.npz stacks, read lazily.

    Bad files are skipped with one warning each; an optional labels.csv becomes `labels`."""

    def __init__(self, root: str | Path, size: int, norm: Normalization = Normalization(), *,
                 log: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.root = Path(root)
        self.size = int(size)
        self.norm = norm
        self._log = log or (lambda msg: globals()["log"].warning(msg))
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder")
        labels, pattern_dirs = self._read_labels()
        self.skipped: list[str] = []
        self.samples: list[Sample] = []
        for path in _scan(self.root, pattern_dirs):
            rel = path.relative_to(self.root).as_posix()
            try:
                if path.suffix.lower() in ARRAY_SUFFIXES:
                    self.samples += [Sample(rel, k, i) for k, i in _stack_frames(path, rel)]
                else:
                    self._validate(path, rel)
                    self.samples.append(Sample(rel))
            except ImageError as e:
                self._skip(str(e))
            except Exception as e:  # noqa: BLE001  (a scan must never stop on one file)
                self._skip(f"{rel}: {type(e).__name__}: {e}")
        if not self.samples:
            raise ImageError(f"{self.root}: no usable images ({len(self.skipped)} files skipped)")
        self.labels = self._match_labels(labels)
        self.notes = self._size_notes()

    def _skip(self, msg: str) -> None:
        self.skipped.append(msg)
        self._log(msg)

    def _validate(self, path: Path, rel: str) -> None:
        size = path.stat().st_size
        if size <= FULL_DECODE_BYTES:
            read_image(path, rel)  # catches truncated files up front
            return
        if size > MAX_FILE_BYTES:
            raise ImageError(f"{rel}: {size} bytes is over the limit of {MAX_FILE_BYTES}")
        with Image.open(path) as im:  # big files: header checks only, decoded when used
            w, h = im.size
            if w * h > MAX_PIXELS or min(w, h) < MIN_SIDE:
                raise ImageError(f"{rel}: {w}×{h} pixels is outside {MIN_SIDE}²..{MAX_PIXELS}")

    def _read_labels(self) -> tuple[pd.DataFrame | None, set[Path]]:
        path = self.root / LABEL_FILE
        if not path.is_file():
            return None, set()
        frame = None
        for encoding in ("utf-8-sig", "latin-1"):
            try:
                frame = pd.read_csv(path, encoding=encoding, on_bad_lines="warn", low_memory=False)
                break
            except UnicodeDecodeError:
                continue
            except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as e:
                self._log(f"{LABEL_FILE}: unreadable ({str(e).splitlines()[0]}); no labels used")
                return None, set()
        if frame is None:
            self._log(f"{LABEL_FILE}: unknown text encoding; no labels used")
            return None, set()
        column = next((c for c in frame.columns if str(c).strip().lower() in FILE_COLUMNS), None)
        if column is None:
            self._log(
                f"{LABEL_FILE}: no filename column (one of {', '.join(FILE_COLUMNS)}); no labels used"
            )
            return None, set()
        frame = frame.rename(columns={column: "file"})
        frame["file"] = frame["file"].astype(str)
        pattern_dirs = set()
        if "pattern" in frame.columns:
            for p in frame["pattern"].dropna().astype(str).head(50):
                parent = (self.root / p).parent
                if parent != self.root:
                    pattern_dirs.add(parent)
        return frame, pattern_dirs

    def _match_labels(self, frame: pd.DataFrame | None) -> pd.DataFrame:
        names = [s.name for s in self.samples]
        out = pd.DataFrame({"file": names})
        if frame is None:
            return out
        frame = frame.drop_duplicates("file")
        by_path = frame.set_index("file")
        basenames = (
            frame.assign(_b=frame["file"].map(lambda f: Path(f).name))
            .drop_duplicates("_b")
            .set_index("_b")
        )
        rows, unmatched = [], 0
        for s in self.samples:
            key = s.path
            if key in by_path.index:
                rows.append(by_path.loc[key])
            elif Path(key).name in basenames.index:
                rows.append(basenames.loc[Path(key).name].drop(labels=["file"], errors="ignore"))
            else:
                rows.append(None)
                unmatched += 1
        cols = [c for c in frame.columns if c != "file"]
        data = pd.DataFrame(
            [r if r is not None else pd.Series(dtype=object) for r in rows]
        ).reindex(columns=cols)
        data.index = range(len(data))
        out = pd.concat([out, data], axis=1)
        for c in cols:
            if out[c].dtype == object:
                # Rows were gathered as objects; restore the columns that are numeric.
                with contextlib.suppress(ValueError, TypeError):
                    out[c] = pd.to_numeric(out[c])
        missing = len(frame) - (len(self.samples) - unmatched)
        if missing > 0:
            self._log(f"{LABEL_FILE}: {missing} rows name files that are not in the dataset")
        return out

    def _size_notes(self) -> list[str]:
        sample = self.samples[: min(len(self.samples), 64)]
        shapes = set()
        for s in sample:
            try:
                shapes.add(self.read_raw_sample(s).pixels.shape)
            except ImageError:
                continue
        notes = []
        for h, w in sorted(shapes):
            what = []
            if h != w:
                what.append(f"centre-cropped to {min(h, w)}×{min(h, w)}")
            if min(h, w) != self.size:
                what.append(f"resized to {self.size}×{self.size}")
            if what:
                notes.append(f"{w}×{h} images are " + " and ".join(what))
        return notes

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def files(self) -> list[tuple[str, int | None]]:
        return [(s.path, s.index) for s in self.samples]

    def read_raw_sample(self, s: Sample) -> RawImage:
        path = self.root / s.path
        if s.key is None and s.index is None:
            return read_image(path, s.path)
        if path.suffix.lower() == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)[s.index]
        else:
            with np.load(path, allow_pickle=False) as z:
                arr = z[s.key] if s.index is None else z[s.key][s.index]
        return _from_array(np.asarray(arr), s.name)

    def read_raw(self, i: int) -> RawImage:
        return self.read_raw_sample(self.samples[i])

    def image(self, i: int) -> np.ndarray:
        return preprocess(self.read_raw(i), self.size, self.norm)[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.image(i))[None]  # (1, S, S)

    def pattern(self, i: int) -> np.ndarray | None:
        """The input pattern (e.g. the SLM image) named in labels.csv's `pattern` column."""
        if "pattern" not in self.labels.columns:
            return None
        rel = self.labels["pattern"].iloc[i]
        if not isinstance(rel, str) or not rel:
            return None
        try:
            raw = read_image(self.root / rel, rel)
        except ImageError:
            return None
        return np.clip(raw.pixels / raw.full_scale, 0, 1).astype(np.float32)

    def fingerprint(self) -> str:
        """Stable id for caches: file names, sizes and modification times, plus preprocessing."""
        h = hashlib.sha256()
        seen = set()
        for s in self.samples:
            h.update(s.name.encode())
            if s.path not in seen:
                seen.add(s.path)
                st = (self.root / s.path).stat()
                h.update(f":{st.st_size}:{st.st_mtime_ns}".encode())
        h.update(repr((self.size, sorted(self.norm.to_dict().items()))).encode())
        return h.hexdigest()


class ArrayDataset(torch.utils.data.Dataset):
    """In-memory images (N, H, W) already in [0, 1], with the ImageFolder interface."""

    def __init__(
        self,
        images: np.ndarray,
        labels: pd.DataFrame | None = None,
        patterns: np.ndarray | None = None,
    ):
        self.images = np.asarray(images, np.float32)
        if self.images.ndim != 3:
            raise ValueError(f"expected (N, H, W) images, got {self.images.shape}")
        self.size = self.images.shape[-1]
        self.labels = (
            labels.reset_index(drop=True)
            if labels is not None
            else pd.DataFrame({"file": [f"#{i}" for i in range(len(self.images))]})
        )
        self.patterns = patterns
        self.skipped: list[str] = []
        self.notes: list[str] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i])[None]

    def image(self, i: int) -> np.ndarray:
        return self.images[i]

    def pattern(self, i: int) -> np.ndarray | None:
        return None if self.patterns is None else self.patterns[i]

    def fingerprint(self) -> str:
        return hashlib.sha256(self.images.tobytes()).hexdigest()
