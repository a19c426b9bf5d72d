"""A lab file's samples in a data set, and its frames for `python -m speckle stats` and uploads.

Each frame of a speckle array is one sample, named like the .npy stacks' frames: "stack.tif#12",
"run.h5#/camera/frames#12", "data.mat#speckle#12". Label vectors become per-sample columns, and
a paired recording's pattern frame is named in the sample's `pattern` column
("run.h5#/patterns#12"), which `ImageFolder.pattern` reads.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vae.data.image import ImageError, RawImage, _error, _from_array, _reason, one_line_errors
from vae.data.lab import LAB_SUFFIXES, LabArray, LabReader, inspect_lab, lab_kind
from vae.data.labels import PATTERN_COLUMN
from vae.data.layout import Layout

# Float stacks up to this size are checked for NaN/Inf when scanned (read in chunks); larger
# ones are checked frame by frame as they are read, so listing them stays fast.
NAN_SCAN_BYTES = 2 << 30


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
        labels = {a.column: reader.vector(a) for a in arrays if a.role == "label"}
        pattern = next((a for a in arrays if a.role == "pattern"), None)
        for a in (x for x in arrays if x.role == "speckle"):
            key = sample_key(kind, a)
            where = f"{rel}#{key}" if key else rel
            frames = [None] if a.frames is None else list(range(a.frames))
            for k in {frames[0], frames[-1]}:
                _from_array(reader.frame(a, k), where if k is None else f"{where}#{k}")
            h, w = reader.frame(a, frames[0]).shape
            bad = _nonfinite(reader, a) if np.dtype(a.dtype).kind in "fc" else set()
            if bad:
                first = ", ".join(f"#{k}" for k in sorted(bad)[:5])
                skipped.append(f"{where}: {len(bad)} frames contain NaN or Inf ({first}); skipped")
            for k in frames:
                if k in bad:
                    continue
                extra = {
                    c: v[k].item()
                    for c, v in labels.items()
                    if k is not None and len(v) == a.frames
                }
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
        raise _error(name, f"cannot be read ({_reason(e)})") from None
    return _from_array(frame, name, f"{reader.kind} {np.dtype(a.dtype)}")


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
    from vae.data.arrays import array_frames
    from vae.data.reading import read_image
    from vae.data.tiff import is_stack

    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    if not is_bytes and not Path(source).is_file():
        raise _error(name, "no such file")
    suffix = Path(name.partition("#")[0]).suffix.lower()
    with io.BytesIO(bytes(source)) if is_bytes else open(source, "rb") as f:
        head = f.read(520)
        f.seek(0)
        kind = lab_kind(head, suffix)
        if kind == "tiff" and not is_stack(f):
            kind = None
    if kind is None and suffix in LAB_SUFFIXES:
        raise _error(name, "not an HDF5 file (no HDF5 signature)")
    if kind is None and (head[:6] == b"\x93NUMPY" or head[:4] == b"PK\x03\x04"):
        return array_frames(source, name, limit)
    if kind is None:
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
