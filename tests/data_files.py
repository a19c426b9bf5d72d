"""Generated image files for the frames tests: seeded speckle, file encoders, and a zoo of bad
files with the words each one's error must contain."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def speckle(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    """Fully developed speckle intensity: exponential statistics, mean 1."""
    return np.random.default_rng(seed).exponential(1.0, (h, w))


def u16(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.clip(speckle(h, w, seed) * 8000, 0, 65535).astype(np.uint16)


def u8(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.clip(speckle(h, w, seed) * 40, 0, 255).astype(np.uint8)


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def encode(arr: np.ndarray | Image.Image, fmt: str, **kw) -> bytes:
    im = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def npy_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid little PNG whose header claims width × height: a decompression bomb's signature."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_bad_files(root: Path) -> dict[str, str]:
    """Each bad file, and words its error must contain."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("this is not an image\n")
    save(root / "one.png", np.zeros((1, 1), np.uint8))
    save(root / "small.png", np.zeros((4, 64), np.uint8))
    png = encode(u16(), "PNG")
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    tif = encode(u16(), "TIFF")
    (root / "truncated.tif").write_bytes(tif[: len(tif) - 500])
    (root / "bomb.png").write_bytes(png_claiming(100_000, 100_000))  # PIL refuses it at open
    (root / "huge.png").write_bytes(png_claiming(9000, 9000))  # PIL only warns; our check refuses
    frames = [Image.fromarray(u8(16, 16, seed)) for seed in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    nan = speckle(16, 16).astype(np.float32)
    nan[2, 2] = np.nan
    save(root / "nan.tif", nan)
    np.save(root / "nan.npy", np.full((16, 16), np.nan, np.float32))
    inf = speckle(16, 16)
    inf[0, 0] = np.inf
    np.save(root / "inf.npy", inf)
    np.save(root / "scalar.npy", np.float32(1))
    np.save(root / "vector.npy", np.zeros(64, np.float32))
    np.save(root / "4d.npy", np.zeros((2, 2, 16, 16), np.float32))
    np.save(root / "complex.npy", np.zeros((16, 16), np.complex64))
    np.save(root / "object.npy", np.full((16, 16), None, object), allow_pickle=True)
    np.save(root / "record.npy", np.zeros((16, 16), [("a", "f4"), ("b", "i2")]))
    (root / "short.npy").write_bytes(npy_bytes(np.zeros((64, 64), np.float32))[:-100])
    (root / "fake.npy").write_bytes(b"not numpy at all")
    return {
        "empty.png": "empty file",
        "text.png": "not a readable image",
        "one.png": "1×1 pixels, smaller than 8×8",
        "small.png": "smaller than",
        "truncated.png": "not a readable image",
        "truncated.tif": "not a readable image",
        "bomb.png": "decompression bomb",
        "huge.png": "9000×9000 pixels is over the limit",
        "anim.gif": "3 frames (animated)",
        "nan.tif": "NaN",
        "nan.npy": "NaN or Inf",
        "inf.npy": "NaN or Inf",
        "scalar.npy": "shape ()",
        "vector.npy": "shape (64,)",
        "4d.npy": "shape (2, 2, 16, 16)",
        "complex.npy": "unsupported array dtype complex64",
        "object.npy": "unsupported array dtype object",
        "record.npy": "unsupported array dtype",
        "short.npy": "truncated",
        "fake.npy": "not a .npy file",
    }


def lab_stack(n: int = 5, h: int = 12, w: int = 16, seed: int = 0) -> np.ndarray:
    """(N, H, W) 16-bit speckle frames; H ≠ W, so a transposed read cannot pass."""
    return np.stack([u16(h, w, seed + i) for i in range(n)])


def write_mat73(path: Path, arrays: dict[str, np.ndarray], userblock: bool = True) -> Path:
    """An HDF5 file laid out as MATLAB -v7.3 writes one: a 512-byte text header, each variable
    stored column-major (h5py sees MATLAB's axes reversed) with its MATLAB_class attribute."""
    import h5py

    classes = {"uint16": "uint16", "uint8": "uint8", "float64": "double", "float32": "single"}
    with h5py.File(path, "w", userblock_size=512 if userblock else 0) as f:
        for name, arr in arrays.items():
            ds = f.create_dataset(name, data=np.ascontiguousarray(arr.T))
            ds.attrs["MATLAB_class"] = np.bytes_(classes[str(arr.dtype)])
    if userblock:
        with open(path, "r+b") as f:
            f.write(
                b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .".ljust(
                    116
                )
            )  # noqa: E501
    return path


def write_lab_files(root: Path, frames: np.ndarray) -> dict[str, str]:
    """The same (N, H, W) frames in every lab format: {file: its arrays' sample-name prefix}."""
    import h5py
    import scipy.io
    import tifffile

    root.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(root / "stack.tif", frames, photometric="minisblack")
    gray = {"photometric": "minisblack"}  # else tifffile takes a 3-frame stack for RGB
    tifffile.imwrite(root / "ome.ome.tif", frames, ome=True, metadata={"axes": "TYX"}, **gray)
    tifffile.imwrite(
        root / "big.tif", frames, bigtiff=True, compression="zlib", tile=(16, 16), **gray
    )
    tifffile.imwrite(root / "imagej.tif", frames, imagej=True)
    with h5py.File(root / "run.h5", "w") as f:
        f.create_dataset(
            "camera/frames", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip"
        )
    hwn = np.ascontiguousarray(frames.transpose(1, 2, 0))  # MATLAB's (H, W, N)
    scipy.io.savemat(root / "v5.mat", {"speckle": hwn})
    write_mat73(root / "v73.mat", {"speckle": hwn})
    (root / "dataset.toml").write_text(
        '[files."v5.mat"]\naxes = "HWN"\n[files."v73.mat"]\naxes = "HWN"\n'
    )
    return {
        "stack.tif": "stack.tif",
        "ome.ome.tif": "ome.ome.tif",
        "big.tif": "big.tif",
        "imagej.tif": "imagej.tif",
        "run.h5": "run.h5#/camera/frames",
        "v5.mat": "v5.mat#speckle",
        "v73.mat": "v73.mat#/speckle",
    }
