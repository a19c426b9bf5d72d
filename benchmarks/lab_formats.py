"""Lab formats: listing a folder holding one 10,000-frame 16-bit 64×64 stack (~80 MB) as a
multi-page TIFF, an HDF5 file (contiguous, and chunked one frame a chunk) or a MAT v7.3 file, and
reading frames as training does (`ImageFolder.image`), each against the same frames in a .npy
memory map measured in the same run. Targets: listing under 1 s; reading within 1.2× of .npy.

    python -m benchmarks.lab_formats [--frames 10000] [--reads 3000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import median_time


def _write(root: Path, frames: np.ndarray) -> dict[str, Path]:
    import h5py
    import tifffile

    folders = {k: root / k for k in ("npy", "tiff", "h5", "h5-chunked", "mat73")}
    for f in folders.values():
        f.mkdir()
    np.save(folders["npy"] / "stack.npy", frames)
    tifffile.imwrite(folders["tiff"] / "stack.tif", frames, photometric="minisblack")
    with h5py.File(folders["h5"] / "run.h5", "w") as f:
        f["frames"] = frames
    with h5py.File(folders["h5-chunked"] / "run.h5", "w") as f:
        f.create_dataset("frames", data=frames, chunks=(1, *frames.shape[1:]))
    with h5py.File(folders["mat73"] / "run.mat", "w", userblock_size=512) as f:
        ds = f.create_dataset("frames", data=frames.transpose(0, 2, 1))  # MATLAB (H, W, N)
        ds.attrs["MATLAB_class"] = np.bytes_("uint16")
    (folders["mat73"] / "dataset.toml").write_text('axes = "HWN"\n')
    return folders


def run(frames: int = 10_000, reads: int = 3000, size: int = 64) -> dict:
    from frames import ImageFolder

    rng = np.random.default_rng(0)
    stack = (rng.exponential(1.0, (frames, size, size)) * 8000).clip(0, 65535).astype(np.uint16)
    out: dict = {"frames": frames, "frame": f"{size}x{size} uint16", "bytes": stack.nbytes}
    with tempfile.TemporaryDirectory() as tmp:
        folders = _write(Path(tmp), stack)
        del stack
        idx = rng.integers(0, frames, reads)
        listing, reading = {}, {}
        for name, folder in folders.items():
            listing[name] = median_time(lambda folder=folder: ImageFolder(folder, size), 5, 1)
            ds = ImageFolder(folder, size)
            assert len(ds) == frames, (name, len(ds))

            def read(ds=ds) -> None:
                for i in idx:
                    ds.image(int(i))

            reading[name] = median_time(read, 5, 1)
    ref_list, ref_read = listing["npy"], reading["npy"]
    out["list_s"] = {k: round(v, 4) for k, v in listing.items()}
    out["list_ratio_vs_npy"] = {k: round(v / ref_list, 2) for k, v in listing.items()}
    out["read_us_per_frame"] = {k: round(v / reads * 1e6, 1) for k, v in reading.items()}
    out["read_ratio_vs_npy"] = {k: round(v / ref_read, 3) for k, v in reading.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.lab_formats", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--reads", type=int, default=3000)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    result = run(args.frames, args.reads)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
