"""ImageFolder's scan record: unchanged files are not decoded again on a later scan."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frames import ImageFolder, datasets

RNG = np.random.default_rng(0)


def _folder(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = (RNG.exponential(1.0, (24, 32)) * 8000).clip(0, 65535).astype(np.uint16)
        Image.fromarray(img).save(root / f"f{i}.png")
    np.save(root / "stack.npy", RNG.random((3, 16, 16), dtype=np.float32))
    return root


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files that a scan decodes to check them."""
    seen: list[str] = []
    real = datasets.probe_pil

    def counting(path: Path, rel: str):
        seen.append(rel)
        return real(path, rel)

    monkeypatch.setattr(datasets, "probe_pil", counting)
    return seen


def test_second_scan_decodes_nothing_and_agrees(tmp_path: Path, probes: list[str]) -> None:
    root, record = _folder(tmp_path / "d"), tmp_path / "scans" / "d.json"
    first = ImageFolder(root, 16, scan_record=record)
    assert len(probes) == 6 and record.is_file()
    probes.clear()
    second = ImageFolder(root, 16, scan_record=record)
    assert probes == []
    assert second.files == first.files and len(second) == 6 + 3
    assert second.notes == first.notes
    assert second.fingerprint() == first.fingerprint()
    assert np.array_equal(second[0].numpy(), first[0].numpy())
    # The record holds image files only: stacks are checked (NaN scan) every time.
    assert set(json.loads(record.read_text())["files"]) == {f"f{i}.png" for i in range(6)}
    # Written whole under a temporary name, then renamed: nothing else is left beside it.
    assert [p.name for p in record.parent.iterdir()] == ["d.json"]


def test_changed_files_are_checked_again(tmp_path: Path, probes: list[str]) -> None:
    root, record = _folder(tmp_path / "d"), tmp_path / "d.json"
    ImageFolder(root, 16, scan_record=record)
    probes.clear()
    # f1 truncated (new size and mtime), f2 replaced by a new image, f3 removed, f9 added, f4
    # rewritten with the same bytes and its mtime put back (a copy that keeps the mtime: only
    # ctime and maybe the inode tell), f5 made read-only (only ctime changes).
    raw = (root / "f1.png").read_bytes()
    (root / "f1.png").write_bytes(raw[: len(raw) // 2])
    Image.fromarray(np.full((20, 20), 7, np.uint8)).save(root / "f2.png")
    st = (root / "f2.png").stat()
    os.utime(root / "f2.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    (root / "f3.png").unlink()
    Image.fromarray(np.full((20, 20), 9, np.uint8)).save(root / "f9.png")
    st4 = (root / "f4.png").stat()
    (root / "f4.png").write_bytes((root / "f4.png").read_bytes())
    os.utime(root / "f4.png", ns=(st4.st_atime_ns, st4.st_mtime_ns))
    assert (root / "f4.png").stat().st_mtime_ns == st4.st_mtime_ns
    os.chmod(root / "f5.png", 0o444)
    folder = ImageFolder(root, 16, scan_record=record, log=lambda m: None)
    assert sorted(probes) == ["f1.png", "f2.png", "f4.png", "f5.png", "f9.png"]
    assert [f for f, _ in folder.files if f.endswith(".png")] == [
        "f0.png",
        "f2.png",
        "f4.png",
        "f5.png",
        "f9.png",
    ]
    assert any(m.startswith("f1.png:") for m in folder.skipped)
    kept = json.loads(record.read_text())["files"]
    assert "f1.png" not in kept and "f3.png" not in kept and kept["f2.png"][4:] == [20, 20, "L"]


@pytest.mark.parametrize(
    "content",
    ["garbage", "other-root", "other-limits", "absurd-entry", "array-entry"],
)
def test_a_bad_record_means_a_full_scan(tmp_path: Path, probes: list[str], content: str) -> None:
    root, record = _folder(tmp_path / "d"), tmp_path / "d.json"
    ImageFolder(root, 16, scan_record=record)
    doc = json.loads(record.read_text())
    if content == "garbage":
        record.write_text("not json")
    else:
        if content == "other-root":  # the real entries, under another folder's name
            doc["root"] = str(tmp_path / "elsewhere")
        elif content == "other-limits":  # written by a version that checked differently
            doc["checks"]["full_decode_bytes"] += 1
        elif content == "absurd-entry":  # hand-edited: a 10⁹-row image
            doc["files"]["f0.png"][4] = 10**9
        else:  # a stack would skip its NaN check
            doc["files"]["stack.npy"] = doc["files"]["f0.png"]
        record.write_text(json.dumps(doc))
    probes.clear()
    folder = ImageFolder(root, 16, scan_record=record)
    assert sorted(probes) == [f"f{i}.png" for i in range(6)]
    assert len(folder) == 9
    assert json.loads(record.read_text())["files"]["f0.png"][4:] == [24, 32, "I;16"]


def test_unwritable_record_only_costs_speed(tmp_path: Path, probes: list[str]) -> None:
    root = _folder(tmp_path / "d")
    blocker = tmp_path / "scans"
    blocker.write_text("a file where the record's folder should be")
    for _ in range(2):
        assert len(ImageFolder(root, 16, scan_record=blocker / "d.json")) == 9
    assert len(probes) == 12


def test_a_failed_record_write_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    root, scans = _folder(tmp_path / "d"), tmp_path / "scans"

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)  # the rename that would publish the record
    assert len(ImageFolder(root, 16, scan_record=scans / "d.json")) == 9
    assert list(scans.iterdir()) == []
