"""Multi-page TIFF stacks through tifffile: plain multi-page, BigTIFF, OME-TIFF and ImageJ
hyperstacks, 8/16/32-bit or float, tiled or compressed. Every page of a series is one frame
(hyperstack axes T, Z, C flattened in file order). Uncompressed, contiguous series are
memory-mapped; others are decoded one page at a time.

Single-page classic TIFFs stay with PIL (frames/reading.py), which also turns colour into
grayscale."""

from __future__ import annotations

import math
from typing import BinaryIO

import numpy as np
import tifffile

from frames.image import image_error
from frames.lab import FoundArray

BIGTIFF_MAGIC = (b"II+\x00", b"MM\x00+")
TIFF_MAGIC = (b"II*\x00", b"MM\x00*") + BIGTIFF_MAGIC


def is_stack(f: BinaryIO) -> bool:
    """Whether a TIFF is for tifffile: BigTIFF (PIL cannot read it), or more than one page. A file
    tifffile cannot parse is left to PIL, whose errors name the problem."""
    head = f.read(4)
    f.seek(0)
    if head in BIGTIFF_MAGIC:
        return True
    if head not in TIFF_MAGIC:
        return False
    try:
        with tifffile.TiffFile(f, _multifile=False) as tif:
            return len(tif.series) > 1 or any(math.prod(s.shape[:-2]) > 1 for s in _gray(tif))
    except Exception:  # corrupt: PIL's path reports it
        return False
    finally:
        f.seek(0)


def _gray(tif: tifffile.TiffFile) -> list:
    return [s for s in tif.series if "S" not in s.axes or s.shape[s.axes.index("S")] == 1]


def inspect_tiff(f: BinaryIO, size: int, label: str) -> list[FoundArray]:
    """Each series of the file as (N, H, W) frames, checked against the file's size so that a
    truncated stack is refused before a frame is read."""
    out = []
    with tifffile.TiffFile(f, _multifile=False) as tif:
        series = tif.series
        for j, s in enumerate(series):
            key = None if len(series) == 1 else f"series{j}"
            where = label if key is None else f"{label}#{key}"
            axes, shape = s.axes, tuple(int(n) for n in s.shape)
            if "S" in axes:
                if shape[axes.index("S")] > 1:
                    raise image_error(
                        where, f"colour TIFF stack ({axes} {shape}); save grayscale frames"
                    )
                shape = shape[: axes.index("S")] + shape[axes.index("S") + 1 :]
            if len(shape) < 2:
                raise image_error(where, f"expected images, got TIFF axes {axes} {shape}")
            n = math.prod(shape[:-2])
            stored = (n, *shape[-2:]) if len(shape) > 2 else shape
            dtype = np.dtype(s.dtype).newbyteorder(tif.byteorder)
            offset = s.dataoffset
            if offset is not None:
                nbytes = math.prod(stored) * dtype.itemsize
                if offset + nbytes > size:
                    raise image_error(
                        where,
                        f"truncated stack ({size} bytes, {offset + nbytes} needed for {n} frames)",
                    )
            else:
                pages = s.pages
                if len(pages) != n:
                    raise image_error(
                        where, f"{len(pages)} pages for {n} frames; unsupported layout"
                    )
                for k, page in enumerate(pages):
                    if page is None:
                        raise image_error(where, f"page {k} is missing")
                    ends = np.add(page.dataoffsets, page.databytecounts)
                    if len(ends) == 0 or ends.max() > size:
                        raise image_error(
                            where, f"truncated stack: page {k} ends past the file's end"
                        )
            out.append(
                FoundArray(key, stored, dtype, offset=offset, pages=offset is None, fixed=True)
            )
    return out
