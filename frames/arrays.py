"""NumPy arrays as images: .npy and .npz files, one image or an (N, H, W) stack of frames.

Headers are read and checked before any pixel is, so a hostile header cannot make numpy allocate
terabytes, and pickles are never loaded. Arrays stored raw are memory-mapped, so a stack is read
one frame at a time.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from frames.image import (
    MAX_FILE_BYTES,
    RawImage,
    check_dtype,
    check_shape,
    image_error,
    image_from_array,
    one_line_errors,
)

MAX_FRAMES = 1_000_000  # per stack file


@dataclass(frozen=True)
class ArrayInfo:
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
        raise image_error(label, f"unsupported .npy format version {version}")
    check_dtype(dtype, label)
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise image_error(label, f"bad array shape {shape}")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > available - (f.tell() - start):
        raise image_error(label, f"truncated array data (shape {shape}, {dtype})")
    return tuple(shape), dtype, bool(fortran)


def _npz_infos(f: BinaryIO, label: str) -> list[ArrayInfo]:
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
                    raise image_error(label, "corrupt zip archive")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                offset = member.header_offset + 30 + name_len + extra_len + header_len
            elif member.file_size > MAX_FILE_BYTES:
                raise image_error(
                    label,
                    f"compressed array {key!r} is {member.file_size} bytes unpacked, over the "
                    f"limit of {MAX_FILE_BYTES}; save it uncompressed (np.savez or np.save)",
                )
            infos.append(ArrayInfo(key, shape, dtype, fortran, offset))
    if not infos:
        raise image_error(label, "no arrays inside the .npz")
    return infos


def array_infos(path: Path, label: str) -> list[ArrayInfo]:
    """The arrays a .npy/.npz file holds, from headers only."""
    with open(path, "rb") as f:
        head = f.read(6)
        f.seek(0)
        if head == b"\x93NUMPY":
            size = path.stat().st_size
            shape, dtype, fortran = _npy_header(f, size, label)
            return [ArrayInfo(None, shape, dtype, fortran, f.tell())]
        if head[:4] == b"PK\x03\x04":
            return _npz_infos(f, label)
    raise image_error(label, f"not a {path.suffix.lower()} file (the content is not a NumPy array)")


def frame_layout(info: ArrayInfo, label: str) -> tuple[list[int | None], tuple[int, int]]:
    """An array's frames ([None] for a 2-D image, else 0..N-1) and their (H, W), checked."""
    if len(info.shape) == 2:
        frames: list[int | None] = [None]
        shape = info.shape
    elif len(info.shape) == 3 and 0 < info.shape[0] <= MAX_FRAMES:
        frames = list(range(info.shape[0]))
        shape = info.shape[1:]
    else:
        raise image_error(
            label, f"expected a 2-D image or a 3-D (N, H, W) stack, got shape {info.shape}"
        )
    check_shape(shape, label)
    return frames, (int(shape[0]), int(shape[1]))


def load_array(path: Path, info: ArrayInfo) -> np.ndarray:
    """The array: memory-mapped when stored raw, else decoded (a compressed .npz member, whose
    unpacked size _npz_infos has checked)."""
    if info.offset is not None:
        order = "F" if info.fortran else "C"
        return np.memmap(path, info.dtype, "r", info.offset, info.shape, order=order)
    with np.load(path, allow_pickle=False) as z:
        return z[info.key]


def read_frames(
    path: str | Path, label: str | None = None
) -> Iterator[tuple[str | None, int | None, RawImage]]:
    """Every 2-D image in a .npy/.npz file: (array key when the .npz holds several, else None;
    frame index for a 3-D stack, else None; the image). Headers are checked before any pixel is
    read, and a stack is read one frame at a time. Raises ImageError, nothing else; the first bad
    frame ends the file."""
    path = Path(path)
    label = label or str(path)
    with one_line_errors(label, "array"):
        if not path.is_file():
            raise image_error(label, "no such file")
        infos = array_infos(path, label)
        named = len(infos) > 1  # a single array needs no key in the names
        for info in infos:
            where = f"{label}#{info.key}" if named else label
            frames, _ = frame_layout(info, where)
            arr = load_array(path, info)
            source = f"{path.suffix[1:]} {info.dtype}"
            for k in frames:
                name = where if k is None else f"{where}#{k}"
                # A copy: a view would keep the map alive and hand out read-only memory.
                frame = np.array(arr if k is None else arr[k])
                yield (info.key if named else None), k, image_from_array(frame, name, source)


def read_npy_bytes(data: bytes, label: str) -> RawImage:
    buf = io.BytesIO(data)
    _npy_header(buf, len(data), label)
    buf.seek(0)
    return _single_image(np.load(buf, allow_pickle=False), label, "npy")


def read_npz_bytes(data: bytes, label: str) -> RawImage:
    buf = io.BytesIO(data)
    infos = _npz_infos(buf, label)
    if len(infos) != 1:
        raise image_error(
            label, f"an .npz with {len(infos)} arrays is a stack; load it as a folder"
        )
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        return _single_image(z[z.files[0]], label, "npz")


def _single_image(arr: np.ndarray, label: str, kind: str) -> RawImage:
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise image_error(
            label, f"expected a 2-D array, got shape {arr.shape} (a stack needs a folder)"
        )
    return image_from_array(arr, label, f"{kind} {arr.dtype}")


def _source_infos(source: str | Path | bytes, label: str) -> list[ArrayInfo]:
    """The arrays of an .npy/.npz file or of its bytes, from headers."""
    if not isinstance(source, (bytes, bytearray, memoryview)):
        return array_infos(Path(source), label)
    data = bytes(source)
    if data[:6] == b"\x93NUMPY":
        shape, dtype, fortran = _npy_header(io.BytesIO(data), len(data), label)
        return [ArrayInfo(None, shape, dtype, fortran, None)]
    return _npz_infos(io.BytesIO(data), label)


def array_layouts(source: str | Path | bytes, label: str) -> list[tuple[str | None, int | None]]:
    """Each array of an .npy/.npz file or its bytes as (its key when the .npz holds several, else
    None; its frame count, None for one 2-D image), from headers; raises ImageError."""
    with one_line_errors(label, "array"):
        infos = _source_infos(source, label)
        named = len(infos) > 1
        out = []
        for info in infos:
            frames, _ = frame_layout(info, f"{label}#{info.key}" if named else label)
            out.append((info.key if named else None, None if frames == [None] else len(frames)))
        return out


def array_frames(
    source: str | Path | bytes, label: str, limit: int | None = None
) -> tuple[int, Iterator[tuple[str, int | None, RawImage]]]:
    """(frame count, the first `limit` frames as (name, index, image)) of an .npy/.npz file or its
    bytes (an upload, decoded whole: uploads are limited to MAX_FILE_BYTES). Headers are checked
    first; raises ImageError."""
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else None
    with one_line_errors(label, "array"):
        infos = _source_infos(source, label)
        named = len(infos) > 1
        layouts = [frame_layout(i, f"{label}#{i.key}" if named else label)[0] for i in infos]

    def load(info: ArrayInfo) -> np.ndarray:
        if data is None:
            return load_array(Path(source), info)
        if info.key is None:
            return np.load(io.BytesIO(data), allow_pickle=False)
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return z[info.key]

    def frames() -> Iterator[tuple[str, int | None, RawImage]]:
        n = 0
        for info, layout in zip(infos, layouts, strict=True):
            where = f"{label}#{info.key}" if named else label
            arr = load(info)
            for k in layout:
                if limit is not None and n >= limit:
                    return
                name = where if k is None else f"{where}#{k}"
                frame = np.array(arr if k is None else arr[k])
                yield where, k, image_from_array(frame, name, f"{info.dtype}")
                n += 1

    return sum(len(x) for x in layouts), frames()
