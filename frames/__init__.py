"""Users' speckle images: reading, preprocessing exactly as in training, and lazy datasets.

- `image`: `RawImage`, `ImageError` and the limits every reader checks.
- `reading`: `read_image`, one image file or upload (PNG, TIFF, JPEG, BMP, GIF, .npy, .npz).
- `arrays`: .npy/.npz headers checked before any pixel is read; `read_frames` for stacks.
- `normalize`: `preprocess` (crop, resize, `Normalization`) and what each mode does to K.
- `labels`: labels.csv beside a data set.
- `lab`, `tiff`, `containers`: lab recordings (multi-page TIFF, HDF5, MATLAB .mat) read frame by
  frame; `layout`: dataset.toml, which says which array is what; `lab_samples`: their frames as
  samples, `stack_frames` for any file's frames (stats, uploads), and `pattern_frames` for the
  input patterns a frame name stands for ("run.h5#/patterns#12").
- `scan`: a folder's candidate files (`dataset_files`: those its samples come from), and the
  record that spares unchanged files a new decode.
- `datasets`: `ImageFolder`, `ArrayDataset`, `Sample`, `split_indices`, `spaced_indices`.

Importing this package does not import torch; the datasets import it on their first item.
"""

from __future__ import annotations

from frames.arrays import MAX_FRAMES, array_frames, read_frames
from frames.datasets import (
    MAX_OPEN_ARRAYS,
    ArrayDataset,
    ImageFolder,
    Sample,
    spaced_indices,
    split_indices,
)
from frames.image import (
    ARRAY_SUFFIXES,
    IMAGE_SUFFIXES,
    LAB_SUFFIXES,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    SUFFIXES,
    ImageError,
    RawImage,
)
from frames.lab import MAX_UPLOAD_FRAMES, PATTERN_NAMES, LabArray, LabReader, inspect_lab
from frames.lab_samples import pattern_frames, stack_frames
from frames.labels import FILE_COLUMNS, LABEL_FILE, PATTERN_COLUMN
from frames.layout import LAYOUT_FILE, FolderLayout, Layout, read_layout
from frames.normalize import NORMALIZATIONS, Normalization, normalize, preprocess
from frames.reading import ALPHA_MODES, FULL_DECODE_BYTES, PIL_FORMATS, read_image
from frames.scan import SCAN_RECORD_FORMAT, dataset_files

__all__ = [
    "ALPHA_MODES",
    "ARRAY_SUFFIXES",
    "FILE_COLUMNS",
    "FULL_DECODE_BYTES",
    "IMAGE_SUFFIXES",
    "LABEL_FILE",
    "LAB_SUFFIXES",
    "LAYOUT_FILE",
    "MAX_FILE_BYTES",
    "MAX_FRAMES",
    "MAX_OPEN_ARRAYS",
    "MAX_PIXELS",
    "MAX_UPLOAD_FRAMES",
    "MIN_SIDE",
    "NORMALIZATIONS",
    "PATTERN_COLUMN",
    "PATTERN_NAMES",
    "PIL_FORMATS",
    "SCAN_RECORD_FORMAT",
    "SUFFIXES",
    "ArrayDataset",
    "FolderLayout",
    "ImageError",
    "ImageFolder",
    "LabArray",
    "LabReader",
    "Layout",
    "Normalization",
    "RawImage",
    "Sample",
    "array_frames",
    "dataset_files",
    "inspect_lab",
    "normalize",
    "pattern_frames",
    "preprocess",
    "read_frames",
    "read_image",
    "read_layout",
    "spaced_indices",
    "split_indices",
    "stack_frames",
]
