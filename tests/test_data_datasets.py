"""frames.datasets: ImageFolder's scan (bad files skipped once each), stacks, notes, DataLoader
workers, fingerprints, the held-out split and ArrayDataset."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from frames import ArrayDataset, ImageError, ImageFolder, Normalization, split_indices
from frames import reading as reading_module
from tests.data_files import encode, save, speckle, u8, u16, write_bad_files

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- scanning


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # huge.png
def test_folder_skips_each_bad_file_once_and_loads_the_rest(tmp_path: Path, caplog) -> None:
    bad = write_bad_files(tmp_path / "bad")
    for i in range(3):
        save(tmp_path / "good" / f"{i}.png", u16(seed=i))
    with caplog.at_level(logging.WARNING, logger="frames"):
        ds = ImageFolder(tmp_path, 32)
    assert len(ds) == 3 and [f for f, _ in ds.files] == [f"good/{i}.png" for i in range(3)]
    assert len(ds.skipped) == len(bad)
    warned = [r.getMessage() for r in caplog.records if r.name == "frames"]
    for name, words in bad.items():
        assert sum(m.startswith(f"bad/{name}: ") for m in ds.skipped) == 1, name
        assert sum(m.startswith(f"bad/{name}: ") and words in m for m in warned) == 1, name
    assert all("\n" not in m for m in warned)
    assert ds[0].shape == (1, 32, 32)


def test_large_files_get_header_and_end_checks_at_scan(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(reading_module, "FULL_DECODE_BYTES", 0)  # every file counts as large
    for fmt, suffix in (("PNG", "png"), ("TIFF", "tif"), ("JPEG", "jpg"), ("BMP", "bmp")):
        img = encode(u8(64, 64), fmt)
        (tmp_path / f"ok.{suffix}").write_bytes(img)
        (tmp_path / f"cut.{suffix}").write_bytes(img[: len(img) - 300])
    messages: list[str] = []
    ds = ImageFolder(tmp_path, 32, log=messages.append)
    assert sorted(f for f, _ in ds.files) == ["ok.bmp", "ok.jpg", "ok.png", "ok.tif"]
    assert sorted(m.split(":")[0] for m in messages) == ["cut.bmp", "cut.jpg", "cut.png", "cut.tif"]
    assert all("truncated" in m or "not a readable image" in m for m in messages), messages


def test_trailing_bytes_after_the_end_marker_are_fine(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(reading_module, "FULL_DECODE_BYTES", 0)
    (tmp_path / "tail.jpg").write_bytes(encode(u8(64, 64), "JPEG") + b"\0" * 5000)
    (tmp_path / "tail.png").write_bytes(encode(u8(64, 64), "PNG") + b"\0" * 5000)
    assert len(ImageFolder(tmp_path, 32)) == 2


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ImageFolder(tmp_path / "nope", 32)
    with pytest.raises(ImageError, match=r"no usable images \(0 files skipped\)"):
        ImageFolder(tmp_path, 32)
    (tmp_path / "a.png").write_text("junk")
    (tmp_path / "notes.txt").write_text("not even a candidate")
    with pytest.raises(ImageError, match=r"no usable images \(1 files skipped\)"):
        ImageFolder(tmp_path, 32, log=lambda m: None)


def test_scan_is_recursive_sorted_case_blind_and_skips_hidden(tmp_path: Path) -> None:
    save(tmp_path / "b" / "z.PNG", u16())
    save(tmp_path / "b" / "c" / "a.TIF", u16())
    save(tmp_path / "a.png", u16())
    save(tmp_path / ".hidden" / "x.png", u16())
    save(tmp_path / "b" / ".x.png", u16())
    ds = ImageFolder(tmp_path, 32)
    assert [f for f, _ in ds.files] == ["a.png", "b/z.PNG", "b/c/a.TIF"]


def test_folder_notes_summarize_preprocessing(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / f"wide{i}.png", u16(48, 64, i))
    save(tmp_path / "square.png", u16(32, 32))
    save(tmp_path / "colour.png", np.dstack([u8(32, 32)] * 3))
    ds = ImageFolder(tmp_path, 32)
    assert (
        "3 of 5 images (64×48) are centre-cropped to 48×48 and resized to 32×32 (area)" in ds.notes
    )
    assert "1 of 5 images are RGB, converted to grayscale (luminance)" in ds.notes
    assert len(ds.notes) == 2


def test_opening_a_folder_needs_no_torch(tmp_path: Path) -> None:
    save(tmp_path / "a.png", u16())
    np.save(tmp_path / "s.npy", u16(2 * 32, 32).reshape(2, 32, 32))
    code = (
        "import sys; from frames import ImageFolder; "
        f"ds = ImageFolder({str(tmp_path)!r}, 16); ds.fingerprint(); ds.image(2); "
        "print(len(ds), 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["3", "False"]


# ----------------------------------------------------------------------------- stacks


def test_npy_and_npz_stacks_expand_to_frames(tmp_path: Path) -> None:
    stack = (speckle(4, 32 * 32).reshape(4, 32, 32) * 100).astype(np.float32)
    np.save(tmp_path / "s.npy", stack)
    np.savez(tmp_path / "multi.npz", a=stack[:2], b=stack[3])
    np.savez_compressed(tmp_path / "zipped.npz", stack[:3])
    np.save(tmp_path / "f.npy", np.asfortranarray(stack[:2]))
    (tmp_path / "labels.csv").write_text("file,t\ns.npy#1,10\ns.npy,99\nzipped.npz#2,7\n")
    ds = ImageFolder(tmp_path, 32, Normalization("fixed", high=1000), log=lambda m: None)
    names = list(ds.labels["file"])
    assert names == (
        ["f.npy#0", "f.npy#1", "multi.npz#a#0", "multi.npz#a#1", "multi.npz#b"]
        + [f"s.npy#{k}" for k in range(4)]
        + [f"zipped.npz#{k}" for k in range(3)]
    )
    assert ds.files[5] == ("s.npy", 0) and ds.files[4] == ("multi.npz", None)
    expected = [stack[0], stack[1], stack[0], stack[1], stack[3], *stack, *stack[:3]]
    for i, frame in enumerate(expected):
        np.testing.assert_array_equal(ds.read_raw(i).pixels, frame)
        np.testing.assert_allclose(ds[i][0].numpy(), np.clip(frame / 1000, 0, 1), rtol=1e-6)
    t = dict(zip(names, ds.labels["t"], strict=True))
    assert t["s.npy#1"] == 10 and t["s.npy#0"] == 99 and t["zipped.npz#2"] == 7
    assert np.isnan(t["f.npy#0"])
    by_max = ImageFolder(tmp_path, 32, log=lambda m: None)  # the default: per-frame max
    np.testing.assert_allclose(by_max.image(7), stack[2] / stack[2].max(), rtol=1e-6)


def test_stack_frames_with_nan_are_skipped_one_warning(tmp_path: Path) -> None:
    stack = speckle(5 * 16, 16).reshape(5, 16, 16).astype(np.float32)
    stack[1, 3, 3] = np.nan
    stack[3, 0, 0] = np.inf
    np.save(tmp_path / "s.npy", stack)
    messages: list[str] = []
    ds = ImageFolder(tmp_path, 16, log=messages.append)
    assert [k for _, k in ds.files] == [0, 2, 4]
    assert messages == ["s.npy: 2 frames contain NaN or Inf (#1, #3); skipped"]


def test_stacks_are_memory_mapped_not_loaded(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.zeros((3, 16, 16), np.uint16))
    np.savez(tmp_path / "z.npz", x=np.zeros((3, 16, 16), np.uint16))
    ds = ImageFolder(tmp_path, 16)
    for i in (0, 4):
        ds.read_raw(i)
    opened = [a for a in ds._open.values() if isinstance(a, np.ndarray)]
    assert len(opened) == 2 and all(isinstance(a, np.memmap) for a in opened)


# ----------------------------------------------------------------------------- workers, ids


def mixed_folder(root: Path) -> Path:
    for i in range(5):
        save(root / f"{i}.png", u16(40, 48, i))
    np.save(root / "s.npy", u16(3 * 32, 32).reshape(3, 32, 32))
    np.savez_compressed(root / "z.npz", u16(2 * 32, 32).reshape(2, 32, 32))
    return root


def test_loader_with_workers_gives_the_same_batches(tmp_path: Path) -> None:
    ds = ImageFolder(mixed_folder(tmp_path), 32, log=lambda m: None)  # a lambda must not matter
    assert pickle.dumps(ds)
    ds[5]  # open a memory map in this process before the workers start

    def load(workers: int, context: str | None) -> torch.Tensor:
        loader = torch.utils.data.DataLoader(
            ds, batch_size=4, num_workers=workers, multiprocessing_context=context
        )
        return torch.cat(list(loader))

    # Linux forks the workers; "spawn" (macOS, Windows) pickles the dataset.
    batches = [load(0, None), load(2, None), load(2, "spawn")]
    assert batches[0].shape == (10, 1, 32, 32)
    assert torch.equal(batches[0], batches[1]) and torch.equal(batches[0], batches[2])


def test_fingerprint_is_stable_and_tracks_changes(tmp_path: Path) -> None:
    mixed_folder(tmp_path)
    fp = ImageFolder(tmp_path, 32).fingerprint()
    assert len(fp) == 64 and ImageFolder(tmp_path, 32).fingerprint() == fp
    (tmp_path / "notes.txt").write_text("not data")
    assert ImageFolder(tmp_path, 32).fingerprint() == fp
    assert ImageFolder(tmp_path, 16).fingerprint() != fp
    assert ImageFolder(tmp_path, 32, Normalization("mean")).fingerprint() != fp
    path = tmp_path / "2.png"
    st = path.stat()
    save(path, u16(40, 48, seed=99))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse file-system clocks
    assert ImageFolder(tmp_path, 32).fingerprint() != fp


def test_split_is_deterministic_disjoint_and_validated() -> None:
    tr, va = split_indices(100, 0.2, seed=3)
    assert len(va) == 20 and not set(tr) & set(va) and sorted([*tr, *va]) == list(range(100))
    assert np.array_equal(split_indices(100, 0.2, seed=3)[1], va)
    assert not np.array_equal(split_indices(100, 0.2, seed=4)[1], va)
    assert len(split_indices(1, 0.5, 0)[0]) == 1 and len(split_indices(0, 0.5, 0)[0]) == 0
    with pytest.raises(ValueError):
        split_indices(10, 1.0, 0)


def test_array_dataset_interface() -> None:
    imgs = RNG.random((5, 16, 16)).astype(np.float32)
    ds = ArrayDataset(imgs, patterns=imgs[:, :8, :8])
    assert len(ds) == 5 and ds[2].shape == (1, 16, 16)
    assert torch.equal(ds[2][0], torch.from_numpy(imgs[2]))
    assert list(ds.labels["file"]) == [f"array#{i}" for i in range(5)]
    assert ds.files[1] == ("array", 1)
    assert ds.read_raw(1).full_scale == 1.0 and ds.pattern(0).shape == (8, 8)
    fp = ds.fingerprint()
    assert len(fp) == 64 and ArrayDataset(imgs.copy()).fingerprint() == fp
    changed = imgs.copy()
    changed[0, 0, 0] = 0.5
    assert ArrayDataset(changed).fingerprint() != fp
    # A read-only copy inside, so that the fingerprint computed once stays true.
    with pytest.raises(ValueError, match="read-only"):
        ds.images[0, 0, 0] = 0.5
    before = ds.images[0, 0, 0]
    imgs[0, 0, 0] = 0.25  # the caller's array stays writable, and is not the dataset's
    assert ds.images[0, 0, 0] == before and ds.fingerprint() == fp
    with pytest.raises(ValueError):
        ArrayDataset(imgs * 2)
    with pytest.raises(ValueError):
        ArrayDataset(imgs[0])
