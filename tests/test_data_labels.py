"""frames.labels: labels.csv matched to samples, its bad forms, and input patterns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from frames import ImageFolder
from tests.data_files import save, u8, u16


def folder_with_labels(root: Path, csv: bytes, n: int = 4) -> Path:
    for i in range(n):
        save(root / "img" / f"{i:03d}.png", u16(seed=i))
    (root / "labels.csv").write_bytes(csv)
    return root


def test_labels_match_by_path_then_basename(tmp_path: Path) -> None:
    csv = (
        b"Filename,digit,angle,tag\n"
        b"img/000.png,3,1.5,a\n"
        b"001.png,4,2.5,b\n"  # basename only
        b"img\\002.png,5,,c\n"  # Windows separators
        b"ghost.png,9,9,d\n"
    )
    messages: list[str] = []
    ds = ImageFolder(folder_with_labels(tmp_path, csv), 32, log=messages.append)
    lab = ds.labels
    assert list(lab.columns) == ["file", "digit", "angle", "tag"]
    assert list(lab["file"]) == [f"img/{i:03d}.png" for i in range(4)]
    assert list(lab["digit"][:3]) == [3, 4, 5] and np.isnan(lab["digit"][3])
    assert np.isnan(lab["angle"][2]) and list(lab["tag"][:3]) == ["a", "b", "c"]
    assert messages == ["labels.csv: 1 rows name files that are not in the dataset"]


def test_labels_keep_leading_zeros_and_prefer_the_exact_path(tmp_path: Path) -> None:
    save(tmp_path / "x" / "007.png", u16())
    save(tmp_path / "y" / "007.png", u16(seed=1))
    (tmp_path / "labels.csv").write_text("name,run\ny/007.png,2\n007.png,1\n")
    ds = ImageFolder(tmp_path, 32, log=lambda m: None)
    assert dict(zip(ds.labels["file"], ds.labels["run"], strict=True)) == {
        "x/007.png": 1,
        "y/007.png": 2,
    }


# pandas warns about ragged rows; the reader leaves warnings filters alone (they are
# process-wide), so the tests that feed it such rows ignore that warning here.
@pytest.mark.filterwarnings("ignore::pandas.errors.ParserWarning")
@pytest.mark.parametrize(
    "csv, message",
    [
        (b"digit,angle\n1,2\n", "no filename column"),
        (b"", "unreadable"),
        (b"file,digit\n" + "img/000.png,\xe9t\xe9\n".encode("latin-1"), None),
        (b'file,digit\n"img/000.png,3\n\x00\x00', None),
        (b"file,digit\nimg/000.png,1\nimg/001.png,2,3,4\n", "malformed rows"),
        (bytes(range(256)) * 4, None),
        (b"\xff\xfe\x00\x00garbage", None),
    ],
)
def test_bad_labels_never_crash(tmp_path: Path, csv: bytes, message: str | None) -> None:
    messages: list[str] = []
    ds = ImageFolder(folder_with_labels(tmp_path, csv), 32, log=messages.append)
    assert len(ds) == 4 and list(ds.labels["file"])[0] == "img/000.png"
    assert len(ds.labels) == 4
    if message:
        assert any(message in m for m in messages), messages


def test_latin1_labels_are_read(tmp_path: Path) -> None:
    csv = "file,sample\nimg/000.png,échantillon\n".encode("latin-1")
    ds = ImageFolder(folder_with_labels(tmp_path, csv), 32, log=lambda m: None)
    assert ds.labels["sample"][0] == "échantillon"


def test_pattern_column_excludes_its_folder_and_reads_patterns(tmp_path: Path) -> None:
    rows = ["file,pattern,digit"]
    for i in range(5):
        save(tmp_path / "images" / f"{i:06d}.png", u16(seed=i))
        save(tmp_path / "patterns" / f"{i:06d}.png", (np.eye(16) * 255).astype(np.uint8))
        rows.append(f"images/{i:06d}.png,patterns/{i:06d}.png,{i}")
    save(tmp_path / "patterns" / "unlisted.png", u8())
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = ImageFolder(tmp_path, 32)
    assert len(ds) == 5 and all(f.startswith("images/") for f, _ in ds.files)
    p = ds.pattern(2)
    assert p.dtype == np.float32 and p.shape == (16, 16)
    np.testing.assert_array_equal(p, np.eye(16))
    assert list(ds.labels["digit"]) == list(range(5))
    assert ImageFolder(tmp_path / "images", 32).pattern(0) is None  # no labels, no pattern


def test_simulated_data_set_reads_with_its_patterns(tmp_path: Path) -> None:
    """The layout `python -m speckle mmf` writes: images/, patterns/ and labels.csv."""
    from speckle.io import write_dataset
    from speckle.mmf import simulate_mmf

    write_dataset(simulate_mmf(12, seed=0, size=32), tmp_path / "sim")
    ds = ImageFolder(tmp_path / "sim", 32)
    assert len(ds) == 12
    assert ds.pattern(0).shape == (16, 16) and ds.pattern(0).min() >= 0 and ds.pattern(0).max() <= 1
    assert set(ds.labels["digit"]) <= set(range(10))
