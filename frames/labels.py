"""labels.csv beside a data set: which column names the files, which rows belong to which
samples, and which files are input patterns rather than samples.

A labels file must never stop the data from loading: anything wrong with it costs one warning
and, at worst, the labels.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from frames.image import error_reason

if TYPE_CHECKING:
    from frames.datasets import Sample

LABEL_FILE = "labels.csv"
FILE_COLUMNS = ("file", "filename", "name", "path")  # labels.csv filename column, by priority
PATTERN_COLUMN = "pattern"


def _rel(text: str) -> str:
    """A labels.csv path as our relative key: "/" separators, no leading "./"."""
    text = text.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def _file_part(name: str) -> str:
    return name.partition("#")[0]


def _basename(key: str) -> str:
    return key.rpartition("/")[2]


def _read_csv(path: Path, warn: Callable[[str], None]) -> pd.DataFrame | None:
    """labels.csv as text columns, or None after one warning if it cannot be used."""
    bad_lines: list[list[str]] = []
    for encoding in ("utf-8-sig", "latin-1"):  # latin-1 decodes any bytes: the loop returns
        bad_lines.clear()
        try:
            # pandas may warn (a ParserWarning on ragged rows); warnings filters are process-wide
            # and not thread-safe to change per call, so its warnings are left to the caller's.
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
            warn(f"{LABEL_FILE}: unreadable ({error_reason(e)}); no labels used")
            return None
        if bad_lines:
            warn(f"{LABEL_FILE}: {len(bad_lines)} malformed rows ignored")
        return frame
    return None


def read_labels(
    root: Path, warn: Callable[[str], None]
) -> tuple[pd.DataFrame | None, set[str], set[str]]:
    """labels.csv with its filename column renamed "file"; and, when it names input patterns,
    the folders and files that hold them (they are not samples)."""
    path = root / LABEL_FILE
    if not path.is_file():
        return None, set(), set()
    frame = _read_csv(path, warn)
    if frame is None:
        return None, set(), set()
    columns = {str(c).strip().lower(): c for c in frame.columns}
    column = next((columns[c] for c in FILE_COLUMNS if c in columns), None)
    if column is None:
        names = ", ".join(FILE_COLUMNS)
        warn(f"{LABEL_FILE}: no filename column (one of {names}); no labels used")
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
        # A stack's frame is named "file#index": the file holds the patterns, unless it also
        # holds samples (a paired recording).
        sample_files = {_file_part(p) for p in frame["file"]}
        skip_files = {_file_part(p) for p in patterns} - sample_files
        sample_dirs = {p.rpartition("/")[0] for p in sample_files}
        # A folder holding only patterns is left out entirely (fast, and catches patterns
        # without a row); one shared with samples loses only the named pattern files.
        skip_dirs = {p.rpartition("/")[0] for p in skip_files} - sample_dirs - {""}
    return frame, skip_dirs, skip_files


def match_labels(
    samples: Sequence[Sample], frame: pd.DataFrame | None, warn: Callable[[str], None]
) -> pd.DataFrame:
    """One row per sample: "file" (the sample's name), then its labels.csv row's columns (NaN
    where it has none)."""
    out = pd.DataFrame({"file": [s.name for s in samples]})
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
    rows = [_label_row(s, by_key, by_base) for s in samples]
    unused = len(by_key) - len(set(rows) - {-1})
    if duplicates:
        warn(f"{LABEL_FILE}: {duplicates} duplicate rows; the first row of each file is used")
    if unused:
        warn(f"{LABEL_FILE}: {unused} rows name files that are not in the dataset")
    data = frame.drop(columns="file").reindex(rows).reset_index(drop=True)
    return pd.concat([out, data], axis=1)


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


def merge_file_labels(labels: pd.DataFrame, extras: dict[int, dict]) -> pd.DataFrame:
    """Add the label columns read from the files themselves (per-frame vectors of an HDF5 or MAT
    file, and a paired recording's pattern frames) to `labels`, one row per sample. Where
    labels.csv has a value too, labels.csv wins."""
    if not extras:
        return labels
    found = pd.DataFrame.from_dict(extras, orient="index").reindex(range(len(labels)))
    for c in found.columns:
        if c in labels.columns:
            labels[c] = labels[c].where(labels[c].notna(), found[c])
        else:
            labels[c] = found[c].to_numpy()
    return labels
