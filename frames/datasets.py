"""Data sets: `ImageFolder` over a folder tree of files (`ArrayDataset`, over an in-memory
array, is in frames/array_dataset.py and re-exported here).

`ImageFolder` scans a folder tree once (validating every file, skipping bad ones with one warning
each) and reads pixels lazily; .npy/.npz stacks give one sample per frame and are memory-mapped
when stored uncompressed. An optional labels.csv becomes `.labels`. `ArrayDataset` offers the
same interface over an in-memory array. Both are plain map-style datasets (len and indexing),
which DataLoader and Subset take as they are; torch is imported on the first item only, so that
opening a folder, scanning it and fingerprinting it need no torch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from frames.array_dataset import ArrayDataset
from frames.arrays import ArrayInfo, array_infos, frame_layout, load_array
from frames.image import (
    ARRAY_SUFFIXES,
    ImageError,
    RawImage,
    error_reason,
    image_error,
    image_from_array,
)
from frames.lab import LabArray, LabReader, file_kind
from frames.lab_samples import probe_lab, read_lab_frame
from frames.labels import PATTERN_COLUMN, match_labels, merge_file_labels, read_labels
from frames.layout import read_layout, same_key, split_name
from frames.normalize import Normalization, preprocess
from frames.reading import ALPHA_MODES, probe_pil, read_image
from frames.scan import candidate_files, file_key, read_scan_record, write_scan_record

if TYPE_CHECKING:
    # Lazy: frames/ opens a cached atlas without torch (docs/architecture.md).
    import torch

MAX_OPEN_ARRAYS = 32  # memory-mapped stacks kept open per process (each holds a file descriptor)
logger = logging.getLogger("frames")


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the root, with "/" separators
    key: str | None = None  # array name inside an .npz holding several arrays
    index: int | None = None  # frame inside a stack

    @cached_property  # asked twice per frame while a big recording is scanned
    def name(self) -> str:
        """The sample's id in labels: "a.png", "stack.npy#3", "set.npz#key#3"."""
        parts = [self.path] + ([self.key] if self.key else [])
        return "#".join(parts + ([str(self.index)] if self.index is not None else []))


def spaced_indices(n: int, k: int) -> np.ndarray:
    """At most k indices of n, evenly spaced from the first to the last, sorted: a bounded,
    deterministic sample of a big dataset."""
    if n <= 0:
        return np.zeros(0, int)
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic held-out split: (train, val) sorted index arrays. Training keeps at least
    one sample."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(int(round(n * val_fraction)), n - 1) if n > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class ImageFolder:
    """A folder tree of images and .npy/.npz stacks, preprocessed on read.

    `dataset[i]` is a (1, size, size) float32 tensor. Attributes: `files` [(relative path, frame
    index or None)], `labels` (DataFrame: "file", then the labels.csv columns), `skipped` (one
    message per unusable file), `notes` (what preprocessing does to this data). Bad files are
    skipped with one `log` call each (default: the "frames" logger's warning). Picklable, so
    DataLoader workers work; memory maps are opened lazily in each process."""

    def __init__(
        self,
        root: str | Path,
        size: int,
        norm: Normalization = Normalization(),  # noqa: B008 (frozen: one shared default is safe)
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
        self._stacks: dict[str, list[ArrayInfo]] = {}  # array headers, read once at scan
        self._labs: dict[str, tuple[str, list[LabArray]]] = {}  # lab files: (kind, arrays)
        self._open: OrderedDict = OrderedDict()
        self._pid = os.getpid()
        frame, skip_dirs, skip_files = read_labels(self.root, self._warn)
        self._layout = read_layout(self.root, self._warn)
        extras: dict[int, dict] = {}  # sample index -> label columns read from its file
        self.skipped: list[str] = []
        self.samples: list[Sample] = []
        shapes: list[tuple[int, int]] = []
        modes: list[str] = []
        stats = []
        known = read_scan_record(scan_record, self.root)
        seen: dict[str, list] = {}
        for rel in candidate_files(self.root, skip_dirs, skip_files):
            path = self.root / rel
            try:
                stat = path.stat()
                record = known.get(rel)
                if record is not None and record[:4] == file_key(stat):
                    # Checked at an earlier scan and unchanged since (same size, mtime, ctime
                    # and inode): its shape and mode are known without decoding it again.
                    self.samples.append(Sample(rel))
                    shapes.append((record[4], record[5]))
                    modes.append(record[6])
                    seen[rel] = record
                elif (kind := file_kind(path, rel)) is not None:
                    for sample, shape, extra in self._probe_lab(path, rel, kind):
                        if extra:
                            extras[len(self.samples)] = extra
                        self.samples.append(sample)
                        shapes.append(shape)
                        modes.append("array")
                elif path.suffix.lower() in ARRAY_SUFFIXES:
                    for sample, shape in self._probe_stack(path, rel):
                        self.samples.append(sample)
                        shapes.append(shape)
                        modes.append("array")
                else:
                    shape, mode = probe_pil(path, rel)
                    self.samples.append(Sample(rel))
                    shapes.append(shape)
                    modes.append(mode)
                    seen[rel] = file_key(stat) + [int(shape[0]), int(shape[1]), mode]
                stats.append((rel, stat.st_size, stat.st_mtime_ns))
            except ImageError as e:
                self._skip(str(e))
            except Exception as e:  # a scan must never stop on one file
                self._skip(str(image_error(rel, error_reason(e))))
        if not self.samples:
            raise ImageError(f"{self.root}: no usable images ({len(self.skipped)} files skipped)")
        self.files: list[tuple[str, int | None]] = [(s.path, s.index) for s in self.samples]
        self.labels = merge_file_labels(match_labels(self.samples, frame, self._warn), extras)
        self.notes = _summarize(shapes, modes, self.size)
        self._fingerprint = self._hash(stats)
        self._open.clear()  # the scan's maps and decoded arrays
        if scan_record is not None and seen != known:
            write_scan_record(scan_record, self.root, seen)

    # --- scanning

    def _warn(self, msg: str) -> None:
        (self._log or logger.warning)(msg)

    def _skip(self, msg: str) -> None:
        self.skipped.append(msg)
        self._warn(msg)

    def _probe_stack(self, path: Path, rel: str) -> list[tuple[Sample, tuple[int, int]]]:
        infos = self._stacks[rel] = array_infos(path, rel)
        named = len(infos) > 1  # a single array needs no key in the sample names
        out = []
        for info in infos:
            label = f"{rel}#{info.key}" if named else rel
            key = info.key if named else None
            frames, shape = frame_layout(info, label)
            bad = self._nonfinite_frames(path, info) if info.dtype.kind == "f" else set()
            if bad and frames == [None]:
                raise image_error(label, "contains NaN or Inf")
            if bad:
                first = ", ".join(f"#{k}" for k in sorted(bad)[:5]) + ("…" if len(bad) > 5 else "")
                self._skip(f"{label}: {len(bad)} frames contain NaN or Inf ({first}); skipped")
            out += [(Sample(rel, key, k), shape) for k in frames if k not in bad]
        return out

    def _probe_lab(self, path: Path, rel: str, kind: str) -> list[tuple[Sample, tuple, dict]]:
        layout = self._layout.get(rel)
        arrays, found, skipped = probe_lab(path, rel, kind, layout, self.root)
        self._labs[rel] = (kind, arrays)
        for msg in skipped:
            self._skip(msg)
        return [(Sample(rel, key, k), shape, extra) for key, k, shape, extra in found]

    def _lab_reader(self, path: Path, kind: str) -> LabReader:
        cache = self._cache()
        key = (str(path), "#lab")
        if key not in cache:
            cache[key] = LabReader(path, kind)
            while len(cache) > MAX_OPEN_ARRAYS:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    def _lab_frame(self, rel: str, key: str | None, index: int | None, name: str) -> RawImage:
        """A frame of a lab file: a speckle sample, or a pattern its `pattern` column names."""
        path = self.root / rel
        if rel not in self._labs:  # a pattern stack that is not itself a sample
            kind = file_kind(path, rel)
            if kind is None:
                raise image_error(name, "not a stack")
            self._labs[rel] = (
                kind,
                probe_lab(path, rel, kind, self._layout.get(rel), self.root)[0],
            )
        kind, arrays = self._labs[rel]
        match = [
            a
            for a in arrays
            if a.role != "label" and (a.key == key or same_key(a.key or "", key or ""))
        ]
        if not match:
            raise image_error(name, f"no array {key!r} in {rel}")
        return read_lab_frame(self._lab_reader(path, kind), match[0], index, name)

    def _nonfinite_frames(self, path: Path, info: ArrayInfo) -> set[int]:
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

    def _array(self, path: Path, info: ArrayInfo) -> np.ndarray:
        """A stack's array: memory-mapped when stored raw, else decoded. Few are kept open: each
        map holds a file descriptor, and a decoded array costs its full size."""
        cache = self._cache()
        key = (str(path), info.key)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        if info.offset is None:
            for old in [k for k, v in cache.items() if not isinstance(v, np.memmap)]:
                del cache[old]  # one decoded array at a time
        arr = load_array(path, info)
        cache[key] = arr
        while len(cache) > MAX_OPEN_ARRAYS:
            cache.popitem(last=False)
        return arr

    def read_raw(self, i: int) -> RawImage:
        """Sample i before preprocessing."""
        s = self.samples[i]
        path = self.root / s.path
        if s.path in self._labs:
            return self._lab_frame(s.path, s.key, s.index, s.name)
        if path.suffix.lower() not in ARRAY_SUFFIXES:
            return read_image(path, s.path)
        try:
            info = next(x for x in self._stacks[s.path] if s.key is None or x.key == s.key)
            arr = self._array(path, info)
            frame = arr if s.index is None else arr[s.index]
            # A copy: a view would keep the map alive and hand out read-only memory.
            return image_from_array(np.array(frame), s.name, f"{path.suffix[1:]} {info.dtype}")
        except ImageError:
            raise
        except Exception as e:  # the file changed since the scan
            raise image_error(s.name, f"cannot be read any more ({error_reason(e)})") from None

    def image(self, i: int) -> np.ndarray:
        """Sample i preprocessed: (size, size) float32 in [0, 1]."""
        return preprocess(self.read_raw(i), self.size, self.norm)[0]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> torch.Tensor:
        # Lazy: frames/ opens a cached atlas without torch (docs/architecture.md).
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
            file, key = split_name(rel)
            if key is None:
                raw = read_image(self.root / rel, rel)
            else:  # a frame of a stack: "patterns.tif#3", "run.h5#/patterns#3"
                array, _, index = key.rpartition("#")
                raw = self._lab_frame(file, array or None, int(index), rel)
        except (ImageError, ValueError, StopIteration, OSError):
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


__all__ = ["MAX_OPEN_ARRAYS", "ArrayDataset", "ImageFolder", "Sample", "split_indices"]
