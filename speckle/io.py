"""Writing simulated data sets as files: 16-bit frames and 8-bit patterns (one PNG each, one
multi-page TIFF stack each, or one HDF5 file), labels.csv and simulation.json. The TIFF and HDF5
layouts are what lab acquisition writes, and read back through `frames` like lab data."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from common.atomic import atomic_dir
from speckle import __version__
from speckle.simulated import SimulatedSet

PNG_PERCENTILE = 99.99
PNG_TARGET = 60000.0
PNG_MAX = 65535
FORMAT = "speckle-sim"
FORMAT_VERSION = 1
FILE_FORMATS = ("png", "tiff", "h5")


def png_scale(images: np.ndarray) -> float:
    """The one factor that maps intensities to 16-bit PNG values for a whole data set: the
    99.99th percentile goes to 60000, leaving headroom; rarer brighter pixels clip at 65535."""
    if images.size == 0:
        return 1.0
    top = float(np.percentile(images, PNG_PERCENTILE))
    if not top > 0:
        top = float(images.max())
    return PNG_TARGET / top if top > 0 else 1.0


WRITE_THREADS = 4


def _save_png(arr: np.ndarray, path: Path) -> None:
    # zlib level 1: measured on simulated 16-bit speckle, 1.21 -> 0.78 ms a frame for files 2%
    # larger (speckle barely compresses); a first start writes 2000 frames and patterns.
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def write_dataset(
    sim: SimulatedSet, out: Path, *, overwrite: bool = False, file_format: str = "png"
) -> None:
    """Write the frames (16-bit) and patterns (8-bit, mmf) as `file_format`: "png" gives
    DIR/images/NNNNNN.png and DIR/patterns/NNNNNN.png; "tiff" gives DIR/images.tif and
    DIR/patterns.tif, one multi-page stack each; "h5" gives DIR/data.h5 holding /speckle,
    /patterns and /labels/<column>, with a dataset.toml naming them. labels.csv and
    simulation.json are written beside in every case. Built in a temporary sibling directory and
    renamed into place, so a killed run never leaves a half-written data set under `out`. An
    existing non-empty `out` is an error unless `overwrite`."""
    if file_format not in FILE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(FILE_FORMATS)}, got {file_format!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: exists and is not empty (use --overwrite)")
    with atomic_dir(out, replace=True) as tmp:
        scale = png_scale(sim.images)
        n = len(sim.images)
        images = np.clip(np.rint(sim.images.astype(np.float64) * scale), 0, PNG_MAX)
        images = images.astype(np.uint16)  # (N, H, W)
        patterns = None
        if sim.patterns is not None:
            patterns = np.clip(np.rint(sim.patterns.astype(np.float64) * 255), 0, 255)
            patterns = patterns.astype(np.uint8)  # (N, h, w)
        if file_format == "png":
            columns = _write_png(images, patterns, tmp)
        elif file_format == "tiff":
            columns = _write_tiff(images, patterns, tmp)
        else:
            columns = _write_h5(images, patterns, sim.labels, tmp)
        labels = pd.concat([pd.DataFrame(columns), sim.labels.reset_index(drop=True)], axis=1)
        labels.to_csv(tmp / "labels.csv", index=False)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": __version__,
            **sim.meta,
            "n": n,
            "shape": list(sim.images.shape[1:]),
            "file_format": file_format,
            "intensity_scale": scale,
            "intensity_scale_note": (
                f"stored = round(I * intensity_scale), clipped to {PNG_MAX}; "
                f"the {PNG_PERCENTILE}th percentile of the whole set maps to {PNG_TARGET:g}"
            ),
            "pattern_scale": 255 if sim.patterns is not None else None,
        }
        (tmp / "simulation.json").write_text(json.dumps(meta, indent=2) + "\n")


def _write_png(images: np.ndarray, patterns: np.ndarray | None, tmp: Path) -> dict[str, Any]:
    n = len(images)
    (tmp / "images").mkdir()
    files = [f"images/{i:06d}.png" for i in range(n)]
    columns: dict[str, Any] = {"file": files}
    jobs = [lambda i: _save_png(images[i], tmp / files[i])]
    if patterns is not None:
        (tmp / "patterns").mkdir()
        pfiles = [f"patterns/{i:06d}.png" for i in range(n)]
        columns["pattern"] = pfiles
        jobs.append(lambda i: _save_png(patterns[i], tmp / pfiles[i]))
    # PNG encoding (zlib) and file writes release the GIL: threads overlap them, which a
    # fresh clone's first start waits for (2000 images and patterns: 1.2–4.2 s serially).
    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        for job in jobs:
            list(pool.map(job, range(n)))
    return columns


def _write_tiff(images: np.ndarray, patterns: np.ndarray | None, tmp: Path) -> dict[str, Any]:
    n = len(images)
    # Uncompressed and contiguous, as cameras write them: readers memory-map the stack.
    tifffile.imwrite(tmp / "images.tif", images, photometric="minisblack")
    columns: dict[str, Any] = {"file": [f"images.tif#{i}" for i in range(n)]}
    if patterns is not None:
        tifffile.imwrite(tmp / "patterns.tif", patterns, photometric="minisblack")
        columns["pattern"] = [f"patterns.tif#{i}" for i in range(n)]
    return columns


def _write_h5(
    images: np.ndarray, patterns: np.ndarray | None, labels: pd.DataFrame, tmp: Path
) -> dict[str, Any]:
    with h5py.File(tmp / "data.h5", "w") as f:
        f.create_dataset("speckle", data=images)  # contiguous: readers memory-map it
        toml = 'speckle = "/speckle"\n'
        if patterns is not None:
            f.create_dataset("patterns", data=patterns)
            toml += 'patterns = "/patterns"\n'
        for column in labels.columns:
            values = labels[column].to_numpy()
            if values.dtype.kind in "biuf":
                f.create_dataset(f"labels/{column}", data=values)
            else:  # text labels, stored for people; the readers take numeric ones
                f.create_dataset(
                    f"labels/{column}",
                    data=values.astype(str).astype(object),
                    dtype=h5py.string_dtype(),
                )
    (tmp / "dataset.toml").write_text(toml)
    return {"file": [f"data.h5#/speckle#{i}" for i in range(len(images))]}
