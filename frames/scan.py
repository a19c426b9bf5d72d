"""Scanning a folder: the candidate files it holds, and the scan record that lets a later scan
skip decoding image files that have not changed since an earlier one checked them."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from common.atomic import atomic_write
from frames.image import (
    IMAGE_SUFFIXES,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    SUFFIXES,
    check_shape,
)
from frames.labels import read_labels
from frames.reading import FULL_DECODE_BYTES

SCAN_RECORD_FORMAT = "speckle-vae-scan/2"
_RECORD_FIELDS = 7  # byte size, mtime_ns, ctime_ns, inode, height, width, PIL mode
logger = logging.getLogger("frames")


def candidate_files(root: Path, skip_dirs: set[str], skip_files: set[str]) -> list[str]:
    """Relative paths of candidate files, sorted (each folder's files, then its subfolders):
    every file with a readable suffix, except hidden ones and those under hidden folders."""
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


def dataset_files(root: Path, warn: Callable[[str], None]) -> list[str]:
    """The files a data set folder's samples come from, as `ImageFolder` scans it: the candidate
    files less the input patterns that labels.csv's pattern column names (a simulated set's
    `patterns/`). Relative paths, sorted."""
    _, skip_dirs, skip_files = read_labels(root, warn)
    return candidate_files(root, skip_dirs, skip_files)


def _scan_checks() -> dict:
    """What a scan's verdict depends on: a record made under other limits is not reused."""
    return {
        "full_decode_bytes": FULL_DECODE_BYTES,
        "min_side": MIN_SIDE,
        "max_pixels": MAX_PIXELS,
        "max_file_bytes": MAX_FILE_BYTES,
    }


def file_key(stat: os.stat_result) -> list[int]:
    # ctime too: chmod, or a copy that keeps the mtime (cp -p, rsync -a, tar), changes it, and
    # utime cannot set it back; with the inode, a file replaced by another is always new.
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def read_scan_record(path: str | Path | None, root: Path) -> dict[str, list]:
    """{relative path: file_key + [height, width, mode]} of the image files a scan of `root`
    found usable, as written by write_scan_record; {} when there is none or it does not parse,
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
            check_shape((rec[4], rec[5]), rel)
        return files
    except Exception:  # a missing, unreadable or hand-edited record: scan as if new
        return {}


def write_scan_record(path: str | Path, root: Path, files: dict[str, list]) -> None:
    """Atomically, so a reader never sees half a record; a read-only or full disk only costs
    speed."""
    doc = {
        "format": SCAN_RECORD_FORMAT,
        "root": str(root.resolve()),
        "checks": _scan_checks(),
        "files": files,
    }
    try:
        atomic_write(path, json.dumps(doc, separators=(",", ":")))
    except OSError as e:
        logger.info("%s: scan record not written (%s)", path, e.strerror or e)
