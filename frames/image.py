"""One image as read (`RawImage`), the one error every reader raises (`ImageError`), and the
limits every reader checks before it decodes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif")
ARRAY_SUFFIXES = (".npy", ".npz")
LAB_SUFFIXES = (".h5", ".hdf5", ".he5", ".mat")  # HDF5 and MATLAB files
SUFFIXES = IMAGE_SUFFIXES + ARRAY_SUFFIXES + LAB_SUFFIXES
MIN_SIDE = 8  # smaller frames (1×1 placeholders, icons) are not speckle images
MAX_PIXELS = 64_000_000  # per frame; checked from the header, before decoding
MAX_FILE_BYTES = 200 * 1024 * 1024  # per image file, or per compressed array inside an .npz


class ImageError(ValueError):
    """A file that cannot be used as an image. The message is one line: "<file>: <problem>"."""


def image_error(label: str, problem: str) -> ImageError:
    # File names and library messages may hold newlines; the message must stay one line.
    text = f"{label}: {problem}"
    return ImageError(" ".join(text.split())[:500])


def error_reason(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


@contextlib.contextmanager
def one_line_errors(label: str, what: str) -> Iterator[None]:
    """Any failure of a decoder inside the block becomes our one-line ImageError naming `label`:
    PIL, numpy, zipfile, h5py, tifffile and scipy raise a zoo of types on hostile bytes."""
    try:
        yield
    except ImageError:
        raise
    except MemoryError:
        raise image_error(label, "too large to decode") from None
    except Exception as e:
        raise image_error(label, f"not a readable {what} ({error_reason(e)})") from None


@dataclass
class RawImage:
    """One image before preprocessing.

    pixels: (H, W) float32 intensities in the file's own units.
    full_scale: what "fully bright" means for the stored type: 255 (8-bit), 65535 (16-bit),
        1 (bilevel or bool), the type's max for other unsigned ints, and the data max for float
        and signed data. `Normalization("fixed")` uses it when `high` is None.
    notes: what reading changed ("RGB converted to grayscale (luminance)").
    source: the stored type, e.g. "PNG I;16" or "npy uint16".
    """

    pixels: np.ndarray
    full_scale: float
    notes: list[str] = field(default_factory=list)
    source: str = ""


def check_byte_size(n: int, label: str) -> None:
    if n == 0:
        raise image_error(label, "empty file (0 bytes)")
    if n > MAX_FILE_BYTES:
        raise image_error(label, f"{n} bytes is over the limit of {MAX_FILE_BYTES} bytes")


def check_shape(shape: tuple[int, ...], label: str) -> None:
    if len(shape) != 2:
        raise image_error(label, f"expected a 2-D image, got shape {tuple(shape)}")
    h, w = shape
    if min(h, w) < MIN_SIDE:
        raise image_error(label, f"image is {w}×{h} pixels, smaller than {MIN_SIDE}×{MIN_SIDE}")
    if h * w > MAX_PIXELS:
        raise image_error(label, f"{w}×{h} pixels is over the limit of {MAX_PIXELS} pixels")


def check_dtype(dtype: np.dtype, label: str) -> None:
    if dtype.kind not in "uifb" or dtype.fields is not None or dtype.subdtype is not None:
        raise image_error(label, f"unsupported array dtype {dtype} (need integer, float or bool)")


def dtype_full_scale(dtype: np.dtype, pixels: np.ndarray) -> float:
    if dtype.kind == "b":
        return 1.0
    if dtype.kind == "u":
        return float(np.iinfo(dtype).max)
    # Float (and signed, e.g. background-subtracted) data has no natural full scale.
    peak = float(pixels.max()) if pixels.size else 0.0
    return peak if peak > 0 else 1.0


def image_from_array(arr: np.ndarray, label: str, source: str = "") -> RawImage:
    check_dtype(arr.dtype, label)
    check_shape(arr.shape, label)
    pixels = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(pixels).all():
        raise image_error(label, "contains NaN or Inf")
    return RawImage(pixels, dtype_full_scale(arr.dtype, pixels), [], source or f"array {arr.dtype}")
