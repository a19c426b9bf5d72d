"""dataset.toml: which array of an HDF5, MAT or TIFF file holds the speckle, which the input
patterns and which the per-frame labels, and in what axis order.

    speckle = "/camera/frames"   # the array holding the speckle frames (default: every image-sized
                                 # 2-D or 3-D numeric array)
    patterns = "/slm/patterns"   # the input patterns of a paired recording (default: an array
                                 # named pattern(s), input(s), slm or dmd, if there is one)
    labels = ["/meta/power"]     # per-frame label arrays (default: every numeric vector of length N)
    axes = "HWN"                 # axis order of the speckle and pattern arrays (default "NHW")
    field = true                 # a complex speckle array is the field E: the intensity is |E|²

    [files."run2.h5"]            # the same keys, for one file (its path relative to the root)
    speckle = "/other/frames"

A bad dataset.toml costs one warning and the defaults, never the data.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from frames.image import error_reason

LAYOUT_FILE = "dataset.toml"
AXES_3D = ("NHW", "NWH", "HWN", "WHN", "HNW", "WNH")
_KEYS = ("speckle", "patterns", "labels", "axes", "field")


@dataclass(frozen=True)
class Layout:
    """How to read one file's arrays; the defaults suit files written by numpy-minded code."""

    speckle: str | None = None
    patterns: str | None = None
    labels: tuple[str, ...] | None = None
    axes: str = "NHW"
    field: bool = False


@dataclass(frozen=True)
class FolderLayout:
    default: Layout = Layout()
    files: dict[str, Layout] = field(default_factory=dict)

    def get(self, rel: str) -> Layout:
        return self.files.get(rel, self.default)


def same_key(a: str, b: str) -> bool:
    """HDF5 paths match with or without their leading "/"."""
    return a.strip("/") == b.strip("/")


def _parse(table: dict, base: Layout, where: str) -> Layout:
    unknown = sorted(set(table) - set(_KEYS) - {"files"})
    if unknown:
        raise ValueError(f"{where}unknown keys {', '.join(unknown)} (known: {', '.join(_KEYS)})")
    changes: dict = {}
    for key in ("speckle", "patterns"):
        if key in table:
            if not isinstance(table[key], str) or not table[key]:
                raise ValueError(f"{where}{key} must be an array name")
            changes[key] = table[key]
    if "labels" in table:
        labels = table["labels"]
        if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
            raise ValueError(f"{where}labels must be a list of array names")
        changes["labels"] = tuple(labels)
    if "axes" in table:
        axes = str(table["axes"]).upper()
        if axes not in AXES_3D:
            raise ValueError(f"{where}axes must be one of {', '.join(AXES_3D)}, got {axes!r}")
        changes["axes"] = axes
    if "field" in table:
        if not isinstance(table["field"], bool):
            raise ValueError(f"{where}field must be true or false")
        changes["field"] = table["field"]
    return replace(base, **changes)


def read_layout(root: Path, warn: Callable[[str], None]) -> FolderLayout:
    """The folder's dataset.toml, or the defaults (after one warning if it cannot be used)."""
    path = root / LAYOUT_FILE
    if not path.is_file():
        return FolderLayout()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        default = _parse(doc, Layout(), "")
        files = doc.get("files", {})
        if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
            raise ValueError('[files."NAME"] must be tables')
        per_file = {
            name.strip().replace("\\", "/"): _parse(t, default, f"[files.{name!r}] ")
            for name, t in files.items()
        }
        return FolderLayout(default, per_file)
    except Exception as e:  # a layout file must never stop the data from loading
        warn(f"{LAYOUT_FILE}: unusable ({error_reason(e)}); the defaults are used")
        return FolderLayout()


def split_name(name: str) -> tuple[str, str | None]:
    """ "run.h5#/camera/frames" -> ("run.h5", "/camera/frames"); "a.tif" -> ("a.tif", None)."""
    path, sep, key = name.partition("#")
    return path, (key if sep and key else None)
