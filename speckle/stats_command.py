"""`python -m speckle stats`: speckle statistics of image files and stacks, in the lit region.

Files are read through the hardened readers in `frames`, with the app's checks and limits. A
folder gives the frames that training on it (`--data`) would: its image files and every frame of
its stacks, never the input patterns that its labels.csv names (a simulated set's `patterns/`,
its `patterns.tif`). `--mask` picks the lit region, where every statistic is taken (a fibre's
dark cladding would otherwise raise the contrast from 1 to about 1.4):
- `auto` (default): `mask.png` in the file's folder or above it (up to the parent of the path
  given), else the core recorded in a simulator's `simulation.json` there, else the thresholded
  mean of the file's frames (of one frame, smoothed, for a single image);
- `none`: the whole frame;
- a file: a mask image (non-zero = lit) of the frames' size.
Every row says which mask it used.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frames import ImageError, Layout, dataset_files, read_image, read_layout, stack_frames
from frames.layout import split_name
from frames.lit_mask import lit_mask
from speckle.gaussian_fibre import core_mask
from speckle.lit_region import simulated_core
from speckle.stats import STAT_KEYS, speckle_stats

MASK_HELP = "lit region: auto (mask.png, simulation.json's core, or thresholded frames), none, or a mask image"
MASK_FRAMES = 256  # frames of a stack that the automatic mask is estimated from


def _read_for_stats(path: Path) -> Iterator[tuple[str, int | None, np.ndarray]]:
    """The images in one file, through the readers in `frames` (the app's checks and limits): (name
    for the row, frame index or None, (H, W) float64). A stack (.npy/.npz, multi-page TIFF, HDF5,
    .mat) gives one per frame, read one at a time, its arrays named FILE#KEY; "FILE#KEY" picks one
    array. The folder's dataset.toml says which arrays are what. Raises ImageError, a one-line
    "<file>: <problem>"."""
    name = str(path)
    file, key = (path, None) if path.exists() else (Path(split_name(name)[0]), split_name(name)[1])
    layout = read_layout(file.parent, lambda msg: print(f"speckle stats: {msg}", file=sys.stderr))
    layout = layout.get(file.name)
    if key is not None:
        layout = Layout(key, layout.patterns, layout.labels, layout.axes, layout.field)
    _, frames = stack_frames(file, str(file), layout, root=file.parent)
    for where, index, raw in frames:
        yield where, index, raw.pixels.astype(np.float64)


def _find_images(paths: Sequence[str]) -> list[tuple[Path, Path]]:
    """(file, the path argument it was found under): the mask search stops at the argument. A
    folder gives the files a data set's samples come from (`frames.dataset_files`)."""

    def warn(msg: str) -> None:
        print(f"speckle stats: {msg}", file=sys.stderr)

    found: list[tuple[Path, Path]] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [(p / rel, p) for rel in dataset_files(p, warn)]
        else:
            found.append((p, p.parent))
    return found


def _folders(file: Path, top: Path) -> list[Path]:
    """The file's folder and those above it, up to and including the parent of `top`: the path
    given may be a data set's `images/` folder, with its `simulation.json` one level up."""
    out, d = [], file.parent.resolve()
    top = top.resolve().parent
    while True:
        out.append(d)
        if d == top or d.parent == d or top not in d.parents:
            return out
        d = d.parent


def _read_mask(path: Path) -> np.ndarray:
    mask = read_image(path).pixels > 0
    if not mask.any():
        raise ValueError(f"{path}: the mask has no lit pixel")
    return mask


def choose_mask(
    mode: str, file: Path, top: Path, frames: list[np.ndarray]
) -> tuple[np.ndarray | None, str]:
    """The lit region for a file's frames (see the module docstring), and where it came from."""
    shape = frames[0].shape
    if mode == "none":
        return None, "whole frame"
    if mode != "auto":
        mask = _read_mask(Path(mode))
        if mask.shape != shape:
            raise ValueError(
                f"--mask {mode}: {mask.shape[1]}x{mask.shape[0]} px, frames are {shape[1]}x{shape[0]}"
            )
        return mask, mode
    for folder in _folders(file, top):
        if (folder / "mask.png").is_file():
            mask = _read_mask(folder / "mask.png")
            if mask.shape == shape:
                return mask, str(folder / "mask.png")
        core = simulated_core(folder) if shape[0] == shape[1] else None
        if core is not None:
            return core_mask(shape[0], core), f"{folder / 'simulation.json'} core ({core:g})"
    mask = lit_mask(np.stack(frames))
    if mask.all():
        return None, "whole frame"
    return mask, "thresholded frames" if len(frames) > 1 else "thresholded frame"


def _jsonable(v: float) -> float | None:
    return v if math.isfinite(v) else None


def stats_command(paths: Sequence[str], as_json: bool, window: int, mask: str = "auto") -> int:
    files = _find_images(paths)
    if mask not in ("auto", "none") and not Path(mask).is_file():
        print(f"speckle stats: error: --mask {mask}: no such file", file=sys.stderr)
        return 1
    if not files:
        print("speckle stats: error: no image files found", file=sys.stderr)
        return 1
    failed = 0
    if not as_json:
        print("\t".join(("file", *STAT_KEYS, "mask")))
    for f, top in files:
        rows = []
        try:
            stream = _read_for_stats(f)
            head = list(itertools.islice(stream, MASK_FRAMES))  # a stack is never read whole
            if not head:
                continue
            lit, source = choose_mask(mask, f, top, [img for _, _, img in head])
            for name, index, img in itertools.chain(head, stream):
                row: dict[str, Any] = {"file": name}
                if index is not None:
                    row["index"] = index
                row["height"], row["width"] = img.shape
                row.update({k: _jsonable(v) for k, v in speckle_stats(img, window, lit).items()})
                row["mask"] = source
                row["lit_fraction"] = 1.0 if lit is None else float(lit.mean())
                rows.append(row)
        except ImageError as exc:  # already "<file>: <problem>", one line
            failed += 1
            print(f"speckle stats: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # one bad file must not stop the others
            failed += 1
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"speckle stats: {f}: {msg}", file=sys.stderr)
            continue
        for row in rows:
            if as_json:
                print(json.dumps(row), flush=True)
            else:
                name = row["file"] + (f"[{row['index']}]" if "index" in row else "")
                vals = ("nan" if row[k] is None else f"{row[k]:.4g}" for k in STAT_KEYS)
                print("\t".join((name, *vals, row["mask"])), flush=True)
    return 1 if failed else 0
