"""Lab recordings as frames: multi-page TIFF stacks, HDF5 files and MATLAB .mat files (v5, and
v7.3, which is HDF5), each frame one sample.

`inspect_lab` finds a file's arrays from headers only and gives each a role: speckle frames,
input patterns (a paired recording) or per-frame labels (see frames/layout.py for how
dataset.toml chooses). `LabReader` then reads one frame at a time: raw, contiguous data is
memory-mapped, so a 20 GB stack is listed without being read. Anything wrong raises ImageError,
a one-line "<file>: <problem>"; nothing is read with pickle.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frames.arrays import MAX_FRAMES
from frames.image import (
    LAB_SUFFIXES,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    check_shape,
    image_error,
)
from frames.layout import Layout, same_key

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# Names that mark a paired recording's input patterns when dataset.toml names none.
PATTERN_NAMES = ("pattern", "patterns", "input", "inputs", "slm", "dmd")
# Frames per upload: the page shows one row per frame, and each costs an encode and a decode.
MAX_UPLOAD_FRAMES = 256


@dataclass(frozen=True)
class FoundArray:
    """An array as a format module finds it, before roles are given."""

    key: str | None  # name in the file; None for a TIFF's only series
    shape: tuple[int, ...]  # as stored
    dtype: np.dtype
    reversed: bool = False  # MATLAB v7.3: stored column-major, so h5py sees MATLAB's axes reversed
    offset: int | None = None  # byte offset of raw, contiguous data (memory-mappable)
    pages: bool = False  # a TIFF series decoded page by page
    fixed: bool = False  # a TIFF series is (N, H, W) whatever dataset.toml says


@dataclass(frozen=True)
class LabArray:
    """One array of a lab file and what it is used for."""

    key: str | None
    role: str  # "speckle", "pattern" or "label"
    shape: tuple[int, ...]  # as stored
    dtype: str
    n_axis: int | None  # stored axis counting frames; None for one 2-D image or a label vector
    transpose: bool = False  # a stored frame is (W, H)
    field: bool = False  # complex field E: the intensity is |E|²
    offset: int | None = None
    pages: bool = False

    @property
    def frames(self) -> int | None:
        return None if self.n_axis is None else self.shape[self.n_axis]

    @property
    def column(self) -> str:
        """A label array's column name: its last path component."""
        return str(self.key).rstrip("/").rpartition("/")[2]


def lab_kind(head: bytes, suffix: str) -> str | None:
    """ "hdf5", "mat5" or "tiff" from a file's first bytes (MAT v7.3 has a 512-byte header before
    its HDF5 signature), else None."""
    if head.startswith(HDF5_MAGIC) or head[512:520] == HDF5_MAGIC:
        return "hdf5"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if suffix == ".mat":
        return "mat5"  # v5 starts with text; v4 with a binary header: scipy tells them apart
    return None


def _numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "uifbc" and dtype.fields is None and dtype.subdtype is None


def _vector_len(f: FoundArray) -> int | None:
    if not _numeric(f.dtype) or f.dtype.kind == "c":
        return None
    if len(f.shape) == 1:
        return f.shape[0]
    if len(f.shape) == 2 and 1 in f.shape:  # MATLAB keeps vectors as (1, N) or (N, 1)
        return max(f.shape)
    return None


def _layout_of(f: FoundArray, axes: str) -> tuple[int | None, bool, tuple[int, int]]:
    """(stored frame axis, transposed, (H, W)) of a 2-D or 3-D array read in `axes` order."""
    logical = f.shape[::-1] if f.reversed else f.shape
    order = "NHW" if f.fixed else axes
    if len(logical) == 2:
        order = "HW"
    stored_axes = order[::-1] if f.reversed else order
    dims = dict(zip(stored_axes, f.shape, strict=True))
    n_axis = stored_axes.index("N") if "N" in stored_axes else None
    return n_axis, stored_axes.replace("N", "") == "WH", (dims["H"], dims["W"])


def _as_frames(f: FoundArray, role: str, layout: Layout, label: str) -> LabArray:
    where = f"{label}#{f.key}" if f.key else label
    if not _numeric(f.dtype):
        raise image_error(where, f"unsupported array dtype {f.dtype} (need integer, float or bool)")
    if f.dtype.kind == "c" and not (layout.field and role == "speckle"):
        raise image_error(
            where, "complex array; if it is the speckle field E, set field = true in dataset.toml"
        )
    if len(f.shape) not in (2, 3):
        raise image_error(where, f"expected a 2-D image or a 3-D stack, got shape {f.shape}")
    n_axis, transpose, hw = _layout_of(f, layout.axes)
    check_shape(hw, where)
    if n_axis is not None:
        n = f.shape[n_axis]
        if not 0 < n <= MAX_FRAMES:
            raise image_error(where, f"{n} frames; a stack holds 1 to {MAX_FRAMES}")
    if hw[0] * hw[1] * f.dtype.itemsize > MAX_FILE_BYTES:
        raise image_error(where, f"one frame is over {MAX_FILE_BYTES} bytes")
    return LabArray(
        f.key, role, f.shape, f.dtype.str, n_axis, transpose, f.dtype.kind == "c", f.offset, f.pages
    )


def _plausible(f: FoundArray, axes: str) -> bool:
    if not _numeric(f.dtype) or len(f.shape) not in (2, 3) or _vector_len(f) is not None:
        return False
    _, _, (h, w) = _layout_of(f, axes)
    return min(h, w) >= MIN_SIDE and h * w <= MAX_PIXELS


def assign_roles(found: list[FoundArray], layout: Layout, label: str) -> list[LabArray]:
    """Speckle, pattern and label arrays among `found`, as dataset.toml says or by default: every
    image-sized array is speckle, one named like PATTERN_NAMES holds the patterns, and every
    numeric vector as long as a stack is a label column."""
    names = ", ".join(f"{f.key} {f.shape}" for f in found[:8]) or "none"

    def pick(key: str, what: str) -> FoundArray:
        for f in found:
            if f.key is not None and same_key(f.key, key):
                return f
        raise image_error(label, f"no array {key!r} for the {what} (arrays: {names})")

    pattern = pick(layout.patterns, "patterns") if layout.patterns else None
    if pattern is None and len(found) > 1:
        named = [f for f in found if str(f.key).rpartition("/")[2].lower() in PATTERN_NAMES]
        pattern = next((f for f in named if _plausible(f, layout.axes)), None)
    if layout.speckle:
        speckle = [pick(layout.speckle, "speckle")]
    else:
        speckle = [f for f in found if f is not pattern and _plausible(f, layout.axes)]
    if not speckle:
        raise image_error(label, f"no image-sized 2-D or 3-D numeric array (arrays: {names})")
    out = [_as_frames(f, "speckle", layout, label) for f in speckle]
    counts = {a.frames for a in out if a.frames is not None}
    if pattern is not None:
        p = _as_frames(pattern, "pattern", layout, label)
        if p.frames in counts:
            out.append(p)
        elif layout.patterns:
            raise image_error(label, f"{p.frames} patterns for stacks of {sorted(counts)} frames")
    if layout.labels is not None:
        vectors = [pick(k, "labels") for k in layout.labels]
    else:
        vectors = [f for f in found if f not in speckle and _vector_len(f) in counts]
    for v in vectors:
        if _vector_len(v) not in counts:
            raise image_error(
                label, f"label array {v.key!r} is not a vector of {sorted(counts)} values"
            )
        out.append(LabArray(v.key, "label", v.shape, v.dtype.str, None))
    return out


def _source(source: str | Path | bytes) -> tuple[Any, int]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), len(source)
    return open(source, "rb"), Path(source).stat().st_size  # noqa: SIM115 (closed by the caller)


def inspect_lab(
    source: str | Path | bytes, kind: str, label: str, layout: Layout, root: Path | None = None
) -> list[LabArray]:
    """A lab file's arrays and their roles, from headers. `root` bounds where an HDF5 file's
    links may point (None: nowhere outside the file). Raises ImageError."""
    f, size = _source(source)
    with f:
        if kind == "tiff":
            # Lazy: tifffile, h5py and scipy.io load with the first lab file of their
            # kind, not with `import frames` (cached open, docs/architecture.md).
            from frames.tiff import inspect_tiff

            found = inspect_tiff(f, size, label)
        elif kind == "hdf5":
            # Lazy: h5py with the first HDF5 file (see above).
            from frames.containers import inspect_hdf5

            where = None if isinstance(source, (bytes, bytearray, memoryview)) else Path(source)
            found = inspect_hdf5(f, size, label, where, root)
        else:
            # Lazy: scipy.io with the first MAT file (see above).
            from frames.containers import inspect_mat5

            found = inspect_mat5(f, size, label)
    return assign_roles(found, layout, label)


class LabReader:
    """An open lab file, read one frame at a time. Not shared between processes."""

    def __init__(self, source: str | Path | bytes, kind: str) -> None:
        self.source, self.kind = source, kind
        self._file, self._size = _source(source)
        self._handle: Any = None
        self._maps: dict[str | None, Any] = {}
        if kind == "hdf5":
            # Lazy: h5py and tifffile load with the first lab file (cached open, as in inspect_lab).
            import h5py

            self._handle = h5py.File(self._file, "r")
        elif kind == "tiff":
            # Lazy: as h5py above.
            import tifffile

            self._handle = tifffile.TiffFile(self._file, _multifile=False)
        else:
            # Lazy: as h5py above.
            from frames.containers import load_mat5

            self._handle = load_mat5(self._file)

    def close(self) -> None:
        if self.kind != "mat5":
            self._handle.close()
        self._file.close()

    def array(self, a: LabArray) -> Any:
        """The stored array: a memory map when raw and contiguous, else an h5py Dataset, a
        decoded MAT variable, or a TIFF series (decoded page by page)."""
        if a.key in self._maps:
            return self._maps[a.key]
        dtype = np.dtype(a.dtype)
        if a.offset is not None and isinstance(self.source, (str, Path)):
            arr = np.memmap(self.source, dtype, "r", a.offset, a.shape)
        elif a.offset is not None:
            count = math.prod(a.shape)
            arr = np.frombuffer(self.source, dtype, count, a.offset).reshape(a.shape)
        elif self.kind == "tiff":
            series = self._handle.series
            arr = series[0 if a.key is None else int(a.key.removeprefix("series"))]
        elif self.kind == "hdf5":
            arr = self._handle[a.key]
        else:
            arr = self._handle[a.key]
        self._maps[a.key] = arr
        return arr

    def frame(self, a: LabArray, i: int | None) -> np.ndarray:
        """Frame i (None for a 2-D array) as a 2-D array of the stored type (float32 |E|² for a
        field)."""
        arr = self.array(a)
        if a.pages:
            frame = arr.pages[i].asarray()
        elif i is None:
            frame = np.asarray(arr[()])
        else:
            index: list[Any] = [slice(None)] * len(a.shape)
            index[a.n_axis] = i
            frame = np.asarray(arr[tuple(index)])
        if frame.dtype.names and set(frame.dtype.names) >= {"real", "imag"}:
            frame = frame["real"] + 1j * frame["imag"]  # MATLAB v7.3 complex
        frame = frame.reshape(frame.shape[-2:]) if frame.ndim > 2 else frame
        if a.transpose:
            frame = frame.T
        if a.field:
            frame = (np.abs(frame) ** 2).astype(np.float32)
        return frame

    def vector(self, a: LabArray) -> np.ndarray:
        return np.asarray(self.array(a)[()]).ravel()


def file_kind(path: Path, label: str) -> str | None:
    """ "tiff" (a stack), "hdf5" or "mat5" for a lab file; None for anything else, which the image
    and array readers take. A .h5 or .mat that is neither is an error."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        # Lazy: tifffile loads with the first lab file, not with `import frames` (cached open).
        from frames.tiff import is_stack

        with open(path, "rb") as f:
            return "tiff" if is_stack(f) else None
    if suffix not in LAB_SUFFIXES:
        return None
    with open(path, "rb") as f:
        kind = lab_kind(f.read(520), suffix)
    if kind is None:
        raise image_error(label, "not an HDF5 file (no HDF5 signature)")
    return kind
