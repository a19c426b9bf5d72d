"""Hostile lab files: truncated stacks, HDF5 that is not HDF5, MATLAB objects, links and virtual
datasets pointing outside the data folder, gigantic declared shapes, compression bombs, stacks
over the frame cap, and a fuzzed corpus of each format, cut and flipped. Each gets one line naming
the file and the problem, through the folder scan, uploads and `speckle stats`."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile

from frames import ImageError, ImageFolder, stack_frames
from speckle import cli
from tests.data_files import lab_stack, write_lab_files

FRAMES = lab_stack(3, 12, 16)


def _tiff(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="minisblack", **kw)
    return buf.getvalue()


def write_hostile(root: Path, outside: Path) -> dict[str, str]:
    """Each hostile file, and words its error must contain."""
    root.mkdir(parents=True, exist_ok=True)
    tif = _tiff(FRAMES)
    (root / "cut.tif").write_bytes(tif[: len(tif) // 2])  # inside the pixel data
    compressed = _tiff(FRAMES, compression="zlib")
    (root / "cutz.tif").write_bytes(compressed[: len(compressed) // 2])
    (root / "fake.h5").write_bytes(b"this is not HDF5 at all\n" * 10)
    scipy.io.savemat(root / "object.mat", {"c": np.array([[1, 2]], dtype=object), "s": {"a": 1}})
    with h5py.File(outside, "w") as f:
        f["secret"] = FRAMES
    with h5py.File(root / "extlink.h5", "w") as f:
        f["frames"] = h5py.ExternalLink(str(outside), "/secret")
    layout = h5py.VirtualLayout(shape=FRAMES.shape, dtype=FRAMES.dtype)
    layout[:] = h5py.VirtualSource(str(outside), "secret", shape=FRAMES.shape)
    with h5py.File(root / "virtual.h5", "w") as f:
        f.create_virtual_dataset("frames", layout)
    with h5py.File(root / "giant.h5", "w") as f:  # declared, never written: no disk used
        f.create_dataset("frames", shape=(10, 10**6, 10**6), dtype="u2", chunks=(1, 64, 64))
    with h5py.File(root / "toomany.h5", "w") as f:
        f.create_dataset("frames", shape=(2_000_000, 16, 16), dtype="u1", chunks=(1000, 16, 16))
    with h5py.File(root / "bomb.h5", "w") as f:  # one chunk unpacks to 2 GB
        f.create_dataset(
            "frames",
            shape=(8, 16384, 16384),
            dtype="u1",
            chunks=(8, 16384, 16384),
            compression="gzip",
        )
    return {
        "cut.tif": "truncated stack",
        "cutz.tif": "not a readable",  # its page list is cut: tifffile gives up, PIL says why
        "fake.h5": "not an HDF5 file",
        "object.mat": "holds no numeric arrays (cell, struct are not read)",
        "extlink.h5": "external link",
        "virtual.h5": "virtual dataset",
        "giant.h5": "no image-sized 2-D or 3-D numeric array (arrays: /frames (10, 1000000, 1000000))",
        "toomany.h5": "2000000 frames; a stack holds 1 to 1000000",
        "bomb.h5": "chunks of 2147483648 bytes",
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("hostile")
    root = base / "data"
    return root, write_hostile(root, base / "outside.h5")


def test_folder_skips_each_hostile_file_with_one_line(hostile) -> None:
    root, bad = hostile
    np.save(root / "good.npy", FRAMES)
    warned: list[str] = []
    ds = ImageFolder(root, 12, log=warned.append)
    assert [s for s in ds.labels["file"]] == ["good.npy#0", "good.npy#1", "good.npy#2"]
    for name, words in bad.items():
        hits = [m for m in ds.skipped if m.startswith(name)]
        assert len(hits) == 1 and words in hits[0] and "\n" not in hits[0], (name, hits)


def test_uploads_and_stats_give_the_same_one_line_errors(hostile, capsys) -> None:
    root, bad = hostile
    for name, words in bad.items():
        if name in ("extlink.h5", "virtual.h5"):  # an upload may point nowhere at all
            words = "outside the data folder"
        with pytest.raises(ImageError, match="^" + name.replace(".", r"\.")) as e:
            total, frames = stack_frames((root / name).read_bytes(), name)
            list(frames)
        assert words in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
    assert cli.main(["stats", *(str(root / n) for n in bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == len(bad) and all(line.startswith("speckle stats: ") for line in err)


def test_matlab_objects_are_refused_and_never_loaded(tmp_path: Path) -> None:
    # A MAT v5 file whose variable is a MATLAB object (class name and fields), beside a cell.
    obj = scipy.io.matlab.MatlabObject(np.zeros((1, 1), [("x", "O")]), "evil.Class")
    scipy.io.savemat(tmp_path / "obj.mat", {"o": obj, "frames": FRAMES})
    with pytest.raises(ImageError, match=r"obj\.mat#o: MATLAB object; only numeric arrays"):
        stack_frames(tmp_path / "obj.mat", "obj.mat")


def test_fuzzed_lab_files_never_crash(tmp_path: Path) -> None:
    """Each format whole, cut at random points and with flipped bytes: a frame or one line."""
    rng = np.random.default_rng(0)
    files = write_lab_files(tmp_path / "lab", lab_stack(3, 12, 16))
    outcomes = {"frames": 0, "error": 0}
    for name in files:
        data = (tmp_path / "lab" / name).read_bytes()
        cases = [data] + [data[: int(c)] for c in rng.integers(1, len(data), 8)]
        for _ in range(8):
            flipped = bytearray(data)
            for pos in rng.integers(0, len(data), 6):
                flipped[pos] ^= int(rng.integers(1, 256))
            cases.append(bytes(flipped))
        for case in cases:
            try:
                _, frames = stack_frames(case, name)
                for _, _, raw in frames:
                    assert raw.pixels.ndim == 2 and np.isfinite(raw.pixels).all()
                outcomes["frames"] += 1
            except ImageError as e:
                assert str(e).startswith(name) and "\n" not in str(e), str(e)
                outcomes["error"] += 1
    assert outcomes["frames"] >= len(files) and outcomes["error"] >= len(files) * 4, outcomes
