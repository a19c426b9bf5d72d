"""A lab file's samples in a data set, its frames for `python -m speckle stats` and uploads, and
input patterns by frame name.

Each frame of a speckle array is one sample, named like the .npy stacks' frames: "stack.tif#12",
"run.h5#/camera/frames#12", "data.mat#speckle#12". Label vectors become per-sample columns, and
a paired recording's pattern frame is named in the sample's `pattern` column
("run.h5#/patterns#12"), which `ImageFolder.pattern` reads. `pattern_frames` reads the patterns
any such name stands for, from any file the readers take.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from frames.arrays import array_frames, array_layouts
from frames.image import (
    ImageError,
    RawImage,
    error_reason,
    image_error,
    image_from_array,
    one_line_errors,
)
from frames.lab import LAB_SUFFIXES, LabArray, LabReader, inspect_lab, lab_kind
from frames.labels import PATTERN_COLUMN
from frames.layout import Layout, read_layout, same_key, split_name
from frames.reading import read_image
from frames.tiff import is_stack

# Float stacks up to this size are checked for NaN/Inf when scanned (read in chunks); larger
# ones are checked frame by frame as they are read, so listing them stays fast.
NAN_SCAN_BYTES = 2 << 30
# Arrays named in a one-line error that lists a file's frames.
LISTED_ARRAYS = 8
logger = logging.getLogger("frames")


def sample_key(kind: str, a: LabArray) -> str | None:
    """The array part of a sample's name: an HDF5 or MAT file's array always, a TIFF's series
    only when it has several."""
    return a.key if kind != "tiff" or a.key else None


def probe_lab(
    path: Path, rel: str, kind: str, layout: Layout, root: Path
) -> tuple[list[LabArray], list[tuple[str | None, int | None, tuple[int, int], dict]], list[str]]:
    """(arrays, samples as (key, frame index, (H, W), label columns), skipped-frame messages).
    The first and last frames are decoded, so a damaged file is caught when it is scanned."""
    arrays = inspect_lab(path, kind, rel, layout, root)
    reader = LabReader(path, kind)
    samples: list[tuple[str | None, int | None, tuple[int, int], dict]] = []
    skipped: list[str] = []
    try:
        # Python values once per column: a per-frame .item() is most of a big file's scan.
        labels = {a.column: reader.vector(a).tolist() for a in arrays if a.role == "label"}
        pattern = next((a for a in arrays if a.role == "pattern"), None)
        for a in (x for x in arrays if x.role == "speckle"):
            key = sample_key(kind, a)
            where = f"{rel}#{key}" if key else rel
            frames = [None] if a.frames is None else list(range(a.frames))
            for k in {frames[0], frames[-1]}:
                image_from_array(reader.frame(a, k), where if k is None else f"{where}#{k}")
            h, w = reader.frame(a, frames[0]).shape
            bad = _nonfinite(reader, a) if np.dtype(a.dtype).kind in "fc" else set()
            if bad:
                first = ", ".join(f"#{k}" for k in sorted(bad)[:5])
                skipped.append(f"{where}: {len(bad)} frames contain NaN or Inf ({first}); skipped")
            for k in frames:
                if k in bad:
                    continue
                extra = {c: v[k] for c, v in labels.items() if k is not None and len(v) == a.frames}
                if pattern is not None and k is not None and pattern.frames == a.frames:
                    extra[PATTERN_COLUMN] = f"{rel}#{pattern.key}#{k}"
                samples.append((key, k, (int(h), int(w)), extra))
    finally:
        reader.close()
    return arrays, samples, skipped


def _nonfinite(reader: LabReader, a: LabArray) -> set[int]:
    frames = a.frames or 1
    h, w = a.shape[-2:]
    if frames * h * w * np.dtype(a.dtype).itemsize > NAN_SCAN_BYTES:
        return set()
    idx = [None] if a.frames is None else range(frames)
    return {int(k or 0) for k in idx if not np.isfinite(reader.frame(a, k)).all()}


def read_lab_frame(reader: LabReader, a: LabArray, index: int | None, name: str) -> RawImage:
    """One frame as a RawImage; raises ImageError."""
    try:
        frame = np.array(reader.frame(a, index))  # a copy: a view would keep the map alive
    except ImageError:
        raise
    except Exception as e:  # the file changed since the scan, or a damaged chunk
        raise image_error(name, f"cannot be read ({error_reason(e)})") from None
    return image_from_array(frame, name, f"{reader.kind} {np.dtype(a.dtype)}")


def file_format(source: str | Path | bytes, name: str) -> str:
    """What a file or an upload's bytes hold, from its first bytes: "hdf5", "mat5" or "tiff" (a
    lab file), "array" (.npy/.npz) or "image". `name` is the file's name, or its frame name
    ("run.h5#/speckle#3"). Raises ImageError for a file that is not there or a .h5/.mat that is
    neither HDF5 nor MATLAB."""
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    if not is_bytes and not Path(source).is_file():
        raise image_error(name, "no such file")
    suffix = Path(name.partition("#")[0]).suffix.lower()
    with io.BytesIO(bytes(source)) if is_bytes else open(source, "rb") as f:
        head = f.read(520)
        f.seek(0)
        kind = lab_kind(head, suffix)
        if kind == "tiff" and not is_stack(f):
            kind = None
    if kind is None and suffix in LAB_SUFFIXES:
        raise image_error(name, "not an HDF5 file (no HDF5 signature)")
    if kind is None and (head[:6] == b"\x93NUMPY" or head[:4] == b"PK\x03\x04"):
        return "array"
    return kind or "image"


def stack_frames(
    source: str | Path | bytes,
    name: str,
    layout: Layout = Layout(),  # noqa: B008 (frozen)
    root: Path | None = None,
    limit: int | None = None,
) -> tuple[int, Iterator[tuple[str, int | None, RawImage]]]:
    """(frame count, the first `limit` frames) of any file the readers take: a lab file or an
    .npy/.npz stack gives its frames, any other image itself. A frame is (file or file#key, frame
    index or None, image), so its sample name is "file#key#index". Raises ImageError for the
    file; the iterator raises it for a bad frame."""
    kind = file_format(source, name)
    if kind == "array":
        return array_frames(source, name, limit)
    if kind == "image":
        return 1, iter([(name, None, read_image(source, name))])
    with one_line_errors(name, f"{kind} file"):
        arrays = inspect_lab(source, kind, name, layout, root)
    speckle = [a for a in arrays if a.role == "speckle"]
    total = sum(a.frames or 1 for a in speckle)

    def frames() -> Iterator[tuple[str, int | None, RawImage]]:
        reader = LabReader(source, kind)
        try:
            n = 0
            for a in speckle:
                key = sample_key(kind, a)
                where = f"{name}#{key}" if key else name
                for k in [None] if a.frames is None else range(a.frames):
                    if limit is not None and n >= limit:
                        return
                    label = where if k is None else f"{where}#{k}"
                    yield where, k, read_lab_frame(reader, a, k, label)
                    n += 1
        finally:
            reader.close()

    return total, frames()


@dataclass(frozen=True)
class _Frames:
    """One array of frames in a file, as frame names use it: frame k is named f"{where}#{k}"."""

    where: str  # "file", or "file#key" for an array of a file holding several
    key: str | None  # the key that names it, None for a file's only array
    frames: int | None  # None: one 2-D image
    role: str  # "speckle" or "pattern" (a paired recording's)
    lab: LabArray | None = None

    def indices(self) -> list[int | None]:
        return [None] if self.frames is None else list(range(self.frames))


def split_frame(frame: str | None) -> tuple[str | None, int | None]:
    """A frame name's part after the file, as (array, frame index): "/patterns#12" -> ("/patterns",
    12), "3" -> (None, 3), "/patterns" -> ("/patterns", None)."""
    if not frame:
        return None, None
    array, _, index = frame.rpartition("#")
    if index.isascii() and index.isdigit():
        return array or None, int(index)
    return frame, None


def _listing(arrays: list[_Frames]) -> str:
    """A file's frame names in short: "run.h5#/speckle#0…#19, run.h5#/patterns#0…#19"."""
    parts = [
        a.where if a.frames is None else f"{a.where}#0…#{a.frames - 1}"
        for a in arrays[:LISTED_ARRAYS]
    ]
    return ", ".join(parts) + (", …" if len(arrays) > LISTED_ARRAYS else "")


def _file_arrays(
    data: str | Path | bytes, label: str, kind: str, layout: Layout, root: Path | None
) -> list[_Frames]:
    """The arrays of frames a file holds, from headers."""
    if kind == "image":
        return [_Frames(label, None, None, "speckle")]
    if kind == "array":
        return [
            _Frames(f"{label}#{key}" if key else label, key, n, "speckle")
            for key, n in array_layouts(data, label)
        ]
    with one_line_errors(label, f"{kind} file"):
        arrays = inspect_lab(data, kind, label, layout, root)
    out = []
    for a in arrays:
        if a.role != "label":
            key = sample_key(kind, a)
            out.append(_Frames(f"{label}#{key}" if key else label, key, a.frames, a.role, a))
    return out


def _select(
    arrays: list[_Frames], label: str, array: str | None, index: int | None
) -> list[tuple[_Frames, int | None]]:
    """The frames a name's array and index pick. No array: a paired recording's pattern array,
    else every array; no index: every frame of them."""
    if array is not None:
        chosen = [a for a in arrays if a.key is not None and same_key(a.key, array)]
        if not chosen:
            raise image_error(label, f"no array {array!r} (frames: {_listing(arrays)})")
    else:
        chosen = [a for a in arrays if a.role == "pattern"] or arrays
    if index is None:
        return [(a, k) for a in chosen for k in a.indices()]
    if len(chosen) > 1:
        which = ", ".join(f"{a.where}#{index}" for a in chosen[:LISTED_ARRAYS])
        raise image_error(label, f"frame #{index} of which array? Name one: {which}")
    a = chosen[0]
    if a.frames is None:
        raise image_error(a.where, f"one 2-D image, not a stack: name it without #{index}")
    if index >= a.frames:
        raise image_error(a.where, f"no frame #{index} ({a.frames} frames: #0 to #{a.frames - 1})")
    return [(a, index)]


def pattern_frames(
    source: str | Path | bytes,
    name: str | None = None,
    frame: str | None = None,
    *,
    layout: Layout | None = None,
    single: bool = False,
) -> tuple[list[str], Iterator[tuple[str, RawImage]]]:
    """The input patterns a frame name stands for: (their frame names, from headers; the frames,
    read one at a time as (frame name, image)).

    `source` is a path, which may end in a frame name ("run.h5#/patterns#12", "stack.tif#3",
    "data.mat#patterns#0", "set.npz#key#3"), or an upload's bytes, with `name` its file name and
    `frame` the part after "#". A name without a frame index stands for every frame it holds: an
    image is one pattern; a stack, .npy/.npz or recording one per frame, of its pattern array when
    it is a paired recording. `layout` says which array is what (default: a path's folder's
    dataset.toml). `single`: a name standing for several frames is an error that lists them.
    Raises ImageError, a one-line "<file>: <problem>"."""
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    label = name or ("<upload>" if is_bytes else str(source))
    root = None
    if not is_bytes:
        path = Path(source)
        if frame is None and not path.is_file() and "#" in str(source):
            file, frame = split_name(str(source))
            path, label = Path(file), file if name is None else name
        source, root = path, path.parent
        if layout is None:
            folder = read_layout(path.parent, lambda msg: logger.warning("%s", msg))
            layout = folder.get(path.name)
    kind = file_format(source, label)
    arrays = _file_arrays(source, label, kind, layout or Layout(), root)
    picked = _select(arrays, label, *split_frame(frame))
    names = [a.where if k is None else f"{a.where}#{k}" for a, k in picked]
    if single and len(names) > 1:
        raise image_error(label, f"holds {len(names)} patterns; name one: {names[0]} … {names[-1]}")

    def frames() -> Iterator[tuple[str, RawImage]]:
        if kind == "image":
            yield label, read_image(source, label)
            return
        if kind == "array":
            wanted = set(names)
            _, stream = array_frames(source, label)
            for where, k, raw in stream:
                frame_name = where if k is None else f"{where}#{k}"
                if frame_name in wanted:
                    yield frame_name, raw
                    wanted.discard(frame_name)
                    if not wanted:
                        return
            return
        reader = LabReader(source, kind)
        try:
            for (a, k), frame_name in zip(picked, names, strict=True):
                yield frame_name, read_lab_frame(reader, a.lab, k, frame_name)
        finally:
            reader.close()

    return names, frames()
